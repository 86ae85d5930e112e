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
# WITH_TSX=1: also tsx and what it loads, for `node --import tsx test/bench/run.ts` there
if [ "${WITH_TSX:-0}" = 1 ]; then
  for p in tsx esbuild @esbuild/linux-x64 get-tsconfig resolve-pkg-maps; do mkdir -p "$tmp/node_modules/$(dirname "$p")"; cp -r "node_modules/$p" "$tmp/node_modules/$p"; done
fi
git rev-parse --short HEAD > .device/commit
tar -C "$tmp" -cf - node_modules | xz -T2 -6 > .device/nm.tar.xz
rm -rf "$tmp"
[ -f .device/node.xz ] || xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > .device/node.xz
xz -T2 -6 -c "$(command -v nats-server)" > .device/nats-server.xz
du -sh .device
