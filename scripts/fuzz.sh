#!/usr/bin/env bash
# Runs the coverage-guided fuzz targets in fuzz/ (libFuzzer through libfuzzer-sys) on the
# stable toolchain: the instrumentation flags are the ones cargo-fuzz passes, set here.
#
#   scripts/fuzz.sh                 every target for FUZZ_SECONDS (default 30) each
#   scripts/fuzz.sh policy 3600     one target for an hour
#   FUZZ_JOBS=4 scripts/fuzz.sh     several processes per target (libFuzzer's -fork)
#   FUZZ_SECONDS=3600 scripts/fuzz.sh   every target for an hour (the long run)
#   FUZZ_CI=1 FUZZ_SECONDS=10 scripts/fuzz.sh   what CI runs (scripts/test.sh): all eight
#                                   targets, 10 s each; the committed corpora are read, not
#                                   written (new inputs go to a temporary directory), so the
#                                   checkout stays clean
#
# Corpora are kept in fuzz/corpus/<target> (commit what a long run adds: it is the next
# run's start). A crash leaves fuzz/artifacts/<target>/crash-<hash>; reproduce it with
# `target/fuzz/<host>/release/<target> <file>`, then turn it into a regression test named after
# it (see docs/design/faults.md) before fixing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

# Every target builds without the store and the server (see fuzz/Cargo.toml), so CI
# fuzzes all of them.
targets=(wire_json sigv4 policy list_filters schedule kms_blob backup query)
seconds=${FUZZ_SECONDS:-30}
if [[ $# -ge 1 ]]; then targets=("$1"); fi
if [[ $# -ge 2 ]]; then seconds=$2; fi

export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
export CARGO_INCREMENTAL=0
# With an explicit target, RUSTFLAGS (the instrumentation) apply to the fuzzed code and
# not to build scripts, which have no libFuzzer to link against.
host=$(rustc -vV | sed -n 's/^host: //p')
# The instrumented build goes under the main target directory (target/fuzz), which CI
# keeps between runs where it keeps target/ at all; with an explicit --target its
# artifacts never mix with the workspace's own.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-../target/fuzz}
cargo build --release --bins --target "$host"
bin="$CARGO_TARGET_DIR/$host/release"

status=0
scratch=""
if [[ -n "${FUZZ_CI:-}" ]]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
fi
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "== $target for ${seconds}s"
  fork=()
  if [[ -n "${FUZZ_JOBS:-}" ]]; then fork=("-fork=$FUZZ_JOBS"); fi
  # libFuzzer writes new inputs to the first directory it is given.
  dirs=("corpus/$target")
  if [[ -n "$scratch" ]]; then mkdir -p "$scratch/$target"; dirs=("$scratch/$target" "corpus/$target"); fi
  # A backup file is larger than a request: its seeds are whole files of several KiB.
  max_len=16384
  if [[ $target == backup ]]; then max_len=65536; fi
  if ! "$bin/$target" "${dirs[@]}" "${fork[@]}" \
      -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="artifacts/$target/" -print_final_stats=1; then
    echo "!! $target found a crash: see fuzz/artifacts/$target/" >&2
    status=1
  fi
done
exit $status
