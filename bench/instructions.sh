#!/usr/bin/env bash
# Instructions per request under callgrind: a deterministic A/B measure for changes too small
# for throughput runs on a shared machine (whose run-to-run noise is ±15 %). Counts the
# server's user-space instructions only (no kernel, no waiting), so it complements, never
# replaces, bench/run.sh.
#
#   bash bench/instructions.sh p1|p2|p4|kafka [BINARY] [REQUESTS]
#
# BINARY defaults to target/release/colloquy (build it first, on its own: `cargo build --release
# -p colloquy`; built together with the plugins it gets their mimalloc features, see
# bench/run.sh); REQUESTS to 5000 (P1) or 3000
# (P2). Starts the server under valgrind (apt-get install -y valgrind) on 127.0.0.1, sends 500
# warm-up requests, zeroes the counters, sends REQUESTS requests with wrk and prints
# `instructions/request`. P1 appends one slot event over 1,000 conversations
# (`?include_events=NONE`), P2 is one REST turn of examples/hello-bot over 1,000 senders, as
# in bench/run.sh; P4 is P1 with the stores loaded from target/release's in-memory plugin
# (`type: in_memory_plugin`); KAFKA is P1 publishing every event to the Kafka broker at
# $KAFKA_BOOTSTRAP (e.g. tansu as in bench/run.sh; topic bench_events) through target/release's
# Kafka plugin. Under callgrind requests come ~50 times slower, so the producer's batches are
# that much smaller than in a throughput run: its per-batch costs weigh more. Profiles stay in bench/out/instructions-*/ (callgrind_annotate --inclusive=yes).
# CALLGRIND_ARGS adds callgrind options, e.g. CALLGRIND_ARGS="--toggle-collect=*LockStoreHandle*"
# to count only inside one function (the figure is then that function's share per request).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORKLOAD=${1:?usage: bench/instructions.sh p1|p2|p4|kafka [BINARY] [REQUESTS]}
BIN=$(realpath "${2:-$ROOT/target/release/colloquy}")
case "$WORKLOAD" in
p1 | p4 | kafka) LUA=append.lua N=${3:-5000} ;;
p2) LUA=webhook.lua N=${3:-3000} ;;
*) echo "bench/instructions.sh: the workload is p1, p2, p4 or kafka" >&2; exit 2 ;;
esac
for tool in valgrind callgrind_control callgrind_annotate wrk curl; do
    command -v "$tool" >/dev/null || { echo "bench/instructions.sh: $tool is required" >&2; exit 2; }
done

OUT="$ROOT/bench/out/instructions-$(date +%Y%m%d-%H%M%S)-$WORKLOAD"
mkdir -p "$OUT"
STORE=in_memory
[ "$WORKLOAD" = p4 ] && STORE=in_memory_plugin
printf 'tracker_store:\n  type: %s\nlock_store:\n  type: %s\n' $STORE $STORE >"$OUT/endpoints.yml"
if [ "$WORKLOAD" = kafka ]; then
    : "${KAFKA_BOOTSTRAP:?bench/instructions.sh: kafka needs KAFKA_BOOTSTRAP=host:port of a running broker}"
    printf 'event_broker:\n  type: kafka\n  url: %s\n  topic: bench_events\n  partition_by_sender: true\n' \
        "$KAFKA_BOOTSTRAP" >>"$OUT/endpoints.yml"
fi
SERVER_ARGS=(--plugin-dir "$ROOT/target/release")
if [ "$WORKLOAD" = p2 ]; then
    "$BIN" train --domain "$ROOT/examples/hello-bot/domain.yml" --data "$ROOT/examples/hello-bot/data" \
        --config "$ROOT/examples/hello-bot/config.yml" --out "$OUT/model" --force >"$OUT/train.log" 2>&1
    SERVER_ARGS+=(-m "$OUT/model")
fi

PORT=$((20000 + RANDOM % 20000))
TOKIO_WORKER_THREADS=1 RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" ${CALLGRIND_ARGS:-} \
    "$BIN" run --enable-api -i 127.0.0.1 -p "$PORT" --endpoints "$OUT/endpoints.yml" "${SERVER_ARGS[@]}" \
    >"$OUT/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.2
done

load() { # prefix requests seconds
    BENCH_LUA="$ROOT/bench/lua" BENCH_PREFIX=$1 BENCH_CONVS=1000 BENCH_LIMIT=$2 \
        wrk -t1 -c4 -d"$3"s -s "$ROOT/bench/lua/$LUA" "http://127.0.0.1:$PORT/"
}
load warm 500 10 >/dev/null
callgrind_control -z "$PID" >/dev/null
load x "$N" 60 | grep RESULT >"$OUT/wrk.txt"
callgrind_control -d "$PID" >/dev/null
sleep 1
DUMP=$(ls -t "$OUT"/callgrind.out.* | head -1)
TOTAL=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
# wrk stops its connections once N answers are in; one or two more may have been answered.
DONE=$(grep -o 'requests=[0-9]*' "$OUT/wrk.txt" | cut -d= -f2)
grep -q 'non2xx=0 sockerr=0' "$OUT/wrk.txt" && [ "${DONE:-0}" -ge "$N" ] \
    || { echo "bench/instructions.sh: the load failed: $(cat "$OUT/wrk.txt")" >&2; exit 1; }
echo "$WORKLOAD $(basename "$BIN"): $((TOTAL / DONE)) instructions/request ($TOTAL over $DONE requests; profile $DUMP)"
