#!/usr/bin/env bash
# Runs the whole test suite: the README's test command, and what CI runs.
#
# Installs what a fresh machine lacks (the wasm32-wasip1 target for the
# example guests), then runs every workspace test. GPU tests skip with a
# printed reason when no CUDA device is present.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
    echo "==> installing the wasm32-wasip1 target (example guests)"
    rustup target add wasm32-wasip1
fi

echo "==> cargo test --workspace"
cargo test --workspace --locked "$@"
