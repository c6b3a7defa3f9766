# The verbs of the project. Builds share one target directory outside the clone so reruns are incremental.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/thanos-receiver/target
CARGO ?= cargo

CRD := crds/thanosreceivers.receiver.thanos-rs.io.yaml
CHART_CRD := charts/thanos-receiver/crds/thanosreceivers.receiver.thanos-rs.io.yaml
# Written by scripts/setup.sh: PATH to the tools it installed (helm, moto, ...) and KUBE_APISERVER.
ENV := $(HOME)/.cache/thanos-receiver/env.sh

.PHONY: build test test-unit lint fmt demo bench bench-tls fuzz crds crds-check images

build:
	$(CARGO) build --workspace --bins

# Every test: unit tests and the end-to-end tests against real Prometheus/promtool, an S3 server,
# kube-apiserver, helm and the images, on loopback. Installs what is missing first.
test:
	bash scripts/setup.sh test
	$(CARGO) build --workspace --bins
	. $(ENV) && $(CARGO) nextest run --workspace --no-fail-fast

# Unit tests only: no Prometheus, S3 server, API server or built binaries needed.
test-unit:
	$(CARGO) nextest run --workspace --lib --bins --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# The main job, locally: receivers on loopback, fed by a real Prometheus, with a summary. It uses
# the same (debug) build as the tests, so running both compiles once.
demo:
	bash scripts/setup.sh demo
	$(CARGO) build --workspace --bins
	bash scripts/demo.sh

# Side-by-side benchmarks on loopback (receiver RF=1, 3 receivers RF=3, VictoriaMetrics), the
# decode-only limit and the TSDB figures; writes BENCHMARKS.md. BENCH_QUICK=1 for a short smoke run.
bench:
	bash scripts/setup.sh bench
	. $(ENV) && bash scripts/bench.sh
	TSDB_BENCH_SERIES=$${TSDB_BENCH_SERIES:-$$([ "$${BENCH_QUICK:-0}" = 1 ] && echo 10000 || echo 100000)} $(CARGO) bench -p receiver --bench tsdb

# TLS against plaintext on the same load (RF=1 and RF=3), release build.
bench-tls:
	bash scripts/bench-tls.sh

# The container images (receiver and operator) as an OCI layout in $(CARGO_TARGET_DIR)/images,
# built without a container engine (umoci); the Dockerfile builds the same with one.
images:
	bash scripts/setup.sh images
	$(CARGO) build --release -p receiver -p operator --bins
	bash scripts/build-images.sh $(CARGO_TARGET_DIR)/release $(CARGO_TARGET_DIR)/images

# Fuzzes every decoder and config parser on the stable toolchain (FUZZ_ITERATIONS per target).
fuzz:
	$(CARGO) run --release -q -p fuzz --bin thanos-fuzz -- --iterations $${FUZZ_ITERATIONS:-1000000}

# Regenerates the committed CRD manifests from the Rust types (top-level and the chart's copy).
crds:
	$(CARGO) run -q -p operator --bin crdgen > $(CRD)
	cp $(CRD) $(CHART_CRD)

# Fails when crds/ or the chart's crds/ differ from what the types generate.
crds-check:
	$(CARGO) run -q -p operator --bin crdgen | diff -u $(CRD) - || { echo "crds/ is stale: run make crds" >&2; exit 1; }
	diff -u $(CRD) $(CHART_CRD) || { echo "the chart's crds/ is stale: run make crds" >&2; exit 1; }
