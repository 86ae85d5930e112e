# Sourced by the device scripts: unpacks the carried Node, nats-server and node_modules (.device/, from
# pack-replay.sh) once per machine, so two scripts started side by side in one call share one unpack.
# Puts /tmp/bin first on PATH.
mkdir -p /tmp/bin
if [ -f .device/node.xz ]; then
  (
    flock 9
    if [ ! -f /tmp/bin/.unpacked ] || [ "$(cat /tmp/bin/.unpacked)" != "$(cat .device/commit 2>/dev/null)" ]; then
      xz -d -c .device/node.xz > /tmp/bin/node.new && mv -f /tmp/bin/node.new /tmp/bin/node
      xz -d -c .device/nats-server.xz > /tmp/bin/nats-server.new && mv -f /tmp/bin/nats-server.new /tmp/bin/nats-server
      chmod +x /tmp/bin/node /tmp/bin/nats-server
      tar -xJf .device/nm.tar.xz
      cat .device/commit > /tmp/bin/.unpacked 2>/dev/null || echo unknown > /tmp/bin/.unpacked
    fi
  ) 9> /tmp/bin/.unpack.lock
fi
export PATH=/tmp/bin:$PATH
