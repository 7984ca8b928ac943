#!/usr/bin/env bash
# The main job on a fresh machine: build Colloquy, train the bundled example bot
# (examples/hello-bot) and serve it on http://localhost:5005 with the API enabled,
# the in-memory tracker store and the REST channel. Needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p colloquy
./target/release/colloquy train \
    --domain examples/hello-bot/domain.yml \
    --data examples/hello-bot/data \
    --config examples/hello-bot/config.yml \
    --out examples/hello-bot/models
exec ./target/release/colloquy run --enable-api -m examples/hello-bot/models "$@"
