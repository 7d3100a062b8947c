# Sourced by netns.sh and erlang-anchor.sh: a hub namespace "$HUB" with a
# bridge (10.77.0.254), and nodes "$PREFIX-n1".."$PREFIX-nN" at 10.77.0.k
# joined to it by veth pairs. The caller sets PREFIX and HUB and keeps
# CREATED=() (the namespaces made so far, for netns_remove).

# Makes the hub and N node namespaces; non-zero if any step fails (the
# caller's netns_remove cleans up what was made).
netns_build() { # $1: N
  ip netns add "$HUB" || return 1
  CREATED+=("$HUB")
  ip -n "$HUB" link set lo up &&
  ip -n "$HUB" link add br0 type bridge &&
  ip -n "$HUB" addr add 10.77.0.254/24 dev br0 &&
  ip -n "$HUB" link set br0 up || return 1
  local k ns
  for k in $(seq 1 "$1"); do
    ns="$PREFIX-n$k"
    ip netns add "$ns" || return 1
    CREATED+=("$ns")
    ip link add "${PREFIX}h$k" type veth peer name "${PREFIX}n$k" &&
    ip link set "${PREFIX}h$k" netns "$HUB" &&
    ip link set "${PREFIX}n$k" netns "$ns" &&
    ip -n "$HUB" link set "${PREFIX}h$k" master br0 up &&
    ip -n "$ns" link set "${PREFIX}n$k" name eth0 &&
    ip -n "$ns" addr add "10.77.0.$k/24" dev eth0 &&
    ip -n "$ns" link set eth0 up &&
    ip -n "$ns" link set lo up || return 1
  done
}

# Kills every process in the namespaces made, deletes them, and removes a
# veth end a half-finished setup left in this namespace.
netns_remove() { # $1: N
  local ns pids k
  for ns in "${CREATED[@]}"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
  done
  for ns in "${CREATED[@]}"; do ip netns del "$ns" 2>/dev/null; done
  for k in $(seq 1 "$1"); do ip link del "${PREFIX}h$k" 2>/dev/null; done
  CREATED=()
}
