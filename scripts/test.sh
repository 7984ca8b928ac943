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
cargo test --workspace --no-fail-fast
