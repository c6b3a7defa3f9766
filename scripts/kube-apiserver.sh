#!/usr/bin/env bash
# Prints the path of a kube-apiserver 1.20.2 binary, building it once from Debian's `kubernetes`
# source package (offline, with Debian's Go) when the cache lacks it. Takes 4-30 minutes on 2 cores.
set -euo pipefail
CACHE="${KUBE_APISERVER_CACHE:-$HOME/.cache/thanos-receiver/bin}"
BIN="$CACHE/kube-apiserver"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

export DEBIAN_FRONTEND=noninteractive
if ! grep -q 'deb-src' /etc/apt/sources.list.d/debian.sources 2>/dev/null; then
  sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
fi
apt-get update -q >&2
apt-get install -y -q --no-install-recommends golang-go rsync golang-github-modern-go-reflect2-dev dpkg-dev etcd-server >&2
WORK="$HOME/.cache/thanos-receiver/kubernetes-src"
mkdir -p "$WORK"
cd "$WORK"
ls -d kubernetes-*/ >/dev/null 2>&1 || apt-get source kubernetes >&2
cd kubernetes-*/
# The vendored reflect2 1.0.1 crashes at run time under Go >= 1.18; Debian ships the fixed 1.0.2.
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
make WHAT=cmd/kube-apiserver >&2
mkdir -p "$CACHE"
cp _output/bin/kube-apiserver "$BIN"
echo "$BIN"
