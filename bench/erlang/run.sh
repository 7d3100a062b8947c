#!/usr/bin/env bash
# Runs the Erlang/OTP reference workloads REPS times (default 1), printing
# one line per figure per run, in the format of Erlangen's own benchmarks.
# Does nothing (exit 0) when erl is not installed.
set -euo pipefail
reps=${1:-1}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v erl >/dev/null 2>&1; then
  echo "erl not found: skipping the Erlang/OTP reference (apt-get install erlang-nox)"
  exit 0
fi
out=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT
erlc -o "$out" "$here/erlangen_bench.erl"
cookie="erlangen-bench-$$"
for _ in $(seq "$reps"); do
  erl -noshell -pa "$out" -eval 'erlangen_bench:local(), halt().'
  erl -noshell -name "w5server-$$@127.0.0.1" -setcookie "$cookie" -pa "$out" \
      -eval 'erlangen_bench:w5_server().' &
  server=$!
  sleep 1
  erl -noshell -name "w5client-$$@127.0.0.1" -setcookie "$cookie" -pa "$out" \
      -eval "erlangen_bench:w5_client([\"w5server-$$@127.0.0.1\"])."
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
done
