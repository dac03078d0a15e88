#!/usr/bin/env bash
# One-shot GPU check: the CUDA tests, the tenant-isolation tests of the GPU
# interface, and the CUDA dispatch figures beside native cudarc/cuBLAS
# (SECURITY.md, BENCHMARKS.md "GPU dispatch").
#
# The GPU machine needs the CUDA driver, not Rust: build here, run there.
#
#   scripts/gpu-verify.sh build [DIR]   on a machine with Rust: builds the
#                                       test and bench binaries (release,
#                                       stripped) into DIR
#                                       (default target/gpu-verify), with a
#                                       copy of this script
#   DIR/gpu-verify.sh run [DIR]         on the GPU machine: runs them and
#                                       prints the results (exit 1 on a
#                                       failure or when no device opens)
#   scripts/gpu-verify.sh               both, here
#
# With the device tool: `scripts/gpu-verify.sh build`, then run
# `target/gpu-verify/gpu-verify.sh run target/gpu-verify` with
# carry ["target/gpu-verify"]. The run takes well under 5 minutes.
set -euo pipefail

MODE=${1:-all}
HERE=$(cd "$(dirname "$0")" && pwd)

build() {
  local dir=$1 json
  cd "$HERE/.."
  command -v jq >/dev/null || { echo "jq not found: apt-get install -y jq" >&2; exit 1; }
  mkdir -p "$dir"
  echo "==> building the CUDA test and bench binaries (release)"
  json=$(mktemp)
  cargo test --release --locked -p tensor-wasm-gpu --test cuda --test interface \
    --no-run --message-format=json >"$json"
  cargo bench --locked -p tensor-wasm-gpu --bench cuda_dispatch \
    --no-run --message-format=json >>"$json"
  for name in cuda interface cuda_dispatch; do
    local exe
    exe=$(jq -r --arg n "$name" \
      'select(.reason == "compiler-artifact" and .target.name == $n and .executable != null) | .executable' \
      "$json" | tail -1)
    [[ -n "$exe" ]] || { echo "no executable for $name" >&2; exit 1; }
    cp "$exe" "$dir/$name"
    strip "$dir/$name" 2>/dev/null || true
  done
  rm -f "$json"
  cp "$HERE/gpu-verify.sh" "$dir/gpu-verify.sh"
  du -sh "$dir"
}

run() {
  local dir=$1 status=0 out
  cd "$dir"
  echo "==> $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  fi
  out=$(mktemp)
  echo "==> CUDA backend tests (skip lines mean no device opened)"
  ./cuda --test-threads=1 2>&1 | tee "$out" || status=1
  if grep -q '^SKIPPED' "$out"; then
    echo "FAIL: the CUDA tests skipped: no device opened on this machine" >&2
    status=1
  fi
  echo "==> GPU interface tests: bounds, handles, raw PTX opt-in, pointer parameters, quotas, deadlines"
  ./interface --test-threads=2 2>&1 | tail -n 40 || status=1
  echo "==> CUDA dispatch figures"
  timeout 180 ./cuda_dispatch || status=1
  rm -f "$out"
  if [[ $status == 0 ]]; then echo "gpu-verify: OK"; else echo "gpu-verify: FAILED" >&2; fi
  return $status
}

case $MODE in
  build) build "${2:-$HERE/../target/gpu-verify}" ;;
  run) run "${2:-$HERE}" ;;
  all)
    build "$HERE/../target/gpu-verify"
    run "$HERE/../target/gpu-verify"
    ;;
  *) echo "usage: $0 [build [DIR] | run [DIR]]" >&2; exit 2 ;;
esac
