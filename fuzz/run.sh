#!/usr/bin/env bash
# Builds the fuzz targets and runs each for N seconds (default 600) from a scratch copy of
# its seed corpus; fails if any target finds a crash, a hang (-timeout) or an OOM.
#
#   bash fuzz/run.sh [seconds-per-target] [target ...]
#
# Stable toolchain only: instead of cargo-fuzz (whose default ASan build needs nightly), the
# targets are built with the SanitizerCoverage flags cargo-fuzz uses for `-s none`, all of
# which are stable rustc options, and linked against libFuzzer by libfuzzer-sys (which
# compiles libFuzzer with the system C++ compiler). Nothing to install beyond `cc`/`c++`.
# Logs, the grown corpus and crash inputs land in fuzz/out/<target>/ (FUZZ_OUT), which is
# scratch: the committed seeds in fuzz/corpus/<target>/ are only copied from.
set -euo pipefail
# FUZZ_OUT (default fuzz/out): where logs, grown corpora and crash inputs go.
OUT="$(mkdir -p "${FUZZ_OUT:-$(dirname "$0")/out}" && cd "${FUZZ_OUT:-$(dirname "$0")/out}" && pwd)"
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${1:-600}"
shift || true
ALL_TARGETS=(event_json tracker endpoints domain training regex_shortcut jwt)
[ $# -gt 0 ] && TARGETS=("$@") || TARGETS=("${ALL_TARGETS[@]}")

# FUZZ_BUILD=full (default): everything instrumented, optimised (the long runs).
# FUZZ_BUILD=quick: a debug build with only the project's crates instrumented (CI).
# No --locked: fuzz/Cargo.lock is the root lock plus libfuzzer-sys; when the host gains a
# dependency, cargo adds it here without moving the versions already pinned.
HOST_TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
case "${FUZZ_BUILD:-full}" in
full)
    export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
    export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
    # --target keeps RUSTFLAGS off build scripts and proc macros (they do not link libFuzzer).
    cargo build --release --target "$HOST_TRIPLE" --bins
    BIN="$CARGO_TARGET_DIR/$HOST_TRIPLE/release"
    ;;
quick)
    export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target-quick}"
    # RUSTFLAGS marks every unit, so nothing built without the wrapper is ever reused here.
    RUSTFLAGS="--cfg fuzzing" RUSTC_WRAPPER="$PWD/sancov-rustc.sh" cargo build --bins
    BIN="$CARGO_TARGET_DIR/debug"
    ;;
*)
    echo "FUZZ_BUILD must be full or quick" >&2
    exit 2
    ;;
esac

status=0
passed=0
failed=0
for t in "${TARGETS[@]}"; do
    work="$OUT/$t"
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp corpus/"$t"/* "$work/corpus/" 2>/dev/null || true
    dict=()
    [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
    set +e
    "$BIN/$t" "$work/corpus" "${dict[@]}" \
        -max_total_time="$SECONDS_PER_TARGET" -max_len=8192 -rss_limit_mb=2048 -timeout=10 \
        -malloc_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
        >"$work/log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$work/log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\) .*/\1/p' <<<"$last")
    corpus=$(ls "$work/corpus" | wc -l)
    if [ "$rc" -eq 0 ]; then
        echo "fuzz $t: ok, ${SECONDS_PER_TARGET}s, ${execs:-?} execs, cov ${cov:-?} ft ${ft:-?}, corpus $corpus"
        passed=$((passed + 1))
    else
        echo "fuzz $t: FAILED (exit $rc), see $work/log and $work/artifacts/"
        grep -E -m5 "panicked|ERROR: libFuzzer|SUMMARY" "$work/log" || true
        status=1
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
exit $status
