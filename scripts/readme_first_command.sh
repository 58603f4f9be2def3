#!/usr/bin/env bash
# Runs the README's first command exactly as the README writes it (read from the README,
# so the two cannot drift apart), from the repository root as a newcomer would, and checks
# that the server it starts answers the README's own get-caller-identity call with the
# credentials it wrote. A README command that fails on a fresh clone is a bug.
set -euo pipefail
cd "$(dirname "$0")/.."

command=$(awk '/^```sh$/ {inside=1; next} inside {print; exit}' README.md | sed 's/[[:space:]]*#.*$//')
case "$command" in
  "cargo run"*" serve"*) ;;
  *) echo "README's first command is not a 'cargo run ... serve': '$command'" >&2; exit 1 ;;
esac
if [ -e coffer-data ]; then
  # A developer's own data directory: never touched. CI runs on a fresh clone, where
  # this check always runs.
  echo "skipped: ./coffer-data exists (CI runs this on a fresh clone)"
  exit 0
fi

log=$(mktemp)
cleanup() {
  if [ -n "${server_pid:-}" ]; then
    pkill -TERM -P "$server_pid" 2>/dev/null || true
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf coffer-data "$log"
}
trap cleanup EXIT

echo "running: $command"
bash -c "exec $command" >"$log" 2>&1 &
server_pid=$!

# The first run builds the release binary: allow it time, then expect an answer.
for _ in $(seq 1 1800); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the README's first command exited:" >&2; cat "$log" >&2; exit 1
  fi
  if [ -s coffer-data/admin-credentials ] && grep -q "listening" "$log"; then break; fi
  sleep 1
done
[ -s coffer-data/admin-credentials ] || { echo "no admin-credentials after 30 min" >&2; cat "$log" >&2; exit 1; }

aws=(.venv/bin/aws)
[ -x "${aws[0]}" ] || aws=(aws)
answer=$(AWS_SHARED_CREDENTIALS_FILE=./coffer-data/admin-credentials AWS_DEFAULT_REGION=us-west-2 \
  AWS_CONFIG_FILE=/dev/null "${aws[@]}" --profile coffer sts get-caller-identity \
  --endpoint-url http://127.0.0.1:4566 --output text --query Arn)
if [ "$answer" != "arn:aws:iam::000000000000:user/admin" ]; then
  echo "unexpected answer from the README's server: $answer" >&2; exit 1
fi
echo "the README's first command serves: get-caller-identity answered $answer"
