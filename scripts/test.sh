#!/usr/bin/env bash
# The test command (README, CI): installs what is missing, builds every crate (plugins
# included, so the tests' cargo calls are no-ops), then runs every test. The tests start
# their own redis-server and tansu broker on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Never share a target dir with another checkout: cargo could link a stale plugin-api.
export CARGO_TARGET_DIR="${PWD}/target"
cargo build --workspace --all-targets
# The black-box tests build the binary and plugins one package at a time (cargo unifies
# features per invocation, so a workspace build does not cover them): do those builds here,
# once, so that the tests find them up to date.
for pkg in colloquy colloquy-plugin-in-memory colloquy-plugin-redis colloquy-plugin-kafka \
           colloquy-plugin-http-model-source colloquy-plugin-http-nlu; do
    cargo build -q -p "$pkg"
done
cargo build -q -p colloquy-plugin-kafka --example kafka_tool
cargo test --workspace --no-fail-fast
# A short coverage-guided fuzzing run of every target (docs/reliability.md): a quick debug
# build with the project's crates instrumented, then 10 s per target from the seed corpora
# (about 3.5 min in all on 2 cores).
# Fails on any crash, hang or out-of-memory; runs only once the tests have passed.
FUZZ_BUILD=quick bash fuzz/run.sh 10
