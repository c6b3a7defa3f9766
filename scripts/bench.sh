#!/usr/bin/env bash
# What `make bench` runs: on loopback, with the same pre-encoded remote-write load from
# thanos-loadgen, (a) one receiver (RF=1), (b) three receivers with RF=3 sharing a hashring file,
# (c) VictoriaMetrics single-node, the peer to beat; then the decode-only criterion benchmark.
# Reads (thanos-readgen) run against (a) and (c) on the same data: one series, one metric name,
# and the write latency while broad reads run.
# Writes the comparison between the markers of BENCHMARKS.md (text outside them is kept).
#
#   BENCH_QUICK=1    smaller series counts and shorter runs: a smoke test of a few minutes
#   BENCH_PROFILE=0  skip the perf profile of the RF=1 receiver (taken when `perf` works)
#   BENCH_KEEP=1     keep the work directory (logs, loadgen JSON, perf data)
#   BENCH_GRPC_COMPRESSION=none  forwards uncompressed (default snappy, the receiver's and Thanos' default)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/thanos-receiver/target}"
BIN="$CARGO_TARGET_DIR/release"
QUICK="${BENCH_QUICK:-0}"
for c in victoria-metrics python3 curl moto_server; do
  command -v "$c" >/dev/null || { echo "bench needs $c (make bench installs it: scripts/setup.sh bench)" >&2; exit 1; }
done

if [ "$QUICK" = 1 ]; then
  SMALL=20000 BIG=100000 RUN=8s PROFILE_SECONDS=5 DISK_STEPS=40 SELECTIVE_RUNS=50 BROAD_RUNS=5
  RESTART_STEPS=16 UPLOAD_WINDOW=8s
else
  SMALL=100000 BIG=1000000 RUN=30s PROFILE_SECONDS=15 DISK_STEPS=480 SELECTIVE_RUNS=300 BROAD_RUNS=15
  RESTART_STEPS=480 UPLOAD_WINDOW=20s
fi
SPR=10000          # samples per request: the field's max_samples_per_send
LABELS=12          # labels per series, __name__ included
INTERVAL_MS=15000  # sample interval per series
LOAD_LIMIT=240s    # bound on each series-loading run

WORK="$(mktemp -d /tmp/thanos-bench.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${BENCH_KEEP:-0}" = 1 ] && echo "work directory kept: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[bench $(date +%T)] $*" >&2; }

log "building release binaries and the decode benchmark"
cargo build --release -p receiver -p loadgen --bins
cargo bench -p receiver --bench decode --bench histograms --no-run
# Run copies, so that a rebuild in the shared target directory cannot swap binaries mid-run.
mkdir -p "$WORK/bin"
cp -p "$BIN/thanos-receiver" "$BIN/thanos-loadgen" "$BIN/thanos-readgen" "$WORK/bin/"
BIN="$WORK/bin"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# Shards so that every request carries SPR samples, as many as the field's 100 at most.
shards() { local c=$(($1 / SPR)); [ "$c" -lt 1 ] && c=1; [ "$c" -gt 100 ] && c=100; echo "$c"; }
# utime + stime (clock ticks) of process $1, then of the server processes: fields 14 and 15 of
# /proc/<pid>/stat.
proc_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
cpu_ticks() { local t=0 p; for p in "${SERVER_PIDS[@]}"; do t=$((t + $(proc_ticks "$p"))); done; echo "$t"; }
status_kb() { local t=0 p; for p in "${SERVER_PIDS[@]}"; do t=$((t + $(awk -v k="$1:" '$1 == k {print $2}' "/proc/$p/status"))); done; echo "$t"; }
wait_http() { # $1 = URL, $2 = seconds to wait at most (default 120)
  local limit=${2:-120}
  local deadline=$((SECONDS + limit))
  until curl -sf "$1" >/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "$1 not ready in ${limit}s" >&2; exit 1; }
    sleep 0.1
  done
}

# Extra flags for the receivers start_receivers starts (the upload run's bucket).
RECEIVER_ARGS=()

start_receivers() { # $1 = receivers, $2 = replication factor
  local n=$1 rf=$2 i eps=() rw=() http=() grpc=()
  SERVER_PIDS=() URLS=() DATA_DIRS=()
  for ((i = 0; i < n; i++)); do
    rw+=("$(free_port)") http+=("$(free_port)") grpc+=("$(free_port)")
    eps+=("\"127.0.0.1:${grpc[$i]}\"")
  done
  local ring="$WORK/$SYS/hashrings.json"
  echo "[{\"hashring\":\"default\",\"endpoints\":[$(IFS=,; echo "${eps[*]}")],\"tenants\":[]}]" >"$ring"
  for ((i = 0; i < n; i++)); do
    local extra=()
    if [ "$n" -gt 1 ]; then
      extra=(--receive.hashrings-file="$ring" --receive.replication-factor="$rf" --receive.local-endpoint="127.0.0.1:${grpc[$i]}"
        --receive.grpc-compression="${BENCH_GRPC_COMPRESSION:-snappy}")
    fi
    "$BIN/thanos-receiver" receive --remote-write.address="127.0.0.1:${rw[$i]}" \
      --http-address="127.0.0.1:${http[$i]}" --grpc-address="127.0.0.1:${grpc[$i]}" \
      --tsdb.path="$WORK/$SYS/data-$i" --label="replica=\"bench-$i\"" "${extra[@]}" "${RECEIVER_ARGS[@]}" \
      2>>"$WORK/$SYS/receiver-$i.log" &
    PIDS+=("$!") SERVER_PIDS+=("$!") URLS+=(--url "http://127.0.0.1:${rw[$i]}/api/v1/receive")
    DATA_DIRS+=("$WORK/$SYS/data-$i")
  done
  READ=(--system receiver --url "http://127.0.0.1:${rw[0]}")
  READY_URLS=()
  for ((i = 0; i < n; i++)); do READY_URLS+=("http://127.0.0.1:${http[$i]}/-/ready"); done
  for u in "${READY_URLS[@]}"; do wait_http "$u"; done
}

start_vm() {
  VM_PORT="$(free_port)"
  victoria-metrics -storageDataPath="$WORK/$SYS/data" -httpListenAddr="127.0.0.1:$VM_PORT" \
    -loggerLevel=WARN 2>>"$WORK/$SYS/vm.log" &
  PIDS+=("$!") SERVER_PIDS=("$!") URLS=(--url "http://127.0.0.1:$VM_PORT/api/v1/write")
  # Data and index only: the cache/ directory VictoriaMetrics persists at shutdown is not data.
  DATA_DIRS=("$WORK/$SYS/data/data" "$WORK/$SYS/data/indexdb")
  READ=(--system vm --url "http://127.0.0.1:$VM_PORT")
  wait_http "http://127.0.0.1:$VM_PORT/health"
}

# Graceful stop: receivers cut their heads into blocks on SIGTERM, VictoriaMetrics flushes its
# in-memory parts (asked explicitly first).
stop_servers() {
  if [ "$KIND" = vm ]; then curl -sf "http://127.0.0.1:$VM_PORT/internal/force_flush" >/dev/null; fi
  local p
  for p in "${SERVER_PIDS[@]}"; do kill -TERM "$p"; done
  for p in "${SERVER_PIDS[@]}"; do
    local deadline=$((SECONDS + 300))
    while kill -0 "$p" 2>/dev/null; do
      [ "$SECONDS" -lt "$deadline" ] || { echo "server $p did not stop in 300s" >&2; exit 1; }
      sleep 0.2
    done
    wait "$p" || true
  done
}

# Busy ticks of the whole machine (user nice system irq softirq steal) from /proc/stat.
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

run_loadgen() { # $1 = phase name, then loadgen flags
  local phase=$1; shift
  log "$SYS $phase: load $(load1)"
  echo "$(load1)" >"$WORK/$SYS/$phase.load"
  local b0 s0 t0
  b0=$(busy_ticks) s0=$(cpu_ticks) t0=$(date +%s.%N)
  if ! "$BIN/thanos-loadgen" "${URLS[@]}" --labels-per-series "$LABELS" --samples-per-request "$SPR" \
    --interval "${INTERVAL_MS}ms" --start-ms "$NEXT_START" --json "$@" \
    >"$WORK/$SYS/$phase.json" 2>"$WORK/$SYS/$phase.err"; then
    echo "loadgen $SYS/$phase failed:" >&2; cat "$WORK/$SYS/$phase.err" "$WORK/$SYS/$phase.json" >&2; exit 1
  fi
  NEXT_START=$(jget "$WORK/$SYS/$phase.json" next_start_ms)
  # Share of the machine's CPU that neither the servers nor the load generator used: other jobs.
  python3 -c "print(max(0, ($(busy_ticks) - $b0 - ($(cpu_ticks) - $s0)) / $(getconf CLK_TCK) \
    - $(jget "$WORK/$SYS/$phase.json" loadgen_total_cpu_seconds)) / ($(nproc) * ($(date +%s.%N) - $t0)))" \
    >"$WORK/$SYS/$phase.foreign"
  log "$SYS $phase: $(jget "$WORK/$SYS/$phase.json" samples_per_second) samples/s, p99 $(jget "$WORK/$SYS/$phase.json" latency_ms_p99) ms, statuses $(jget "$WORK/$SYS/$phase.json" statuses)"
}

run_readgen() { # $1 = phase name, then readgen flags
  local phase=$1; shift
  # The client decodes at the lowest priority: on a shared 2-CPU machine its own work would
  # otherwise count against the server's write latency.
  if ! nice -n 19 "$BIN/thanos-readgen" "${READ[@]}" --series "$BIG" --labels-per-series "$LABELS" --json "$@" \
    >"$WORK/$SYS/$phase.json" 2>"$WORK/$SYS/$phase.err"; then
    echo "readgen $SYS/$phase failed:" >&2; cat "$WORK/$SYS/$phase.err" >&2; exit 1
  fi
  log "$SYS $phase: p50 $(jget "$WORK/$SYS/$phase.json" latency_ms_p50) ms, p99 $(jget "$WORK/$SYS/$phase.json" latency_ms_p99) ms, $(jget "$WORK/$SYS/$phase.json" series_per_query) series, $(jget "$WORK/$SYS/$phase.json" failed) failed"
}

# Read latency on the data just written, then writes at 70 % while broad reads run back to back.
read_system() { # $1 = write rate
  run_readgen read-selective --query selective --runs "$SELECTIVE_RUNS"
  run_readgen read-broad --query broad --runs "$BROAD_RUNS"
  run_readgen read-during-writes --query broad --duration "$RUN" &
  local reader=$!
  run_loadgen p70-reads --series "$BIG" --concurrency "$(shards "$BIG")" --duration "$RUN" --rate "$1"
  wait "$reader"
}

start_system() { # $1 = rf1 | rf3 | vm, $2 = work subdirectory
  KIND=$1 SYS=$2
  mkdir -p "$WORK/$SYS"
  case "$KIND" in
    rf1) start_receivers 1 1 ;;
    rf3) start_receivers 3 3 ;;
    vm) start_vm ;;
  esac
}

# Throughput, CPU, memory and latency with BIG active series.
bench_system() { # $1 = rf1 | rf3 | vm
  start_system "$1" "$1"
  NEXT_START=$(($(date +%s) * 1000 / INTERVAL_MS * INTERVAL_MS))
  local c0 c1 c2 c3 rss_small rss_big
  # Series are slots: the SMALL set is the first SMALL series of the BIG one. Two steps each:
  # the first creates the series, the second appends to them.
  c0=$(cpu_ticks)
  run_loadgen load-small --series "$SMALL" --concurrency "$(shards "$SMALL")" --steps 2 --duration "$LOAD_LIMIT"
  sleep 2; rss_small=$(status_kb VmRSS)
  run_loadgen load-big --series "$BIG" --concurrency "$(shards "$BIG")" --steps 2 --duration "$LOAD_LIMIT"
  c1=$(cpu_ticks)
  sleep 2; rss_big=$(status_kb VmRSS)
  # Saturation: every shard keeps one SPR-sample request in flight.
  c2=$(cpu_ticks)
  run_loadgen max --series "$BIG" --concurrency "$(shards "$BIG")" --duration "$RUN"
  c3=$(cpu_ticks)
  local rate
  rate=$(python3 -c "print(round(0.7 * $(jget "$WORK/$SYS/max.json" samples_per_second)))")
  run_loadgen p70 --series "$BIG" --concurrency "$(shards "$BIG")" --duration "$RUN" --rate "$rate"
  local rss_end hwm
  rss_end=$(status_kb VmRSS) hwm=$(status_kb VmHWM)
  if [ "$KIND" = rf1 ] && [ "${BENCH_PROFILE:-1}" = 1 ] && perf record -o /dev/null -e cpu-clock -- true 2>/dev/null; then
    log "rf1: perf profile for $PROFILE_SECONDS s"
    perf record -F 499 -e cpu-clock -g -p "${SERVER_PIDS[0]}" -o "$WORK/perf.data" -- sleep "$PROFILE_SECONDS" 2>/dev/null &
    local perf_pid=$!
    PIDS+=("$perf_pid")
    run_loadgen profile --series "$BIG" --concurrency "$(shards "$BIG")" --duration "${PROFILE_SECONDS}s"
    wait "$perf_pid" || true
    perf report -i "$WORK/perf.data" --no-children --stdio --percent-limit 0.7 -g none \
      --sort symbol 2>/dev/null | grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]-]+$//' \
      | head -40 >"$WORK/profile.txt" || true
    perf report -i "$WORK/perf.data" --no-children --stdio -g none --sort dso 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -8 >"$WORK/profile-dso.txt" || true
  fi
  if [ "$KIND" != rf3 ]; then read_system "$rate"; fi
  stop_servers
  cat >"$WORK/$SYS/server.json" <<JSON
{"servers": ${#SERVER_PIDS[@]}, "rss_small_kb": $rss_small, "rss_big_kb": $rss_big, "rss_end_kb": $rss_end,
 "hwm_kb": $hwm, "cpu_load_ticks": $((c1 - c0)), "cpu_max_ticks": $((c3 - c2)), "clk_tck": $(getconf CLK_TCK)}
JSON
}

# Fills SERIES × STEPS samples from a 2 h boundary in two runs, RSS after each: the first stops
# with open chunks half full (7/8 of 480 samples), the second when the last chunk is complete.
fill_head() { # $1 = series, $2 = steps, $3 = bound on each run
  local mid=$(($2 * 7 / 8))
  NEXT_START=$(($(date +%s) * 1000 / 7200000 * 7200000))
  run_loadgen fill-mid --series "$1" --concurrency "$(shards "$1")" --steps "$mid" --duration "$3"
  sleep 2; RSS_MID=$(status_kb VmRSS)
  run_loadgen fill --series "$1" --concurrency "$(shards "$1")" --steps $(($2 - mid)) --duration "$3"
  sleep 2; RSS_FULL=$(status_kb VmRSS)
}

# Where a receiver's block bytes go: index and chunk files of every block under the given data
# directories, and the chunk count from meta.json (a JSON fragment for server.json).
block_bytes() {
  python3 - "$@" <<'PY'
import glob, json, os, sys
index = chunk_files = chunks = 0
for d in sys.argv[1:]:
    for meta in glob.glob(f"{d}/**/meta.json", recursive=True):
        block = os.path.dirname(meta)
        if os.path.exists(f"{block}/index"):
            index += os.path.getsize(f"{block}/index")
            chunk_files += sum(os.path.getsize(p) for p in glob.glob(f"{block}/chunks/*"))
            chunks += json.load(open(meta))["stats"].get("numChunks", 0)
print(f'"index_bytes": {index}, "chunk_bytes": {chunk_files}, "chunks": {chunks}')
PY
}

# A full head and bytes per sample on disk, at equal samples per series for every system: fresh
# servers, SMALL series × DISK_STEPS samples from a 2 h boundary (480 at 15 s fill exactly one
# receiver block), RSS, graceful stop, du.
disk_system() { # $1 = rf1 | rf3 | vm
  start_system "$1" "$1-disk"
  fill_head "$SMALL" "$DISK_STEPS" 400s
  local t0=$SECONDS
  stop_servers
  cat >"$WORK/$SYS/server.json" <<JSON
{"servers": ${#SERVER_PIDS[@]}, "rss_mid_kb": $RSS_MID, "rss_kb": $RSS_FULL, "stop_seconds": $((SECONDS - t0)),
 "disk_bytes": $(du -sb "${DATA_DIRS[@]}" | awk '{s += $1} END {print s}'), $(block_bytes "${DATA_DIRS[@]}")}
JSON
}

# utime + stime (clock ticks) of the threads of process $1 named $2.
thread_ticks() {
  local t=0 f
  for f in /proc/"$1"/task/*/stat; do
    [ "$(cat "${f%stat}comm" 2>/dev/null)" = "$2" ] || continue
    t=$((t + $(sed 's/.*) //' "$f" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

# Uploads off the write path: the RF=1 receiver restarts on the disk run's data (one 2 h block
# not yet shipped) with a bucket on a local S3 server (moto) that does not exist yet, so uploads
# fail at once. Writes at half the RF=1 maximum: once so, once right after the bucket is created,
# while the shipper (syncing every second) uploads the block. Half, not the 70 % of the latency
# runs: the S3 server shares the two CPUs here, and at 70 % the receiver alone keeps ~1.65 of
# them busy, so any other process queues requests and the p99 of either window swings 2-3 x
# between runs with or without an upload (by hand: 60 -> 48 ms, then 19 -> 35 ms).
upload_system() {
  KIND=rf1 SYS=rf1-upload
  mkdir -p "$WORK/$SYS"
  mv "$WORK/rf1-disk/data-0" "$WORK/$SYS/data-0"
  local port
  port=$(free_port)
  # The S3 server stands in for a remote service: at the lowest priority its own CPU (moto is
  # Python) takes only what the receiver leaves, as a bucket on other machines would.
  nice -n 19 moto_server -H 127.0.0.1 -p "$port" >"$WORK/$SYS/moto.log" 2>&1 &
  PIDS+=("$!")
  local moto=$!
  wait_http "http://127.0.0.1:$port/"
  printf 'type: S3\nconfig:\n  bucket: bench\n  endpoint: 127.0.0.1:%s\n  insecure: true\n  access_key: bench\n  secret_key: bench\n' \
    "$port" >"$WORK/$SYS/objstore.yml"
  RECEIVER_ARGS=(--objstore.config-file="$WORK/$SYS/objstore.yml" --shipper.sync-interval=1s)
  start_receivers 1 1
  RECEIVER_ARGS=()
  NEXT_START=$(jget "$WORK/rf1-disk/fill.json" next_start_ms)
  local rate
  rate=$(python3 -c "print(round(0.5 * $(jget "$WORK/rf1/max.json" samples_per_second)))")
  run_loadgen warm --series "$SMALL" --concurrency "$(shards "$SMALL")" --steps 2 --duration "$LOAD_LIMIT"
  run_loadgen no-upload --series "$SMALL" --concurrency "$(shards "$SMALL")" --duration "$UPLOAD_WINDOW" --rate "$rate"
  curl -sf -X PUT "http://127.0.0.1:$port/bench" >/dev/null
  local r0 u0 m0
  r0=$(proc_ticks "${SERVER_PIDS[0]}") u0=$(thread_ticks "${SERVER_PIDS[0]}" upload) m0=$(proc_ticks "$moto")
  run_loadgen upload --series "$SMALL" --concurrency "$(shards "$SMALL")" --duration "$UPLOAD_WINDOW" --rate "$rate"
  local hz
  hz=$(getconf CLK_TCK)
  cat >"$WORK/$SYS/cpu.json" <<JSON
{"receiver_seconds": $(python3 -c "print(($(proc_ticks "${SERVER_PIDS[0]}") - $r0) / $hz)"),
 "upload_thread_seconds": $(python3 -c "print(($(thread_ticks "${SERVER_PIDS[0]}" upload) - $u0) / $hz)"),
 "s3_server_seconds": $(python3 -c "print(($(proc_ticks "$moto") - $m0) / $hz)")}
JSON
  local deadline=$((SECONDS + 300))
  until grep -q 'message="block uploaded"' "$WORK/$SYS/receiver-0.log"; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "no block uploaded in 300s" >&2; exit 1; }
    sleep 0.5
  done
  grep 'message="block uploaded"' "$WORK/$SYS/receiver-0.log" >"$WORK/$SYS/uploaded.log"
  stop_servers
  kill "$moto" 2>/dev/null || true
}

# Restart: BIG series × RESTART_STEPS samples (480: a full 2 h head and WAL), RSS, kill -9, then
# the time from the new process' start to /-/ready (the WAL replay).
restart_system() {
  start_system rf1 rf1-restart
  fill_head "$BIG" "$RESTART_STEPS" 1800s
  kill -9 "${SERVER_PIDS[0]}"
  wait "${SERVER_PIDS[0]}" 2>/dev/null || true
  local wal_bytes http t0 t1
  wal_bytes=$(find "$WORK/$SYS/data-0" -type d -name wal -exec du -sbc {} + | tail -1 | cut -f1)
  http=$(free_port)
  t0=$(date +%s.%N)
  "$BIN/thanos-receiver" receive --remote-write.address="127.0.0.1:$(free_port)" \
    --http-address="127.0.0.1:$http" --grpc-address="127.0.0.1:$(free_port)" \
    --tsdb.path="$WORK/$SYS/data-0" --label='replica="bench-0"' 2>"$WORK/$SYS/restart.log" &
  PIDS+=("$!")
  SERVER_PIDS=("$!")
  wait_http "http://127.0.0.1:$http/-/ready" 900
  t1=$(date +%s.%N)
  local rss
  rss=$(status_kb VmRSS)
  kill -9 "${SERVER_PIDS[0]}"
  wait "${SERVER_PIDS[0]}" 2>/dev/null || true
  cat >"$WORK/$SYS/server.json" <<JSON
{"series": $BIG, "rss_mid_kb": $RSS_MID, "rss_kb": $RSS_FULL, "wal_bytes": $wal_bytes,
 "ready_seconds": $(python3 -c "print($t1 - $t0)"), "rss_after_restart_kb": $rss}
JSON
  rm -rf "$WORK/$SYS/data-0"
}

for k in rf1 rf3 vm; do bench_system "$k"; done
for k in rf1 rf3 vm; do disk_system "$k"; done
upload_system
restart_system

log "decode-only limit (criterion)"
rm -rf "$CARGO_TARGET_DIR/criterion/decode"
if [ "$QUICK" = 1 ]; then
  cargo bench -p receiver --bench decode -- 'snappy\+decode/v1/10000' >"$WORK/criterion.txt" 2>&1
else
  cargo bench -p receiver --bench decode >"$WORK/criterion.txt" 2>&1
fi

log "native histogram ingest cost (criterion)"
rm -rf "$CARGO_TARGET_DIR/criterion/ingest"
cargo bench -p receiver --bench histograms >"$WORK/criterion-histograms.txt" 2>&1

log "writing BENCHMARKS.md"
python3 - "$WORK" "$ROOT/BENCHMARKS.md" "$CARGO_TARGET_DIR/criterion/decode" "$CARGO_TARGET_DIR/criterion/ingest" "$RESTART_STEPS" <<'PY'
import datetime, glob, json, os, platform, re, subprocess, sys

work, out_path, crit, crit_ingest = sys.argv[1:5]
restart_steps = int(sys.argv[5])
quick = os.environ.get("BENCH_QUICK", "0") == "1"

def j(path):
    with open(path) as f:
        return json.load(f)

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"

names = {"rf1": "receiver, RF=1", "rf3": "3 receivers, RF=3", "vm": "VictoriaMetrics single-node"}
r = {}
for sys_ in names:
    d = {p: j(f"{work}/{sys_}/{p}.json") for p in ("load-small", "load-big", "max", "p70")}
    s = j(f"{work}/{sys_}/server.json")
    fill = j(f"{work}/{sys_}-disk/fill.json")
    fill_samples = fill["samples_ok"] + j(f"{work}/{sys_}-disk/fill-mid.json")["samples_ok"]
    ds = j(f"{work}/{sys_}-disk/server.json")
    loads = [float(open(x).read()) for x in glob.glob(f"{work}/{sys_}/*.load")]
    foreign = max(float(open(f"{work}/{sys_}/{p}.foreign").read()) for p in ("max", "p70"))
    small, big = d["load-small"]["series"], d["load-big"]["series"]
    cpu_max = s["cpu_max_ticks"] / s["clk_tck"]
    cpu_load = s["cpu_load_ticks"] / s["clk_tck"]
    # Every receiver of the RF=3 cluster holds every series: RSS is per receiver, disk per copy.
    copies = 3 if sys_ == "rf3" else 1
    reads = {p: j(f"{work}/{sys_}/{p}.json") for p in ("read-selective", "read-broad", "read-during-writes", "p70-reads")
             if os.path.exists(f"{work}/{sys_}/{p}.json")}
    r[sys_] = dict(
        reads=reads,
        sps=d["max"]["samples_per_second"],
        cpu_per_m=cpu_max * 1e6 / max(d["max"]["samples_ok"], 1),
        sps_per_cpu=d["max"]["samples_ok"] / max(cpu_max, 1e-9),
        cpu_load_per_m=cpu_load * 1e6 / max(d["load-small"]["samples_ok"] + d["load-big"]["samples_ok"], 1),
        rss_small=s["rss_small_kb"] * 1024 / s["servers"] / small,
        rss_big=s["rss_big_kb"] * 1024 / s["servers"] / big,
        rss_end=s["rss_end_kb"] * 1024 / s["servers"] / big,
        end_spp=sum(d[p]["samples_ok"] for p in d) / big,
        hwm_mib=s["hwm_kb"] / 1024,
        p50=d["p70"]["latency_ms_p50"], p99=d["p70"]["latency_ms_p99"],
        p70_sps=d["p70"]["samples_per_second"], max_p99=d["max"]["latency_ms_p99"],
        req_p50=d["p70"].get("request_latency_ms_p50", float("nan")),
        req_p99=d["p70"].get("request_latency_ms_p99", float("nan")),
        max_req_p99=d["max"].get("request_latency_ms_p99", float("nan")),
        disk=ds["disk_bytes"] / max(fill_samples * copies, 1),
        disk_index=ds.get("index_bytes", 0) / max(fill_samples * copies, 1),
        disk_chunks=ds.get("chunk_bytes", 0) / max(fill_samples * copies, 1),
        chunk_size=ds.get("chunk_bytes", 0) / max(ds.get("chunks", 0), 1),
        disk_spp=fill_samples / fill["series"],
        mid_spp=(fill_samples - fill["samples_ok"]) / fill["series"],
        rss_mid=ds["rss_mid_kb"] * 1024 / ds["servers"] / fill["series"],
        disk_series=fill["series"],
        stop_seconds=ds["stop_seconds"],
        rss_full=ds["rss_kb"] * 1024 / ds["servers"] / fill["series"],
        load=max(loads) if loads else float("nan"),
        foreign=foreign,
        lg_cpu=sum(x["loadgen_cpu_seconds"] for x in d.values()) * 1e6 / max(sum(x["samples_ok"] for x in d.values()), 1),
        failed=sum(x["samples_failed"] for x in d.values()),
        statuses=d["max"]["statuses"],
        bps=d["max"]["compressed_bytes_per_sample"],
        raw=d["max"]["raw_bytes_per_sample"],
        small=small, big=big,
    )

# Criterion: mean time per iteration and elements per iteration, as elements per second.
def per_second(crit_dir):
    out = {}
    for bench in glob.glob(f"{crit_dir}/*/new/benchmark.json"):
        b = j(bench)
        est = j(os.path.join(os.path.dirname(bench), "estimates.json"))
        elems = (b.get("throughput") or {}).get("Elements")
        if elems:
            out[b["function_id"]] = elems / (est["mean"]["point_estimate"] * 1e-9)
    return out

decode = per_second(crit)
ingest = per_second(crit_ingest)

rf1, rf3, vm = r["rf1"], r["rf3"], r["vm"]
limit = decode.get("snappy+decode/v1/10000")
nproc = os.cpu_count()

def f(x, d=0):
    return f"{x:,.{d}f}"

rows = [
    ("max throughput, samples/s (wall, loadgen shares the CPUs)", lambda x: f(x["sps"])),
    ("server CPU seconds per million samples, at max throughput", lambda x: f(x["cpu_per_m"], 3)),
    ("samples per server CPU-second", lambda x: f(x["sps_per_cpu"])),
    ("server CPU seconds per million samples while creating series", lambda x: f(x["cpu_load_per_m"], 3)),
    (f"RSS per active series at {rf1['small']:,} series, bytes (per receiver)", lambda x: f(x["rss_small"])),
    (f"RSS per active series at {rf1['big']:,} series, bytes (per receiver)", lambda x: f(x["rss_big"])),
    (f"RSS per active series at {rf1['big']:,} series after the runs, bytes", lambda x: f(x["rss_end"])),
    ("… samples per series by then", lambda x: f(x["end_spp"])),
    ("peak RSS (VmHWM), MiB, all processes", lambda x: f(x["hwm_mib"])),
    ("p50 / p99 latency at 70 % of max, per attempt, ms", lambda x: f"{x['p50']:.0f} / {x['p99']:.0f}"),
    ("… per request, retries and backoff included, ms", lambda x: f"{x['req_p50']:.0f} / {x['req_p99']:.0f}"),
    ("throughput reached in that run, samples/s", lambda x: f(x["p70_sps"])),
    ("p99 latency at max throughput, per attempt / per request, ms", lambda x: f"{f(x['max_p99'])} / {f(x['max_req_p99'])}"),
    (f"RSS per series with {rf1['mid_spp']:.0f} samples each ({rf1['disk_series']:,} series; open chunks half full), bytes (per receiver)", lambda x: f(x["rss_mid"])),
    (f"… with {rf1['disk_spp']:.0f} samples each (480 fill a 2 h head; the last chunk just complete), bytes", lambda x: f(x["rss_full"])),
    ("… then bytes per sample on disk, per copy", lambda x: f(x["disk"], 2)),
    ("samples per series in that measurement", lambda x: f(x["disk_spp"])),
    ("graceful stop after it (receivers: head → blocks), s", lambda x: f(x["stop_seconds"])),
    ("samples failed (all runs)", lambda x: f(x["failed"])),
    ("loadgen CPU seconds per million samples", lambda x: f(x["lg_cpu"], 3)),
    ("highest 1-min load average at a run's start (includes the bench's own processes)", lambda x: f"{x['load']:.2f}"),
    ("machine CPU used by other jobs during the saturated and 70 % runs, at most", lambda x: f"{x['foreign']:.0%}"),
]
def read(x, phase, fmt):
    p = x["reads"].get(phase)
    return fmt(p) if p else "—"

broad_series = rf1["reads"]["read-broad"]["series_per_query"]
rows += [
    (f"read one series of {rf1['big']:,} by its labels (receiver: remote read; VictoriaMetrics: /api/v1/export), p50 / p99 ms",
     lambda x: read(x, "read-selective", lambda p: f"{p['latency_ms_p50']:.2f} / {p['latency_ms_p99']:.2f}")),
    (f"read one metric name, {broad_series:,} series × all their samples, p50 / p99 ms",
     lambda x: read(x, "read-broad", lambda p: f"{p['latency_ms_p50']:.0f} / {p['latency_ms_p99']:.0f}")),
    ("… the same reads back to back while writes run at 70 %",
     lambda x: read(x, "read-during-writes", lambda p: f"{p['queries']} reads, p99 {p['latency_ms_p99']:.0f}")),
    ("write p99 at 70 %: idle → while those reads run, ms",
     lambda x: read(x, "p70-reads", lambda p: f"{x['p99']:.0f} → {p['latency_ms_p99']:.0f}")),
    ("reads failed",
     lambda x: read(x, "read-broad", lambda p: f(sum(q["failed"] for q in x["reads"].values() if "failed" in q)))),
]
table = ["| | " + " | ".join(names.values()) + " |", "|---|---:|---:|---:|"]
for label, fn in rows:
    table.append(f"| {label} | " + " | ".join(fn(r[k]) for k in names) + " |")

def verdict(ok):
    return "**met**" if ok else "**missed**"

targets = []
ratio = rf1["sps_per_cpu"] / vm["sps_per_cpu"]
targets.append(f"| samples per CPU-second, RF=1 ≥ 2 × VictoriaMetrics | {ratio:.2f} × | {verdict(ratio >= 2)} |")
# Judged on the worse of the two points of a full head: open chunks half full, or just complete.
full_worst = max(rf1["rss_full"], rf1["rss_mid"])
full_ok = full_worst <= 1024 and full_worst < min(vm["rss_full"], vm["rss_mid"])
targets.append(f"| RSS per active series with a **full** 2 h head ({rf1['disk_series']:,} series, {rf1['mid_spp']:.0f} / {rf1['disk_spp']:.0f} samples) ≤ 1 KiB, below VictoriaMetrics | {rf1['rss_mid']:,.0f} / {rf1['rss_full']:,.0f} B vs {vm['rss_mid']:,.0f} / {vm['rss_full']:,.0f} B | {verdict(full_ok)} |")
young_ok = rf1["rss_big"] <= 1024 and rf1["rss_big"] < vm["rss_big"]
targets.append(f"| RSS per active series with a **young** head ({rf1['big']:,} series × 2 samples) ≤ 1 KiB, below VictoriaMetrics | {rf1['rss_big']:,.0f} B vs {vm['rss_big']:,.0f} B | {verdict(young_ok)} |")
rs = j(f"{work}/rf1-restart/server.json")
rs_mid, rs_full = rs["rss_mid_kb"] * 1024 / rs["series"], rs["rss_kb"] * 1024 / rs["series"]
targets.append(f"| RSS per active series with a **full** 2 h head ({rs['series']:,} series, {restart_steps * 7 // 8} / {restart_steps} samples; receiver only) ≤ 1 KiB | {rs_mid:,.0f} / {rs_full:,.0f} B | {verdict(max(rs_mid, rs_full) <= 1024)} |")
overhead = rf3["cpu_per_m"] / (3 * rf1["cpu_per_m"])
targets.append(f"| RF=3 CPU per client sample ÷ (3 × RF=1's) ≤ 1.15 | {overhead:.2f} × | {verdict(overhead <= 1.15)} |")
if limit:
    e2e = rf1["sps_per_cpu"] / limit
    targets.append(f"| end-to-end ≥ 50 % of the decode-only limit (per CPU-second vs per core) | {e2e:.0%} of {limit:,.0f} samples/s/core | {verdict(e2e >= 0.5)} |")
    wall = rf1["sps"] / (limit * nproc)
    targets.append(f"| (context) wall throughput vs decode limit × {nproc} cores | {wall:.0%} | — |")
targets.append(f"| disk bytes per sample of a full block below VictoriaMetrics (receiver: chunk files {rf1['disk_chunks']:.2f}, {rf1['chunk_size']:,.0f} B per chunk of 120 samples; index {rf1['disk_index']:.2f}) | {rf1['disk']:.2f} vs {vm['disk']:.2f} | {verdict(rf1['disk'] < vm['disk'])} |")
up_without, up_with = j(f"{work}/rf1-upload/no-upload.json"), j(f"{work}/rf1-upload/upload.json")
uploaded = open(f"{work}/rf1-upload/uploaded.log").read()
def field(line, name):
    m = re.search(rf'\b{name}="?([0-9.]+)', line)
    return float(m.group(1)) if m else float("nan")
up_bytes, up_seconds = field(uploaded, "bytes"), field(uploaded, "seconds")
up_cpu = j(f"{work}/rf1-upload/cpu.json")
p99_without, p99_with = up_without["request_latency_ms_p99"], up_with["request_latency_ms_p99"]
up_diff = p99_with / max(p99_without, 1e-9) - 1
targets.append(f"| write p99 per request with a concurrent block upload within 20 % of without ({rf1['disk_series']:,} series at {up_with['rate_limit']:,.0f} samples/s; S3 server on the same CPUs at nice 19) | {p99_with:.1f} vs {p99_without:.1f} ms ({up_diff:+.0%}); upload {up_bytes / 1048576:,.0f} MiB in {up_seconds:.1f} s = {up_bytes / 1048576 / max(up_seconds, 1e-9):,.1f} MiB/s; CPU in the upload window: receiver {up_cpu['receiver_seconds']:.1f} s, of which upload threads {up_cpu['upload_thread_seconds']:.2f} s; S3 server {up_cpu['s3_server_seconds']:.1f} s | {verdict(abs(up_diff) < 0.2)} |")
replayed = re.search(r'WAL replayed.*samples=(\d+).*duration_ms=(\d+)', open(f"{work}/rf1-restart/restart.log").read())
replay_rate = int(replayed.group(1)) / max(int(replayed.group(2)) / 1000, 1e-9) if replayed else float("nan")
targets.append(f"| restart with {rs['series']:,} series and a {restart_steps}-sample WAL ({rs['wal_bytes'] / 2**30:.1f} GiB) Ready ≤ 30 s | {rs['ready_seconds']:.1f} s; replay {replay_rate / 1e6:.1f} M samples/s; RSS once Ready {rs['rss_after_restart_kb'] * 1024 / rs['series']:,.0f} B per series | {verdict(rs['ready_seconds'] <= 30 and restart_steps >= 480)} |")
sel = rf1["reads"]["read-selective"]["latency_ms_p50"]
targets.append(f"| (issue 15) selective read (one series of {rf1['big']:,}) under 10 ms | p50 {sel:.2f} ms | {verdict(sel < 10)} |")
during = rf1["reads"]["p70-reads"]["latency_ms_p99"]
targets.append(f"| (issue 15) write p99 while broad reads run ≤ 1.5 × idle | {during:.0f} vs {rf1['p99']:.0f} ms ({during / max(rf1['p99'], 1e-9):.2f} ×) | {verdict(during <= 1.5 * rf1['p99'])} |")

dec = ["| benchmark (4 requests per iteration) | samples/s per core |", "|---|---:|"]
for k in sorted(decode):
    dec.append(f"| `{k}` | {decode[k]:,.0f} |")

hist = ["| step (1000 series per request) | float sample | native histogram (20 buckets) | histogram / float |", "|---|---:|---:|---:|"]
for step in ("decode+validate", "decode+validate+append"):
    fl, hi = ingest.get(f"{step}/float"), ingest.get(f"{step}/histogram")
    if fl and hi:
        hist.append(f"| {step} | {1e9 / fl:,.0f} ns | {1e9 / hi:,.0f} ns | {fl / hi:.1f}× |")

mem = sh("free -g | awk '/Mem:/ {print $2}'")
rustc = sh("rustc --version")
receiver_bin = os.path.join(work, "bin", "thanos-receiver")
receiver_version = sh(receiver_bin + " --version") + " built " + datetime.datetime.fromtimestamp(
    os.path.getmtime(receiver_bin), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
vm_version = sh("dpkg-query -W -f='${Version}' victoria-metrics")
cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
cmd = ("BENCH_QUICK=1 " if quick else "") + "make bench"
commit = sh("git rev-parse --short HEAD") + (" with uncommitted changes" if sh("git status --porcelain --untracked-files=no") else "")
block = [
    "<!-- bench:begin (generated by scripts/bench.sh; edit outside the markers) -->",
    f"Produced by `{cmd}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC from commit {commit}, one run (no best-of)"
    + (" — **quick mode: small series counts and short runs, not the figures to quote**" if quick else "") + ".",
    "",
    f"Machine: {nproc} CPUs ({cpu_model}), {mem} GiB RAM, Linux {platform.release()}; "
    f"{rustc}; {receiver_version}; VictoriaMetrics {vm_version} (Debian package).",
    "",
    f"Load: {rf1['big']:,} active series × 12 labels (Kubernetes-like), remote write 1.0, 10,000 samples per request, "
    f"one shard per 10,000 series (at most 100, one request in flight each), 15 s sample interval, no churn; "
    f"{rf1['raw']:.0f} B/sample protobuf, {rf1['bps']:.1f} B/sample snappy. Runs: 2 steps of {rf1['small']:,} series, "
    f"2 steps of {rf1['big']:,}, {'8' if quick else '30'} s saturated, {'8' if quick else '30'} s at 70 % of that rate; "
    f"full head and disk: fresh servers, {rf1['disk_series']:,} series × {rf1['disk_spp']:.0f} samples from a 2 h boundary "
    f"(RSS after {rf1['mid_spp']:.0f} and after {rf1['disk_spp']:.0f}, 2 s after each run), then a graceful stop "
    "(receivers cut their head into a block; VictoriaMetrics after `/internal/force_flush`; its `cache/` directory excluded). "
    "Uploads (RF=1 only): the receiver restarts on that data with an S3 bucket on moto, writes the same series at half the RF=1 maximum "
    f"for {'8' if quick else '20'} s while uploads fail (no bucket yet), then {'8' if quick else '20'} s right after the bucket "
    f"is created while the shipper uploads the block. Restart: a fresh receiver, {rs['series']:,} series × {restart_steps} samples, "
    "`kill -9`, then the new process' start to `/-/ready`.",
    "",
    *table,
    "",
    *([f"**Other jobs shared the {nproc} CPUs during this run** (up to "
       f"{max(x['foreign'] for x in r.values()):.0%} of the machine): throughputs are lower bounds; "
       "CPU seconds per sample, which count only the servers' own time, are the steadier figures.", ""]
      if max(x["foreign"] for x in r.values()) > 0.05 else []),
    "Targets (ratios from this run):",
    "",
    "| target | measured | |",
    "|---|---|---|",
    *targets,
    "",
    "Decode-only limit (`cargo bench -p receiver --bench decode`, criterion mean, one core):",
    "",
    *dec,
    "",
    "Ingest cost per sample, float vs native histogram (`cargo bench -p receiver --bench histograms`, "
    "criterion mean, one core; append = WAL record + head chunk):",
    "",
    *hist,
    "",
]
prof = os.path.join(work, "profile.txt")
if os.path.exists(prof) and os.path.getsize(prof) > 0:
    block += [
        f"Profile of the RF=1 receiver at max throughput (`perf record -F 499 -e cpu-clock -g`, self time, symbols ≥ 0.7 %):",
        "",
        "```",
        open(prof).read().rstrip(),
        "```",
        "",
        "By shared object:",
        "",
        "```",
        open(os.path.join(work, "profile-dso.txt")).read().rstrip(),
        "```",
        "",
    ]
block.append("<!-- bench:end -->")
text = "\n".join(block)

if os.path.exists(out_path):
    old = open(out_path).read()
    m = re.search(r"<!-- bench:begin.*?<!-- bench:end -->", old, re.S)
    new = old[: m.start()] + text + old[m.end():] if m else old.rstrip() + "\n\n" + text + "\n"
else:
    new = "# Benchmarks\n\n" + text + "\n"
open(out_path, "w").write(new)
print(text)
PY
