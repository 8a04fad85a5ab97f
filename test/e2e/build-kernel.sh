#!/bin/sh
# Builds the end-to-end tests' guest kernel (an ELF vmlinux) from Debian's linux-source-6.1 and the
# config fragment next to this script, and caches it. Prints the path of the vmlinux on stdout.
#
#   build-kernel.sh [CACHE_DIR]      default: $MVNET_E2E_CACHE or ~/.cache/microvm-net
#
# The cache key is a hash of the fragment's CONFIG lines, the linux-source package version and the
# compiler version, so a changed fragment (or a Debian kernel update) rebuilds, and nothing else does.
# The build runs in a temporary directory and the result is moved into place only when complete, so an
# interrupted build never leaves a half-written kernel in the cache. Needs: linux-source-6.1, gcc, make,
# flex, bison, bc, libelf-dev, libssl-dev (see .ci/run). Measured here (2 cores shared with other
# builds): 11 min, including unpacking the 138 MB source tarball.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fragment="$here/guest-kernel.config"
cache=${1:-${MVNET_E2E_CACHE:-${HOME:-/root}/.cache/microvm-net}}
tarball=/usr/src/linux-source-6.1.tar.xz
log() { echo "build-kernel: $*" >&2; }

[ -r "$tarball" ] || { log "missing $tarball (apt-get install linux-source-6.1)"; exit 1; }
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %Y "$tarball")
ccver=$(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion)
key=$( { grep -E '^(CONFIG_|# CONFIG_)' "$fragment"; echo "linux-source-6.1 $srcver"; echo "gcc $ccver"; } | sha256sum | cut -c1-16)
out="$cache/guest-kernel/$key"
if [ -s "$out/vmlinux" ]; then
  echo "$out/vmlinux"
  exit 0
fi

mkdir -p "$cache/guest-kernel"
work=$(mktemp -d "$cache/guest-kernel/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
log "building guest kernel $key (linux-source-6.1 $srcver) in $work"
tar -xf "$tarball" -C "$work"
src="$work/linux-source-6.1"
jobs=$(nproc)
make -s -C "$src" tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$src" "$src/.config" "$fragment" >/dev/null
make -s -C "$src" olddefconfig >/dev/null
# kconfig silently drops an option whose dependencies are unmet: refuse to build a kernel that lacks
# something the fragment asked for.
missing=$(grep -E '^CONFIG_[A-Z0-9_]+=' "$fragment" | while IFS= read -r line; do
  if ! grep -qxF "$line" "$src/.config"; then echo "$line"; fi
done)
unwanted=$(sed -n 's/^# \(CONFIG_[A-Z0-9_]*\) is not set$/\1/p' "$fragment" | while IFS= read -r sym; do
  if grep -q "^$sym=" "$src/.config"; then echo "$sym"; fi
done)
if [ -n "$missing$unwanted" ]; then
  log "kconfig did not keep the fragment: missing [$missing] unwanted [$unwanted]"
  exit 1
fi
make -s -C "$src" -j"$jobs" vmlinux >&2
mkdir -p "$work/out"
cp "$src/vmlinux" "$work/out/vmlinux"
cp "$src/.config" "$work/out/config"
chmod 644 "$work/out/vmlinux" "$work/out/config"
echo "$(( $(date +%s) - start ))" > "$work/out/build-seconds"
# Another run may have finished the same build meanwhile: rename(2) refuses to replace its directory,
# and that result is as good as ours.
if mv -T "$work/out" "$out" 2>/dev/null; then
  log "built $out/vmlinux in $(cat "$out/build-seconds") s"
elif [ ! -s "$out/vmlinux" ]; then
  log "cannot move the kernel into $out"
  exit 1
fi
echo "$out/vmlinux"
