#!/usr/bin/env bash
# Packs what test/bench/device/replay-run.sh needs on a machine without Node (the lent GPU machine): the Node
# binary, the production node_modules and nats-server, into .device/ (git-ignored). Then run there, with
# .device carried:  CFG=deploy/replay-large.yaml bash test/bench/device/replay-run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
mkdir -p .device
tmp=$(mktemp -d)
cp package.json package-lock.json "$tmp/"
(cd "$tmp" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
tar -C "$tmp" -cf - node_modules | xz -T2 -6 > .device/nm.tar.xz
rm -rf "$tmp"
[ -f .device/node.xz ] || xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > .device/node.xz
xz -T2 -6 -c "$(command -v nats-server)" > .device/nats-server.xz
du -sh .device
