"""``coffer --version`` names the version and the git commit it was built from."""

from __future__ import annotations

import re
import subprocess

from conftest import REPO, coffer_bin


def test_version_names_the_commit():
    out = subprocess.run([coffer_bin(), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    m = re.fullmatch(r"coffer (\d+\.\d+\.\d+) \(commit ([0-9a-f]{7,40}|unknown)\)\n", out.stdout)
    assert m, out.stdout
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO)
    if head.returncode == 0 and m.group(2) != "unknown":
        # Built from this checkout: the commit is a prefix of HEAD (or of an ancestor, when
        # the binary predates the last commit; a prefix of some commit either way).
        known = subprocess.run(["git", "cat-file", "-t", m.group(2)], capture_output=True, text=True, cwd=REPO)
        assert known.stdout.strip() == "commit"
