#!/usr/bin/env bash
# One sitting: Erlangen's benchmarks (thread and async agents), the
# bare-thread floor (bench/floor.rs), the bare std-only executor floor for
# async agents (bench/floor_async.rs, lines "floor async ...") and
# Erlang/OTP,
# each REPS times (default 3), one after the other on the same machine.
# Prints every run's lines, prefixed with the system they measure.
set -euo pipefail
reps=${1:-3}
cd "$(dirname "$0")/.."
make -s benchmarks bench-floor >/dev/null
echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p')"
for r in $(seq "$reps"); do
  echo "## run $r"
  {
    bin/erlangen-ring-benchmark 1000000 10
    bin/erlangen-ring-benchmark 1000000 1000
    bin/erlangen-message-benchmark 1000000 1
    bin/erlangen-message-benchmark 1000000 2
    bin/erlangen-message-benchmark 1000000 4
    bin/erlangen-spawn-benchmark 100000 10000
    bin/erlangen-fanin-benchmark 1000000 4
    bin/erlangen-remote-benchmark 100000 1000000
    # The same workloads on async agents (result lines start "async "),
    # a thread agent ping-ponging with an async one ("mixed "), a
    # million async agents alive at once, and two nodes whose agents are
    # all async.
    bin/erlangen-ring-benchmark --async 1000000 10
    bin/erlangen-ring-benchmark --async 1000000 1000
    bin/erlangen-message-benchmark --async 1000000 1
    bin/erlangen-message-benchmark --async 1000000 2
    bin/erlangen-message-benchmark --async 1000000 4
    bin/erlangen-message-benchmark --mixed 1000000 1
    bin/erlangen-spawn-benchmark --async 100000 1000000
    bin/erlangen-fanin-benchmark --async 1000000 4
    bin/erlangen-remote-benchmark --async 100000 1000000
  } | sed 's/^/erlangen  /'
  target/bench-floor | sed 's/^/floor     /'
  target/bench-floor-async | sed 's/^/floor     /'
  bash bench/erlang/run.sh 1 2>/dev/null | grep '^W' | sed 's/^/erlang    /'
done
bin/erlangen-codec-benchmark 2 | sed 's/^/erlangen  /'
