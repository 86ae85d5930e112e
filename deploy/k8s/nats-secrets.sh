#!/bin/sh
# NATS credentials of a deploy/k8s cluster, one Secret per role, from fresh keys:
#   deploy/k8s/nats-secrets.sh [cluster.yaml] [namespace]        (from the repository root)
# runs `npm run gen:nats-auth` into a private temporary directory, then creates or replaces
#   dynamollm-nats-auth            users.conf for the NATS pods (public keys and rights only) and routes.conf
#                                  (the route password, fresh each run, and the routes carrying it)
#   dynamollm-nats-keys-<role>     the seeds of that role's actors (cluster, pool, gateway); each workload mounts
#                                  only its own role's
#   dynamollm-nats-keys-node-<node>  one GPU node's seed and the seeds of the instances it may start; only that
#                                  node's agent mounts it (60-node-agent.yaml: one DaemonSet per node)
# The admin seed (every right) and the observer seed (read-only tools: dynamollm status, top, events) are the
# operator's, used by no workload: they are not stored in the cluster. They go to OPERATOR_KEYS_DIR (default
# ${XDG_CONFIG_HOME:-$HOME/.config}/dynamollm/nats-keys-<namespace>; the directory 0700, admin.nk and observer.nk
# 0600), any Secret dynamollm-nats-keys-admin or dynamollm-nats-keys-observer in the namespace is deleted, and the
# script prints where the two files are. Keep them there or move them to your secret manager.
# It removes the temporary directory. Running it again rotates every credential: then reload the NATS
# servers (kubectl exec nats-N -- nats-server --signal reload=/var/run/nats/nats.pid) and restart the actors
# (kubectl rollout restart statefulset/cluster-manager statefulset/pool-manager statefulset/gateway, and
# kubectl rollout restart daemonset -l app.kubernetes.io/name=node-agent).
# Replica counts other than 2: pass the ids through GEN_ARGS, e.g. GEN_ARGS="--gateways gateway-0,gateway-1,gateway-2".
set -eu
config=${1:-deploy/k8s/cluster.yaml}
ns=${2:-dynamollm}
keys=${OPERATOR_KEYS_DIR:-${XDG_CONFIG_HOME:-$HOME/.config}/dynamollm/nats-keys-$ns}
umask 077
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# the operator's directory: made private before any seed is written, never a link (a link could send the seeds elsewhere)
if [ -L "$keys" ]; then echo "nats-secrets.sh: $keys is a symbolic link: give OPERATOR_KEYS_DIR a real directory" >&2; exit 2; fi
mkdir -p "$keys"
chmod 700 "$keys"
# shellcheck disable=SC2086
npm run -s gen:nats-auth -- --config "$config" --out "$dir" ${GEN_ARGS:-}
# server-side apply: a client-side apply would copy users.conf (hundreds of KB) into an annotation (256 KiB max)
apply() { kubectl -n "$ns" create secret generic "$1" --from-file="$2" --dry-run=client -o yaml | kubectl apply --server-side --force-conflicts -f -; }
apply dynamollm-nats-auth "$dir/nats-auth"
for role in cluster pool gateway; do
  apply "dynamollm-nats-keys-$role" "$dir/keys-$role"
done
for d in "$dir"/keys-node-*; do
  apply "dynamollm-nats-keys-node-${d##*/keys-node-}" "$d"
done
for role in admin observer; do
  for f in "$dir/keys-$role"/*.nk; do
    dest="$keys/${f##*/}"
    rm -f "$dest"
    cp "$f" "$dest"
    chmod 600 "$dest"
  done
  kubectl -n "$ns" delete secret "dynamollm-nats-keys-$role" --ignore-not-found
done
echo "nats-secrets.sh: the admin and observer seeds are not stored in the cluster; they are in $keys (admin.nk, observer.nk; mode 0600)."
echo "  e.g. kubectl -n $ns port-forward pod/nats-0 4222 & NATS_NKEY=$keys/observer.nk NATS_URL=nats://127.0.0.1:4222 dynamollm status"
