#!/usr/bin/env bash
# Hostile peers against one node on loopback: a port mapper and a kernel
# node "b" (with an `echo` function for the canary) on 127.0.0.1, then
# `erlangen-hostile … all` with a canary pair. Everything started here is
# stopped on every exit path (trap EXIT INT TERM).
#
# usage: chaos/hostile.sh [BIN_DIR] [case…]   (default BIN_DIR: target/release)
# exit: the hostile tool's code (0 all cases as expected and the canary lost
# nothing, 1 otherwise), 1 if the setup failed.
set -u
BIN=${1:-target/release}
shift || true
CASES=${*:-all}
DIR=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls (at most 10 s) until FILE contains PATTERN.
wait_for() {
  local n=0
  until grep -q "$2" "$1" 2>/dev/null; do
    n=$((n + 1))
    if [ $n -gt 200 ]; then echo "hostile.sh: no '$2' in $1:"; cat "$1"; return 1; fi
    sleep 0.05
  done
}

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/cookie"
chmod 600 "$DIR/cookie"
"$BIN/erlangen-port-mapper" 127.0.0.1 --registry-port 0 --directory-port 0 >"$DIR/pm.log" 2>&1 &
PIDS+=($!)
wait_for "$DIR/pm.log" "directory on" || exit 1
REG=$(grep -o 'registry on [0-9.]*:[0-9]*' "$DIR/pm.log" | sed 's/.*://')
DIRP=$(grep -o 'directory on [0-9.]*:[0-9]*' "$DIR/pm.log" | sed 's/.*://')
# `echo` loops with dotimes: a recursive defun would grow the stack per message.
"$BIN/erlangen-kernel" -n -b --log-level warn --registry-port "$REG" --directory-port "$DIRP" \
  --cookie-file "$DIR/cookie" \
  -e "(defun echo () (dotimes (i 1000000000) (let ((m (receive))) (send (first m) (second m)))))" \
  -e '(node :host "127.0.0.1" :name "b")' </dev/null >"$DIR/b.log" 2>&1 &
B=$!
PIDS+=($B)
wait_for "$DIR/b.log" "listening on port" || exit 1
PORT=$(grep -o 'listening on port [0-9]*' "$DIR/b.log" | awk '{print $4}')
# shellcheck disable=SC2086
timeout 600 "$BIN/erlangen-hostile" --port "$PORT" --registry-port "$REG" \
  --directory-port "$DIRP" --cookie-file "$DIR/cookie" --canary 127.0.0.1/b \
  --pid "$B" --live-name 127.0.0.1/b --node-log "$DIR/b.log" --pm-log "$DIR/pm.log" $CASES
