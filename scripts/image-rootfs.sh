#!/usr/bin/env bash
# Lays out the root filesystem of the container images in ROOTFS from the binaries in BIN_DIR:
# both binaries (debug info stripped), the shared libraries they link (glibc, libgcc_s, libm: what distroless/cc holds),
# CA certificates for S3 over TLS, a non-root user 65532, /tmp and /data. No shell, no package
# manager. Used by the Dockerfile's build stage and by `make images` (scripts/build-images.sh).
# Usage: image-rootfs.sh BIN_DIR ROOTFS
set -euo pipefail
BIN_DIR="$1"
ROOTFS="$2"
BINS=(thanos-receiver thanos-receiver-operator)

mkdir -p "$ROOTFS"/{usr/bin,bin,etc/ssl/certs,tmp,data}
for b in "${BINS[@]}"; do
  install -m 0755 "$BIN_DIR/$b" "$ROOTFS/usr/bin/$b"
  # Debug info stays in the build; symbols stay, so a panic's backtrace still names functions.
  strip --strip-debug "$ROOTFS/usr/bin/$b"
done
# A Thanos StatefulSet that runs `command: [/bin/thanos]` with `args: [receive, ...]` keeps working.
ln -sf /usr/bin/thanos-receiver "$ROOTFS/bin/thanos"

# Every shared object the binaries load, at the path the loader looks for it.
for b in "${BINS[@]}"; do
  ldd "$BIN_DIR/$b" | grep -oE '(/[^ ]+)' | while read -r lib; do
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
  done
done

cp -L /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/data:/sbin/nologin\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$ROOTFS/etc/group"
printf 'hosts: files dns\n' > "$ROOTFS/etc/nsswitch.conf"
chmod 1777 "$ROOTFS/tmp"
chown 65532:65532 "$ROOTFS/data"
