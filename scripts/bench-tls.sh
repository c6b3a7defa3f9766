#!/usr/bin/env bash
# What TLS costs: the same load against plaintext and TLS receivers, RF=1 (remote write over
# mTLS) and RF=3 (remote write over mTLS, forwards and the gRPC port over mTLS too). Reports the
# write p99 (per client request, retries included) and the receivers' CPU seconds per million
# samples. Release build; needs openssl, python3, curl.
#   BENCH_TLS_SERIES (100000), BENCH_TLS_RATE_RF1 (300000), BENCH_TLS_RATE_RF3 (100000),
#   BENCH_TLS_SECONDS (60)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/thanos-receiver/target}"
for c in openssl python3 curl; do
  command -v "$c" >/dev/null || { echo "bench-tls needs $c" >&2; exit 1; }
done
SERIES="${BENCH_TLS_SERIES:-100000}"
RATE1="${BENCH_TLS_RATE_RF1:-300000}"
RATE3="${BENCH_TLS_RATE_RF3:-100000}"
SECONDS_RUN="${BENCH_TLS_SECONDS:-60}"
SPR=10000

WORK="$(mktemp -d /tmp/thanos-bench-tls.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[bench-tls $(date +%T)] $*" >&2; }

cargo build --release -p receiver -p loadgen --bins
mkdir -p "$WORK/bin"
cp -p "$CARGO_TARGET_DIR/release/thanos-receiver" "$CARGO_TARGET_DIR/release/thanos-loadgen" "$WORK/bin/"
BIN="$WORK/bin"

# A CA, one certificate for server and client use (SAN 127.0.0.1), a client identity.
C="$WORK/certs"; mkdir -p "$C"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$C/ca-key.pem" -out "$C/ca.pem" 2>/dev/null
leaf() { # $1 = name, $2 = extensions
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$C/$1-key.pem" -out "$C/$1.csr" 2>/dev/null
  printf '%s\n' "$2" >"$C/$1.ext"
  openssl x509 -req -in "$C/$1.csr" -CA "$C/ca.pem" -CAkey "$C/ca-key.pem" -CAcreateserial \
    -days 2 -extfile "$C/$1.ext" -out "$C/$1.pem" 2>/dev/null
}
leaf peer "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth,clientAuth"
leaf client "extendedKeyUsage=clientAuth"
cat "$C/client.pem" "$C/client-key.pem" >"$C/client-identity.pem"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
cpu_ticks() { local t=0 p; for p in "${SERVER_PIDS[@]}"; do t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'))); done; echo "$t"; }

start() { # $1 = receivers, $2 = plain | tls
  local n=$1 mode=$2 i eps=() rw=() http=() grpc=()
  SERVER_PIDS=() URLS=()
  local dir="$WORK/run-$n-$mode"; mkdir -p "$dir"
  for ((i = 0; i < n; i++)); do
    rw+=("$(free_port)") http+=("$(free_port)") grpc+=("$(free_port)")
    eps+=("\"127.0.0.1:${grpc[$i]}\"")
  done
  echo "[{\"hashring\":\"default\",\"endpoints\":[$(IFS=,; echo "${eps[*]}")],\"tenants\":[]}]" >"$dir/ring.json"
  local scheme=http tls=()
  if [ "$mode" = tls ]; then
    scheme=https
    tls=(--remote-write.server-tls-cert="$C/peer.pem" --remote-write.server-tls-key="$C/peer-key.pem"
      --remote-write.server-tls-client-ca="$C/ca.pem"
      --grpc-server-tls-cert="$C/peer.pem" --grpc-server-tls-key="$C/peer-key.pem"
      --grpc-server-tls-client-ca="$C/ca.pem" --remote-write.client-tls-secure
      --remote-write.client-tls-cert="$C/peer.pem" --remote-write.client-tls-key="$C/peer-key.pem"
      --remote-write.client-tls-ca="$C/ca.pem")
  fi
  for ((i = 0; i < n; i++)); do
    local ring=()
    [ "$n" -gt 1 ] && ring=(--receive.hashrings-file="$dir/ring.json" --receive.replication-factor=3
      --receive.local-endpoint="127.0.0.1:${grpc[$i]}")
    "$BIN/thanos-receiver" receive --remote-write.address="127.0.0.1:${rw[$i]}" \
      --http-address="127.0.0.1:${http[$i]}" --grpc-address="127.0.0.1:${grpc[$i]}" \
      --tsdb.path="$dir/data-$i" --label="replica=\"bench-$i\"" "${ring[@]}" "${tls[@]}" \
      2>>"$dir/receiver-$i.log" &
    PIDS+=("$!") SERVER_PIDS+=("$!") URLS+=(--url "$scheme://127.0.0.1:${rw[$i]}/api/v1/receive")
  done
  for ((i = 0; i < n; i++)); do
    local deadline=$((SECONDS + 60))
    until curl -sf "http://127.0.0.1:${http[$i]}/-/ready" >/dev/null; do
      [ "$SECONDS" -lt "$deadline" ] || { echo "receiver not ready; log:" >&2; cat "$dir/receiver-$i.log" >&2; exit 1; }
      sleep 0.1
    done
  done
  LOADGEN=("$BIN/thanos-loadgen" "${URLS[@]}" --series "$SERIES" --samples-per-request "$SPR"
    --concurrency $((SERIES / SPR)) --json)
  [ "$mode" = tls ] && LOADGEN+=(--tls-ca "$C/ca.pem" --tls-identity "$C/client-identity.pem")
  DIR="$dir"
}

stop() {
  local p
  for p in "${SERVER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${SERVER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

RESULTS="$WORK/results.tsv"
measure() { # $1 = receivers, $2 = plain | tls, $3 = rate
  start "$1" "$2"
  log "RF=$1 $2: loading $SERIES series"
  "${LOADGEN[@]}" --steps 2 --duration 120s >"$DIR/load.json" 2>"$DIR/load.err" || { cat "$DIR/load.err" >&2; exit 1; }
  local next; next=$(jget "$DIR/load.json" next_start_ms)
  local s0; s0=$(cpu_ticks)
  "${LOADGEN[@]}" --start-ms "$next" --rate "$3" --duration "${SECONDS_RUN}s" >"$DIR/run.json" 2>"$DIR/run.err" \
    || { cat "$DIR/run.err" >&2; exit 1; }
  local ticks=$(( $(cpu_ticks) - s0 ))
  local ok p50 p99 sps statuses
  ok=$(jget "$DIR/run.json" samples_ok) p50=$(jget "$DIR/run.json" latency_ms_p50)
  p99=$(jget "$DIR/run.json" latency_ms_p99) sps=$(jget "$DIR/run.json" samples_per_second)
  statuses=$(jget "$DIR/run.json" statuses)
  python3 -c "print('\t'.join(['RF=$1', '$2', '%.0f' % $sps, '%.1f' % $p50, '%.1f' % $p99, '%.3f' % ($ticks / $(getconf CLK_TCK) / max($ok, 1) * 1e6), '''$statuses''']))" >>"$RESULTS"
  log "RF=$1 $2: $sps samples/s, p99 $p99 ms, statuses $statuses"
  stop
}

measure 1 plain "$RATE1"
measure 1 tls "$RATE1"
measure 3 plain "$RATE3"
measure 3 tls "$RATE3"

python3 - "$RESULTS" "$(git rev-parse --short HEAD)" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
print(f"commit {sys.argv[2]}; one run each, same offered rate per pair\n")
print("| setup | transport | samples/s | write p50 ms | write p99 ms | receiver CPU-s per M samples | statuses |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
by = {(r[0], r[1]): r for r in rows}
for rf in ("RF=1", "RF=3"):
    p, t = by[(rf, "plain")], by[(rf, "tls")]
    print(f"\n{rf}: TLS/plain p50 {float(t[3]) / float(p[3]):.2f}x, p99 {float(t[4]) / float(p[4]):.2f}x, CPU per sample {float(t[5]) / float(p[5]):.2f}x")
PY
