#!/usr/bin/env bash
# Builds the two OCI images without a container engine: the root filesystem from
# scripts/image-rootfs.sh packed with umoci into one OCI layout holding
#   thanos-receiver:VERSION           entrypoint /usr/bin/thanos-receiver (args: [receive, ...])
#   thanos-receiver-operator:VERSION  entrypoint /usr/bin/thanos-receiver-operator
# (one shared layer), plus an oci-archive tarball of the layout for `skopeo copy`/`podman load`.
# Usage: build-images.sh BIN_DIR OUT_DIR
set -euo pipefail
BIN_DIR="$1"
OUT="$2"
cd "$(dirname "$0")/.."
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
LAYOUT="$OUT/oci"
BUNDLE="$OUT/bundle"
rm -rf "$LAYOUT" "$BUNDLE" "$OUT/thanos-receiver-images.tar"
mkdir -p "$OUT"

umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:base"
umoci unpack --image "$LAYOUT:base" "$BUNDLE"
scripts/image-rootfs.sh "$BIN_DIR" "$BUNDLE/rootfs"
umoci repack --image "$LAYOUT:rootfs" "$BUNDLE"
umoci rm --image "$LAYOUT:base"

common=(--config.user=65532:65532 --config.workingdir=/data
  --config.label=org.opencontainers.image.version="$VERSION"
  --config.label=org.opencontainers.image.source=https://github.com/thanos-rs/thanos-receiver
  --config.label=org.opencontainers.image.licenses=Apache-2.0)
umoci config --image "$LAYOUT:rootfs" --tag "thanos-receiver-$VERSION" "${common[@]}" \
  --config.entrypoint=/usr/bin/thanos-receiver --config.cmd=receive \
  --config.exposedports=19291/tcp --config.exposedports=10901/tcp --config.exposedports=10902/tcp \
  --config.volume=/data
umoci config --image "$LAYOUT:rootfs" --tag "thanos-receiver-operator-$VERSION" "${common[@]}" \
  --config.entrypoint=/usr/bin/thanos-receiver-operator --config.exposedports=8080/tcp
umoci rm --image "$LAYOUT:rootfs"
umoci gc --layout "$LAYOUT"
rm -rf "$BUNDLE"
tar -C "$LAYOUT" -cf "$OUT/thanos-receiver-images.tar" .
echo "images in $LAYOUT (tags: $(umoci list --layout "$LAYOUT" | tr '\n' ' '))"
echo "push: skopeo copy oci:$LAYOUT:thanos-receiver-$VERSION docker://<registry>/thanos-receiver:$VERSION"
