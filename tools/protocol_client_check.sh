#!/usr/bin/env bash
# Runs tools/protocol_client.py (a node written from PROTOCOL.md alone) against
# a real port mapper and kernel node.
#
#   tools/protocol_client_check.sh PROGRAM_DIR [SCENARIO...]
#
# PROGRAM_DIR holds erlangen-port-mapper and erlangen-kernel (for example
# target/debug). For every scenario (or the ones named), in a temporary
# directory, it starts a fresh port mapper on free ports and a fresh kernel
# node, runs the scenario with a deadline, checks that both survived it, and
# stops them: no scenario sees what an earlier one left behind (throttle
# tokens, connections, counters, registrations), so they pass in any order.
# Prints PASS/FAIL per scenario and exits non-zero on any failure.
# Everything it starts is killed on every way out.
set -u

if [ $# -lt 1 ] || [ ! -x "$1/erlangen-port-mapper" ] || [ ! -x "$1/erlangen-kernel" ]; then
    echo "usage: $0 PROGRAM_DIR [SCENARIO...]  (PROGRAM_DIR holds erlangen-port-mapper and erlangen-kernel)" >&2
    exit 2
fi
BIN=$(cd "$1" && pwd)
shift
HERE=$(cd "$(dirname "$0")" && pwd)
CLIENT="$HERE/protocol_client.py"
PY=${PYTHON:-python3}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/protocol-check.XXXXXX")
PM_PID=""
KERNEL_PID=""
SCENARIO_PID=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    # a scenario still running (this script was interrupted): timeout passes the signal on
    if [ -n "$SCENARIO_PID" ]; then
        kill -TERM "$SCENARIO_PID" 2>/dev/null
        wait "$SCENARIO_PID" 2>/dev/null
    fi
    # kernels a scenario started (it kills them itself; this is for a scenario killed by its timeout)
    if [ -f "$TMP/pids" ]; then
        for pid in $(cat "$TMP/pids"); do
            # only if it is still one of our kernels (not a reused pid)
            if [ -r "/proc/$pid/cmdline" ] &&
                tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "^$BIN/erlangen-kernel .*$TMP"; then
                kill -KILL "$pid" 2>/dev/null
            fi
        done
    fi
    stop_cluster
    if [ "${KEEP_TMP:-}" = 1 ]; then
        echo "logs kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# wait_for FILE REGEX SECONDS PID: print the first line of FILE matching REGEX,
# failing when the deadline passes or PID dies first.
wait_for() {
    local file=$1 regex=$2 seconds=$3 pid=$4 line
    local deadline=$(($(date +%s%N) / 1000000 + seconds * 1000))
    while [ $(($(date +%s%N) / 1000000)) -lt $deadline ]; do
        line=$(grep -m1 -E "$regex" "$file" 2>/dev/null)
        if [ -n "$line" ]; then
            echo "$line"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# A cookie file (64 hex digits and a newline, mode 0600), one for all.
umask 077
COOKIE="$TMP/cookie"
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$COOKIE"
echo >>"$COOKIE"
chmod 600 "$COOKIE"
NODE="check$$"
PEER="localhost/$NODE"

# start_cluster TAG: a port mapper on free ports and a kernel serving as
# node $PEER with a registered echo agent and a group member (logs
# $TMP/TAG-*.log); sets PM_PID, KERNEL_PID, REGISTRY_PORT, DIRECTORY_PORT.
start_cluster() {
    local tag=$1 line
    "$BIN/erlangen-port-mapper" --registry-port 0 --directory-port 0 2>"$TMP/$tag-port-mapper.log" &
    PM_PID=$!
    line=$(wait_for "$TMP/$tag-port-mapper.log" '^erlangen-port-mapper: registry on .*, directory on ' 10 "$PM_PID") || {
        echo "FAIL $tag: the port mapper did not start"; cat "$TMP/$tag-port-mapper.log"; return 1; }
    REGISTRY_PORT=$(sed -E 's/.*registry on [^,]*:([0-9]+),.*/\1/' <<<"$line")
    DIRECTORY_PORT=$(sed -E 's/.*directory on .*:([0-9]+)$/\1/' <<<"$line")
    "$BIN/erlangen-kernel" -n \
        --registry-port "$REGISTRY_PORT" --directory-port "$DIRECTORY_PORT" --cookie-file "$COOKIE" \
        -e "(spawn '(async-echo) :name \"echo\")" \
        -e '(join-group :workers)' \
        -e '(defun watch-then-receive (x) (link x :monitor) (receive))' \
        -e '(defun hold (x) (link x) (receive))' \
        -e "(node :host \"localhost\" :name \"$NODE\")" \
        </dev/null >"$TMP/$tag-kernel.out" 2>"$TMP/$tag-kernel.log" &
    KERNEL_PID=$!
    wait_for "$TMP/$tag-kernel.log" "node $PEER listening on port [0-9]+" 15 "$KERNEL_PID" >/dev/null || {
        echo "FAIL $tag: the kernel node did not start"; cat "$TMP/$tag-kernel.log" "$TMP/$tag-kernel.out"; return 1; }
}

# stop_cluster: stops the kernel and the port mapper (TERM, then KILL).
stop_cluster() {
    local pid
    for pid in $KERNEL_PID $PM_PID; do
        # a kernel stopped by a scenario must be continued to die of SIGTERM
        kill -CONT "$pid" 2>/dev/null
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in $KERNEL_PID $PM_PID; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    KERNEL_PID=""
    PM_PID=""
}

# The scenarios, each against its own port mapper and kernel, in its own
# process with its own deadline.
if [ $# -gt 0 ]; then
    SCENARIOS="$*"
else
    SCENARIOS="codec port-mapper pm-limits handshake wrong-cookie bad-hello handshake-deadline send drops
               spawn-monitor link-exit reverse-attach notice-scope groups cluster inbound cross-dial heartbeat
               silent-client close new-run stale-requests
               malformed node-limits big kernels clear documented
               first-nodes visible-member ops-query hidden-member bad-nodes claims overlap
               throttle peer-silent"
fi
failed=0
passed=0
survived=0
for s in $SCENARIOS; do
    out="$TMP/scenario-$s.log"
    if ! start_cluster "$s"; then
        failed=$((failed + 1))
        stop_cluster
        continue
    fi
    # in the background and waited for, so that a signal to this script is handled at once
    timeout -k 5 60 "$PY" "$CLIENT" --directory-port "$DIRECTORY_PORT" --registry-port "$REGISTRY_PORT" \
        --cookie-file "$COOKIE" --peer "$PEER" --kernel-pid "$KERNEL_PID" --bin "$BIN" --pid-file "$TMP/pids" \
        "$s" >"$out" 2>&1 &
    SCENARIO_PID=$!
    wait "$SCENARIO_PID"
    rc=$?
    SCENARIO_PID=""
    if [ $rc -eq 0 ] && grep -q "^PASS $s\$" "$out"; then
        echo "PASS $s"
        passed=$((passed + 1))
        [ -n "${VERBOSE:-}" ] && sed 's/^/    /' "$out" | grep -v "^    PASS"
    else
        [ $rc -eq 124 ] && echo "    (timed out)" >>"$out"
        echo "FAIL $s (status $rc)"
        sed 's/^/    /' "$out" | grep -v "^    FAIL $s"
        failed=$((failed + 1))
    fi
    # the kernel and the port mapper must have survived the scenario
    if kill -0 "$KERNEL_PID" 2>/dev/null && kill -0 "$PM_PID" 2>/dev/null; then
        survived=$((survived + 1))
    else
        echo "FAIL survivors: the kernel node or the port mapper died during $s"
        tail -20 "$TMP/$s-kernel.log" "$TMP/$s-port-mapper.log"
        failed=$((failed + 1))
    fi
    if [ -n "${VERBOSE:-}" ]; then
        echo "--- kernel log ($s)"; cat "$TMP/$s-kernel.log"
    fi
    stop_cluster
done
[ $survived -gt 0 ] && echo "PASS survivors (the kernel node and the port mapper survived $survived scenarios)"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
