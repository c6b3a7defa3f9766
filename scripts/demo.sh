#!/usr/bin/env bash
# The main job on loopback: three receivers (RF=3, ketama ring) ingesting remote write from a real
# Prometheus (agent mode) for DEMO_SECONDS, a query through the read path, then shutdown: each
# receiver cuts its head into blocks and uploads them to a filesystem bucket in .demo/bucket, which
# stays there to look at (`make demo` runs scripts/setup.sh demo and the build first).
set -euo pipefail
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/thanos-receiver/target}/debug"
DEMO_SECONDS="${DEMO_SECONDS:-30}"
DIR="$(pwd)/.demo"
rm -rf "$DIR" && mkdir -p "$DIR/prom" "$DIR/bucket"
PROM=19090

command -v prometheus >/dev/null || { echo "Debian's prometheus package is missing: run scripts/setup.sh demo" >&2; exit 1; }
[ -x "$BIN/thanos-receiver" ] || { echo "$BIN/thanos-receiver is missing: run make demo" >&2; exit 1; }
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$DIR/bucket" > "$DIR/objstore.yml"

# Receiver i listens on 1929i (remote write and reads), 1090i (gRPC), 1091i (HTTP ops).
echo '[{"hashring":"default","algorithm":"ketama","endpoints":["127.0.0.1:10900","127.0.0.1:10901","127.0.0.1:10902"]}]' > "$DIR/hashrings.json"
RECV=()
for i in 0 1 2; do
  "$BIN/thanos-receiver" receive \
    --remote-write.address=127.0.0.1:1929$i --grpc-address=127.0.0.1:1090$i --http-address=127.0.0.1:1091$i \
    --tsdb.path="$DIR/r$i" --label="replica=\"demo-$i\"" --label='cluster="demo"' \
    --receive.hashrings-file="$DIR/hashrings.json" --receive.replication-factor=3 \
    --receive.local-endpoint=127.0.0.1:1090$i --objstore.config-file="$DIR/objstore.yml" 2>"$DIR/r$i.log" &
  RECV+=("$!"); PIDS+=("$!")
done
for i in 0 1 2; do until curl -sf "http://127.0.0.1:1091$i/-/ready" >/dev/null; do sleep 0.1; done; done

cat > "$DIR/prom/prometheus.yml" <<YAML
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: demo
    static_configs: [{targets: ['127.0.0.1:$PROM', '127.0.0.1:10910', '127.0.0.1:10911', '127.0.0.1:10912']}]
remote_write:
  - url: http://127.0.0.1:19290/api/v1/receive
    queue_config: {batch_send_deadline: 500ms}
YAML
prometheus --enable-feature=agent --config.file="$DIR/prom/prometheus.yml" \
  --storage.agent.path="$DIR/prom/agent" --web.listen-address=127.0.0.1:$PROM 2>"$DIR/prom/prometheus.log" &
PROM_PID=$!; PIDS+=("$PROM_PID")
echo "3 receivers (RF=3) on :19290-19292, Prometheus agent remote-writing to :19290 for ${DEMO_SECONDS}s ..."
sleep "$DEMO_SECONDS"

metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" -v f="${3:-}" '$1 ~ "^"m"({|$)" && index($1, f) {s+=$2} END {printf "%d", s}'; }
echo
echo "== after ${DEMO_SECONDS}s =="
echo "Prometheus samples sent / failed:    $(metric $PROM prometheus_remote_storage_samples_total) / $(metric $PROM prometheus_remote_storage_samples_failed_total)"
echo "receiver-0 requests answered 200:    $(metric 10910 http_requests_total 'code="200"')"
echo "receiver-0 replications ok / failed: $(metric 10910 thanos_receive_replications_total success) / $(metric 10910 thanos_receive_replications_total error)"
for i in 0 1 2; do
  echo "receiver-$i head series / samples:   $(metric 1091$i prometheus_tsdb_head_series) / $(metric 1091$i prometheus_tsdb_head_samples_appended_total)"
done

echo
echo "== reading it back (each receiver holds a full copy at RF=3) =="
QUERY='http://127.0.0.1:19291/api/v1/series?match[]=up'
echo "\$ curl -s '$QUERY'"
curl -s -g "$QUERY" | head -c 600; echo

# Prometheus goes first, so it is not left retrying against stopped receivers until its deadline.
kill -TERM "$PROM_PID"; wait "$PROM_PID" 2>/dev/null || true
echo
echo "== shutdown: every receiver cuts its head into blocks and uploads them to $DIR/bucket =="
kill -TERM "${RECV[@]}"; wait "${RECV[@]}" && echo "all receivers exited 0"
for i in 0 1 2; do
  grep -h 'block uploaded' "$DIR/r$i.log" | grep -o 'block=[0-9A-Z]*' | sed "s/^/receiver-$i uploaded /"
done
echo
echo "== where the data is =="
echo "bucket:  $DIR/bucket ($(find "$DIR/bucket" -name meta.json | wc -l) blocks, $(find "$DIR/bucket" -type f | wc -l) objects)"
echo "local:   $DIR/r{0,1,2}/<tenant>/ (WAL and blocks), logs in $DIR/*.log"
block="$(find "$DIR/bucket" -name meta.json -printf '%h\n' | head -1)"
if [ -n "$block" ] && command -v promtool >/dev/null; then
  echo "look at a block:  promtool tsdb analyze $(dirname "$block") $(basename "$block")"
  promtool tsdb analyze "$(dirname "$block")" "$(basename "$block")" 2>/dev/null | head -8
fi
echo "query the blocks: thanos store --objstore.config-file=$DIR/objstore.yml, or Prometheus remote read (README)"
