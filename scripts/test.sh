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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# One closing line for the whole run: cargo prints a `test result` line per
# test binary (the last one is often an empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
