#!/usr/bin/env bash
# Runs on the lent GPU machine (16 cores): the issue-6 replay (10 min of the conv trace at --speed 10) against
# `dynamollm up --config deploy/replay.yaml`. Uses no GPU: it measures the control plane with emulated engines.
set -u
mkdir -p /tmp/bin
xz -d -c .device/node.xz > /tmp/bin/node
xz -d -c .device/nats-server.xz > /tmp/bin/nats-server
chmod +x /tmp/bin/node /tmp/bin/nats-server
export PATH=/tmp/bin:$PATH
tar -xJf .device/nm.tar.xz
echo "cores: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)  mem: $(free -g | awk '/Mem/{print $2}') GiB"
node --version; nats-server --version
setsid node bin/dynamollm.js up --config ${CFG:-deploy/replay.yaml} > $OUT/up.log 2>&1 &
UP=$!
for i in $(seq 1 120); do grep -q "cluster ready" $OUT/up.log && break; sleep 1; done
grep -v '^{' $OUT/up.log | head -20
sleep 5
/usr/bin/time -v node bin/dynamollm.js replay --trace data/traces/AzureLLMInferenceTrace_conv.csv --speed 10 --duration 600 --json $OUT/replay.json > $OUT/replay.txt 2> $OUT/replay.err
echo "replay rc=$?"
cat $OUT/replay.txt
grep -E "Elapsed|Maximum resident|Percent of CPU" $OUT/replay.err
ps -eo pid,pcpu,etime,rss,args --sort=-pcpu | grep -E 'node|nats' | head -20 > $OUT/ps.txt
kill -INT -- -$UP; sleep 15
pgrep -fa 'dynamollm|nats-server' | head -5 || echo "all stopped"
