#!/usr/bin/env bash
# Prints the path of a kube-apiserver 1.20.2 binary, building it once from Debian's `kubernetes`
# source package (offline, with Debian's Go) when the cache lacks it. Takes 4-30 minutes on 2 cores;
# the 1.8 GB source tree is removed once the binary is cached.
set -euo pipefail
CACHE="${KUBE_APISERVER_CACHE:-$HOME/.cache/thanos-receiver/bin}"
BIN="$CACHE/kube-apiserver"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi

export DEBIAN_FRONTEND=noninteractive
# `apt-get source` needs a deb-src entry; add one of our own only when none exists, rather than
# editing the machine's source lists (which duplicated entries).
if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  . /etc/os-release
  printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$VERSION_CODENAME" > /etc/apt/sources.list.d/thanos-receiver-deb-src.sources
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
cd / && rm -rf "$WORK"
echo "$BIN"
