#!/usr/bin/env bash
# The main job on loopback: a receiver ingesting remote write from a real Prometheus (agent mode),
# for DEMO_SECONDS, then a summary, a restart that replays the WAL, and a clean shutdown.
set -euo pipefail
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/thanos-receiver/target}/release"
DEMO_SECONDS="${DEMO_SECONDS:-30}"
DIR="$(pwd)/.demo"
rm -rf "$DIR" && mkdir -p "$DIR/prom"
RW=19291 HTTP=10902 GRPC=10901 PROM=19090

command -v prometheus >/dev/null || { echo "install Debian's prometheus package first" >&2; exit 1; }
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
PIDS=(); trap cleanup EXIT

start_receiver() {
  "$BIN/thanos-receiver" receive \
    --remote-write.address=127.0.0.1:$RW --http-address=127.0.0.1:$HTTP --grpc-address=127.0.0.1:$GRPC \
    --tsdb.path="$DIR/data" --label='replica="demo-0"' 2>>"$DIR/receiver.log" &
  RECV_PID=$!; PIDS+=("$RECV_PID")
  until curl -sf "http://127.0.0.1:$HTTP/-/ready" >/dev/null; do sleep 0.1; done
}
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 ~ "^"m"({|$)" {s+=$2} END {printf "%d", s}'; }

start_receiver
cat > "$DIR/prom/prometheus.yml" <<YAML
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: demo
    static_configs: [{targets: ['127.0.0.1:$PROM', '127.0.0.1:$HTTP']}]
remote_write:
  - url: http://127.0.0.1:$RW/api/v1/receive
    queue_config: {batch_send_deadline: 500ms}
YAML
prometheus --enable-feature=agent --config.file="$DIR/prom/prometheus.yml" \
  --storage.agent.path="$DIR/prom/agent" --web.listen-address=127.0.0.1:$PROM 2>"$DIR/prom/prometheus.log" &
PIDS+=("$!")
echo "receiver on :$RW, Prometheus agent on :$PROM remote-writing to it for ${DEMO_SECONDS}s ..."
sleep "$DEMO_SECONDS"

echo
echo "== summary after ${DEMO_SECONDS}s =="
echo "Prometheus samples sent:        $(metric $PROM prometheus_remote_storage_samples_total)"
echo "Prometheus samples failed:      $(metric $PROM prometheus_remote_storage_samples_failed_total)"
echo "receiver requests answered 200: $(curl -s http://127.0.0.1:$HTTP/metrics | awk '/^http_requests_total\{.*code="200"/ {s+=$2} END {printf "%d", s}')"
echo "receiver samples appended:      $(metric $HTTP prometheus_tsdb_head_samples_appended_total)"
echo "receiver head series:           $(metric $HTTP prometheus_tsdb_head_series)"
echo "receiver WAL bytes:             $(metric $HTTP prometheus_tsdb_wal_storage_size_bytes)"

kill -TERM "$RECV_PID"; wait "$RECV_PID" || true
start_receiver
echo "restart: $(grep 'WAL replayed' "$DIR/receiver.log" | tail -1)"
kill -TERM "$RECV_PID"; wait "$RECV_PID" && echo "clean shutdown (exit 0); data in $DIR/data"
