#!/usr/bin/env bash
# The main job on loopback: three receivers (RF=3, ketama ring) ingesting remote write from a real
# Prometheus (agent mode) for DEMO_SECONDS, then a summary; on shutdown each receiver cuts its head
# into blocks and uploads them to a local S3 bucket (moto; a filesystem bucket if moto is missing).
set -euo pipefail
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/thanos-receiver/target}/release"
DEMO_SECONDS="${DEMO_SECONDS:-30}"
DIR="$(pwd)/.demo"
rm -rf "$DIR" && mkdir -p "$DIR/prom"
PROM=19090 S3=19000

command -v prometheus >/dev/null || { echo "install Debian's prometheus package first" >&2; exit 1; }
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

if command -v moto_server >/dev/null; then
  moto_server -H 127.0.0.1 -p $S3 >"$DIR/s3.log" 2>&1 & PIDS+=("$!")
  until curl -sf -X PUT "http://127.0.0.1:$S3/thanos" >/dev/null; do sleep 0.2; done
  printf 'type: S3\nconfig:\n  bucket: thanos\n  endpoint: 127.0.0.1:%s\n  insecure: true\n  access_key: demo\n  secret_key: demo\n' $S3 > "$DIR/objstore.yml"
  BUCKET="s3://127.0.0.1:$S3/thanos (moto)"
else
  printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$DIR/bucket" > "$DIR/objstore.yml"
  BUCKET="$DIR/bucket"
fi

# Receiver i listens on 1929i (remote write), 1090i (gRPC), 1091i (HTTP).
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
PIDS+=("$!")
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
echo "== shutdown: every receiver cuts its head into a block and uploads it to $BUCKET =="
kill -TERM "${RECV[@]}"; wait "${RECV[@]}" && echo "all receivers exited 0"
for i in 0 1 2; do grep -h 'block uploaded' "$DIR/r$i.log" | sed "s/^/receiver-$i: /" | cut -c1-160; done
if [ "$BUCKET" = "$DIR/bucket" ]; then
  echo "bucket objects: $(find "$DIR/bucket" -type f | wc -l)"
else
  echo "bucket objects: $(curl -s "http://127.0.0.1:$S3/thanos?list-type=2" | grep -o '<Key>[^<]*</Key>' | wc -l)"
fi
echo "data and logs in $DIR"
