#!/bin/bash
# How long the NATS servers of a 3-node cluster keep a route to a node cut off the network (no TCP reset), with the
# repository's generated server config (nats.conf, its ping_interval/ping_max/write_deadline) and a cluster block as
# test/chaos/multi-host.test.ts adds one. Three network namespaces on one bridge; host 2's switch port goes down; each
# other server's log says when (and why) it closed its route to host 2. Needs root (ip netns) and nats-server.
#   sudo bash scripts/nats-route-cut.sh [CONF] [WAIT_S]   (defaults: nats.conf, 40)
# Prints, per surviving server, the seconds from the cut to its route's close, or "open after WAIT_S s".
set -euo pipefail
CONF=${1:-$(dirname "$0")/../nats.conf}; WAIT=${2:-40}; T=nrc$$; SW=sw$T; D=$(mktemp -d); NET=10.233.$((RANDOM % 200 + 10))
for r in GATEWAY CLUSTER POOL INSTANCE NODE OBSERVER ADMIN; do export DYN_${r}_PASS=x; done
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for i in 0 1 2; do ip netns del h$i$T 2>/dev/null || true; done
  ip netns del $SW 2>/dev/null || true
  rm -rf "$D"
}
trap cleanup EXIT
ip netns add $SW; ip -n $SW link set lo up; ip -n $SW link add br0 type bridge; ip -n $SW link set br0 up
for i in 0 1 2; do
  ip netns add h$i$T; ip -n h$i$T link set lo up
  ip link add v$i$T netns $SW type veth peer name eth0 netns h$i$T
  ip -n $SW link set v$i$T master br0 up; ip -n h$i$T addr add $NET.$((i + 1))/24 dev eth0; ip -n h$i$T link set eth0 up
done
for i in 0 1 2; do
  r=""; for j in 0 1 2; do if [ $j != $i ]; then r="$r${r:+, }nats-route://$NET.$((j + 1)):6222"; fi; done
  sed -e "s/^listen: .*/listen: $NET.$((i + 1)):4222/" -e "s/^server_name: .*/server_name: s$i/" -e "s|store_dir: .*|store_dir: \"$D/js$i\"|" "$CONF" > $D/s$i.conf
  printf '\ncluster {\n  name: cut\n  listen: %s:6222\n  routes: [%s]\n}\n' $NET.$((i + 1)) "$r" >> $D/s$i.conf
  ip netns exec h$i$T nats-server -c $D/s$i.conf -l $D/s$i.log & PIDS+=($!)
done
sleep 8
CUT=$(date +%s.%N); ip -n $SW link set v2$T down
closed() { grep -m1 "$NET.3:.* - Router connection closed: [^D]" $D/s$1.log || true; }
until [ -n "$(closed 0)" ] && [ -n "$(closed 1)" ] || [ "$(echo "$(date +%s.%N) - $CUT > $WAIT" | bc)" = 1 ]; do sleep 0.1; done
for i in 0 1; do
  l=$(closed $i)
  if [ -z "$l" ]; then echo "s$i: route to the cut node open after $WAIT s"; continue; fi
  at=$(date -d "$(echo "$l" | awk '{print $2" "$3}')" +%s.%N)
  printf 's%d: route closed %.2f s after the cut (%s)\n' $i "$(echo "$at - $CUT" | bc)" "${l##*closed: }"
done
