#!/usr/bin/env bash
# RUSTC_WRAPPER for the quick build of fuzz/run.sh (FUZZ_BUILD=quick, used by CI): only the
# project's crates (colloquy, the plugin API) and the fuzz targets get SanitizerCoverage, so
# the registry dependencies compile as in a plain debug build, which is about twice as fast.
# Coverage guidance then sees the project's code only, enough for a smoke run; the long runs
# instrument everything. Build scripts are left alone: they do not link libFuzzer.
rustc="$1"
shift
args=" $* "
case "$args" in
*" --crate-name build_script_"*) exec "$rustc" "$@" ;;
*" --crate-name colloquy "* | *" --crate-name colloquy_plugin_api "* | *"fuzz_targets/"*)
    exec "$rustc" "$@" -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares
    ;;
esac
exec "$rustc" "$@"
