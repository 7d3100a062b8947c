#!/usr/bin/env bash
# The Erlang/OTP anchor for RELIABILITY.md, measured on this machine: how
# long Erlang's distribution takes to tell a monitoring node (erlang:
# monitor_node) that its peer is gone, with default settings
# (net_ticktime 60 s), for kill -9 and for a silent partition (iptables
# DROP both ways). Two network namespaces on a bridge, one node each, as in
# netns.sh; everything removed on every exit path. Needs root, ip netns,
# iptables and erl (Debian: erlang-nox).
#
# usage: chaos/erlang-anchor.sh [RUNS]     (default 1; each run ~80 s)
set -u
RUNS=${1:-1}
PREFIX="ea$(( $$ % 100000 ))"
HUB="$PREFIX-hub"
CREATED=()
DIR=$(mktemp -d)
# shellcheck source=chaos/netns-lib.sh
. "$(dirname "$0")/netns-lib.sh"
cleanup() {
  netns_remove 2
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
command -v erl >/dev/null || { echo "erlang-anchor: erl is not installed"; exit 1; }
netns_build 2 || { echo "erlang-anchor: cannot build the namespaces' network"; exit 1; }
now() { date +%s%3N; }
# Polls (at most 120 s) until FILE contains PATTERN.
wait_for() {
  local n=0
  until grep -q "$2" "$1" 2>/dev/null; do
    n=$((n + 1)); [ $n -gt 2400 ] && return 1; sleep 0.05
  done
}
measure() { # $1: kill9 | partition; $2: run number
  local a b t out="$DIR/b-$1-$2.log"
  ip netns exec "$PREFIX-n1" erl -noshell -name "a$2@10.77.0.1" -setcookie chaos \
    -eval 'receive after infinity -> ok end' >/dev/null 2>&1 &
  a=$!
  ip netns exec "$PREFIX-n2" erl -noshell -name "b$2@10.77.0.2" -setcookie chaos -eval "
    A = 'a$2@10.77.0.1',
    Up = fun Up(0) -> false; Up(N) -> case net_adm:ping(A) of pong -> true; pang -> timer:sleep(100), Up(N - 1) end end,
    true = Up(200),
    erlang:monitor_node(A, true),
    io:format(\"connected~n\"),
    receive {nodedown, A} -> io:format(\"nodedown ~p~n\", [os:system_time(millisecond)])
    after 200000 -> io:format(\"no nodedown~n\") end,
    halt()." >"$out" 2>&1 &
  b=$!
  wait_for "$out" connected || { echo "erlang-anchor: no connection"; kill -9 $a $b; return; }
  t=$(now)
  if [ "$1" = kill9 ]; then
    pkill -9 -f "name a$2@" 
  else
    ip netns exec "$PREFIX-n1" iptables -w -I INPUT -s 10.77.0.2 -j DROP
    ip netns exec "$PREFIX-n1" iptables -w -I OUTPUT -d 10.77.0.2 -j DROP
  fi
  wait_for "$out" "nodedown" || { echo "erlang-anchor: $1: no nodedown within 120 s"; }
  local d; d=$(grep -o 'nodedown [0-9]*' "$out" | awk '{print $2}')
  [ -n "$d" ] && echo "erlang $1 run $2: nodedown after $((d - t)) ms"
  if [ "$1" = partition ]; then
    ip netns exec "$PREFIX-n1" iptables -w -D INPUT -s 10.77.0.2 -j DROP
    ip netns exec "$PREFIX-n1" iptables -w -D OUTPUT -d 10.77.0.2 -j DROP
  fi
  kill -9 $a $b 2>/dev/null; wait $a $b 2>/dev/null
}
# What "TCP close only" detects (the Rust actor crates' remote layers): a
# plain TCP connection, no heartbeats, the client writing a byte a second,
# silently partitioned: how long until a read or write fails (capped at 120
# s; Linux gives up on unacknowledged data after tcp_retries2 = 15
# retransmissions, about 15 minutes).
tcp_only() {
  local out="$DIR/tcp-$1.log" t
  ip netns exec "$PREFIX-n1" python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.1", 7000)); s.listen(1); c, _ = s.accept()
while c.recv(100): pass' >/dev/null 2>&1 &
  local server=$!
  ip netns exec "$PREFIX-n2" python3 -c '
import socket, time, sys
for _ in range(100):
    try:
        c = socket.create_connection(("10.77.0.1", 7000), timeout=1); break
    except OSError: time.sleep(0.1)
c.settimeout(None); print("connected", flush=True)
start = time.time()
try:
    while time.time() - start < 120:
        c.send(b"x"); time.sleep(1)
    print("no error after 120 s", flush=True)
except OSError as e:
    print("error %d %s" % (int(time.time() * 1000), e), flush=True)' >"$out" 2>&1 &
  local client=$!
  wait_for "$out" connected || { echo "erlang-anchor: tcp: no connection"; kill -9 $server $client; return; }
  t=$(now)
  ip netns exec "$PREFIX-n1" iptables -w -I INPUT -s 10.77.0.2 -j DROP
  ip netns exec "$PREFIX-n1" iptables -w -I OUTPUT -d 10.77.0.2 -j DROP
  wait "$client"
  local e; e=$(grep -o '^error [0-9]*' "$out" | awk '{print $2}')
  if [ -n "$e" ]; then echo "tcp-only partition run $1: error after $((e - t)) ms"
  else echo "tcp-only partition run $1: $(tail -1 "$out")"; fi
  ip netns exec "$PREFIX-n1" iptables -w -D INPUT -s 10.77.0.2 -j DROP
  ip netns exec "$PREFIX-n1" iptables -w -D OUTPUT -d 10.77.0.2 -j DROP
  kill -9 $server 2>/dev/null; wait $server 2>/dev/null
}
echo "erlang-anchor: $(erl -noshell -eval 'io:format("OTP ~s, net_ticktime setting ~p (undefined: the default, 60 s)~n", [erlang:system_info(otp_release), application:get_env(kernel, net_ticktime)]), halt().' 2>/dev/null)"
for r in $(seq 1 "$RUNS"); do
  measure kill9 "$r"
  measure partition "$r"
  [ "$r" = 1 ] && tcp_only "$r"
done
