#!/usr/bin/env bash
# The whole test suite: Rust unit, property and SDK tests, then the boto3 and
# aws CLI tests against the freshly built server. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Python test environment"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

echo "== PostgreSQL server binaries (the shared-store tests start a throwaway server)"
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql openssl
fi

echo "== Chromium and its driver (the console's browser tests)"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver
fi

echo "== Rust: format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The fuzz crate is outside the workspace (its own lock file; its instrumented build has
# its own target directory, see scripts/fuzz.sh), so the two lines above do not cover it.
# Linted uninstrumented in target/, where the workspace's lint just built nearly all of
# its dependencies: a few seconds warm.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --manifest-path fuzz/Cargo.toml --target-dir target --all-targets --locked --quiet -- -D warnings

# The API documentation builds without a warning (a broken intra-doc link is a broken map).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

echo "== Rust: build"
cargo build --workspace --quiet

echo "== Rust: tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

echo "== Python: boto3 and aws CLI tests"
COFFER_BIN="$PWD/target/debug/coffer" .venv/bin/python -m pytest tests/python -q -p no:cacheprovider

echo "== Fuzz: every target of fuzz/ for a few seconds (scripts/fuzz.sh runs them for hours)"
FUZZ_CI=1 FUZZ_SECONDS="${FUZZ_SECONDS:-10}" ./scripts/fuzz.sh

echo "== README: its first command, verbatim, serves"
./scripts/readme_first_command.sh
