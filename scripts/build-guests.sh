#!/usr/bin/env bash
# Builds the guest SDK and the example guests for wasm32-wasip1.
# Outputs: guests/target/wasm32-wasip1/release/{vector-add,matmul,ptx-saxpy}.wasm
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
    echo "the wasm32-wasip1 target is missing: run 'rustup target add wasm32-wasip1'" >&2
    exit 1
fi
CARGO_TARGET_DIR="$root/guests/target" \
    cargo build --release --target wasm32-wasip1 --manifest-path "$root/guests/Cargo.toml"
out="$root/guests/target/wasm32-wasip1/release"
for name in vector-add matmul ptx-saxpy; do
    test -f "$out/$name.wasm" || { echo "missing $out/$name.wasm" >&2; exit 1; }
    echo "$out/$name.wasm"
done
