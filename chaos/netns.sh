#!/usr/bin/env bash
# The multi-host harness: NODES network namespaces (PREFIX-n1 … at
# 10.77.0.k/24) joined by veth pairs to a bridge in a hub namespace
# (10.77.0.254), then `erlangen-chaos run` inside the hub, which starts a
# port mapper and a node in every namespace, injects faults and checks the
# results. Everything (processes, namespaces, links) is removed on every
# exit path: normal end, failure, Ctrl-C, TERM.
#
# usage: chaos/netns.sh BIN_DIR NODES [erlangen-chaos run options…]
#   e.g. chaos/netns.sh target/release 5 --scenario faults
# Needs root and `ip netns`; without them (and only then) it prints why and
# exits 0, or 1 when CHAOS_REQUIRED=1 (CI: a skip there is a failure). Any
# other failure (the namespaces' network cannot be built, a bug in
# netns-lib.sh, the run itself) exits 1. Without iptables the faults that
# need it are skipped (said in the report), unless CHAOS_REQUIRED=1, which
# makes that a failure too. The run's directory (event logs, report.txt)
# is kept when the run fails or CHAOS_KEEP=1.
set -u
BIN=$(cd "${1:-target/release}" && pwd) || exit 1
NODES=${2:-5}
shift 2 || true
PREFIX="ec$(( $$ % 100000 ))"
HUB="$PREFIX-hub"
CREATED=()
DIR=$(mktemp -d /tmp/erlangen-chaos.XXXXXX)
STATUS=1

# Only for what the machine lacks (not root, no ip): exits 0, or 1 when
# the run is required.
skip() {
  echo "chaos: skipped: $1"
  if [ "${CHAOS_REQUIRED:-0}" = 1 ]; then
    echo "chaos: FAIL: the run is required here (CHAOS_REQUIRED=1) but was skipped"
    exit 1
  fi
  STATUS=0
  exit 0
}

# Everything else: exits 1 (the cleanup keeps the run's directory).
fail() {
  echo "chaos: FAIL: $1"
  exit 1
}

# shellcheck source=chaos/netns-lib.sh
. "$(dirname "$0")/netns-lib.sh"

cleanup() {
  netns_remove "$NODES"
  if [ "$STATUS" = 0 ] && [ "${CHAOS_KEEP:-0}" != 1 ]; then
    rm -rf "$DIR"
  else
    echo "chaos: logs kept in $DIR"
  fi
}
trap cleanup EXIT
trap 'echo "chaos: interrupted"; exit 130' INT TERM

[ "$(id -u)" = 0 ] || skip "network namespaces need root"
command -v ip >/dev/null || skip "the ip command (iproute2) is missing"
[ -x "$BIN/erlangen-chaos" ] || fail "$BIN/erlangen-chaos is missing (cargo build --bins)"
# Root with ip: building the network must work; when it does not (a
# machine that allows namespaces but not bridges or veth pairs, a bug in
# netns-lib.sh), that is a failure, not a skip.
netns_build "$NODES" 2>"$DIR/setup.err" || fail "cannot build the namespaces' network: $(tail -1 "$DIR/setup.err")"

EXTRA=()
if ! command -v iptables >/dev/null || ! ip netns exec "$PREFIX-n1" iptables -w -t nat -L -n >/dev/null 2>&1; then
  if [ "${CHAOS_REQUIRED:-0}" = 1 ]; then
    fail "iptables is missing or unusable in the namespaces: partitions, one-way partitions and latency would be skipped (CHAOS_REQUIRED=1)"
  fi
  EXTRA+=(--no-iptables)
fi
echo "chaos: $NODES namespaces ($PREFIX-n1..n$NODES) on bridge br0 in $HUB; logs in $DIR"
# In the background, waited for: a signal to this script then runs its
# trap at once (bash defers traps while a foreground command runs), and
# the cleanup kills the controller with everything else.
ip netns exec "$HUB" "$BIN/erlangen-chaos" run --dir "$DIR" --prefix "$PREFIX" \
  --nodes "$NODES" --bin-dir "$BIN" "${EXTRA[@]}" "$@" &
wait $!
STATUS=$?
exit $STATUS
