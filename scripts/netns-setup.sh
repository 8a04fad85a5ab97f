#!/bin/sh
# Runs as PID 1's child inside a fresh private network + mount namespace made by scripts/test.mjs.
# It adapts the namespace to what the tests need, then runs the command it was given.
# Nothing here touches the machine's own namespaces: every mount is private to this namespace.
set -eu
ip link set lo up
# /sys must show this namespace's interfaces, not the machine's.
mount -t sysfs sysfs /sys 2>/dev/null || true
# `ip netns add` (the fake "internet") and our state files write under /run: keep them private.
mount -t tmpfs tmpfs /run 2>/dev/null || true
# A VMM opens /dev/net/tun as its own uid; distributions ship the node 0666 through udev, but a fresh
# machine may have 0600. Give this namespace its own world-usable node instead of changing the host's.
if [ "$(stat -c %a /dev/net/tun 2>/dev/null)" != 666 ] && mknod -m 666 /run/tun c 10 200 2>/dev/null; then
  mount --bind /run/tun /dev/net/tun
fi
MVNET_TEST_NETNS=$(readlink /proc/self/ns/net)
export MVNET_TEST_NETNS
exec "$@"
