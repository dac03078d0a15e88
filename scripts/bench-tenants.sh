#!/usr/bin/env bash
# Victim latency while another tenant attacks (RELIABILITY.md, "Tenant
# isolation under load").
#
# One `tensor-wasm serve` (auth and the audit file sink on, 64 invocation
# slots, so each tenant's share is 16). The victim tenant invokes a typed
# `add(2,3)` at VICTIM_CONNS connections while the attacker, on its own
# token, does one of:
#   none    nothing: the unattacked baseline;
#   sleep   holds its whole share with guests sleeping in a WASI host call
#           (`poll_oneoff`, one hour asked, 1 s deadline);
#   spin    keeps its whole share busy with guests spinning in Wasm until
#           their 100 ms deadline (CPU the victim's calls compete for);
# and, on a second server whose tenant share equals the global bound (what
# `main` did before fair shares), `sleep` with 64 connections — the attack
# that used to lock every other tenant out with 503.
#
# Server on CPU SERVER_CPU, both wrk clients on CLIENT_CPU. Each phase runs
# ROUNDS times; the table shows medians.
#
# Usage: scripts/bench-tenants.sh        (needs wrk and jq)
# Knobs: DURATION=10s VICTIM_CONNS=16 ROUNDS=3 SERVER_CPU=0 CLIENT_CPU=1
#        NO_BUILD=0 BIN=target/release/tensor-wasm
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
VICTIM_CONNS=${VICTIM_CONNS:-16}
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BIN=${BIN:-target/release/tensor-wasm}
ADDR=127.0.0.1:18091
OLD_ADDR=127.0.0.1:18092
VICTIM=bench-victim-token-0123456789
ATTACKER=bench-attacker-token-0123456789

for tool in wrk jq taskset curl; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install -y wrk jq)" >&2; exit 1; }
done
if [[ "${NO_BUILD:-0}" != 1 ]]; then
  cargo build --release -p tensor-wasm --bin tensor-wasm
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start_server() { # addr data-dir tenant-share
  TENSOR_WASM_API_TOKENS="$VICTIM:tenant=victim,$ATTACKER:tenant=attacker" \
  TENSOR_WASM_API_AUDIT_LOG="file:$2/audit.log" \
  TENSOR_WASM_API_MAX_CONCURRENT_INVOCATIONS=64 \
  TENSOR_WASM_API_TENANT_MAX_CONCURRENT_INVOCATIONS=$3 \
  TENSOR_WASM_LISTEN=$1 TENSOR_WASM_DATA_DIR="$2" TENSOR_WASM_GPU=off \
    taskset -c "$SERVER_CPU" "$BIN" serve >"$2.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 100); do
    curl -sf "http://$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server at $1 did not come up" >&2
  cat "$2.log" >&2
  exit 1
}

deploy() { # addr token name wat limits-json
  curl -sf -X POST "http://$1/functions" -H "Authorization: Bearer $2" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"$3\",\"wasm_b64\":\"$(printf '%s' "$4" | base64 -w0)\",\"limits\":$5}" | jq -r .id
}

ADD='(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))'
# shellcheck disable=SC2016 # WAT text, not shell expansions
SLEEP='(module (import "wasi_snapshot_preview1" "poll_oneoff" (func $p (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sleep") (result i32)
    (i32.store (i32.const 16) (i32.const 1)) (i64.store (i32.const 24) (i64.const 3600000000000))
    (call $p (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))'
SPIN='(module (func (export "spin") (loop br 0)))'

lua() { # file token export
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '{"export":"$3","args":[2,3]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $2"
LUA
}
lua "$WORK/victim.lua" "$VICTIM" add
lua "$WORK/sleep.lua" "$ATTACKER" sleep
lua "$WORK/spin.lua" "$ATTACKER" spin
# The attacker's calls take their args too; `sleep`/`spin` take none.
sed -i 's/"args":\[2,3\]/"args":[]/' "$WORK/sleep.lua" "$WORK/spin.lua"

# "rps p50 p90 p99 non2xx" of one victim run.
victim_run() { # url
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$VICTIM_CONNS" -d"$DURATION" --latency \
    -s "$WORK/victim.lua" "$1" >"$WORK/wrk.out"
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "90%" { p90 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    END { printf "%.0f %.3f %.3f %.3f %d\n", rps, p50, p90, p99, bad + 0 }
  ' "$WORK/wrk.out"
}

# One phase: the attacker (if any) loads its function for the whole victim run.
phase() { # name addr victim-id attacker-id attack(lua|none) attacker-conns
  local name=$1 addr=$2 vid=$3 aid=$4 attack=$5 aconns=$6 apid=""
  if [[ "$attack" != none ]]; then
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$aconns" -d600s -s "$WORK/$attack.lua" \
      "http://$addr/functions/$aid/invoke" >"$WORK/attacker-$name.out" 2>&1 &
    apid=$!
    sleep 2
  fi
  victim_run "http://$addr/functions/$vid/invoke" >>"$WORK/$name.txt"
  if [[ -n "$apid" ]]; then kill "$apid" 2>/dev/null || true; wait "$apid" 2>/dev/null || true; fi
  sleep 1.5 # let the attacker's last calls reach their deadline
}

mkdir -p "$WORK/new" "$WORK/old"
start_server "$ADDR" "$WORK/new" 16
V=$(deploy "$ADDR" "$VICTIM" add "$ADD" '{}')
S=$(deploy "$ADDR" "$ATTACKER" sleep "$SLEEP" '{"timeout_ms":1000}')
P=$(deploy "$ADDR" "$ATTACKER" spin "$SPIN" '{"timeout_ms":100}')
taskset -c "$CLIENT_CPU" wrk -t1 -c"$VICTIM_CONNS" -d2s -s "$WORK/victim.lua" "http://$ADDR/functions/$V/invoke" >/dev/null

for round in $(seq 1 "$ROUNDS"); do
  phase none "$ADDR" "$V" "" none 0
  phase sleep "$ADDR" "$V" "$S" sleep 16
  phase spin "$ADDR" "$V" "$P" spin 16
  echo "round $round of $ROUNDS done" >&2
done

# The same sleep attack where one tenant may take every slot.
start_server "$OLD_ADDR" "$WORK/old" 64
OV=$(deploy "$OLD_ADDR" "$VICTIM" add "$ADD" '{}')
OS=$(deploy "$OLD_ADDR" "$ATTACKER" sleep "$SLEEP" '{"timeout_ms":1000}')
phase noshare "$OLD_ADDR" "$OV" "$OS" sleep 64

median() { awk -v k="$2" '{ print $k }' "$1" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
REFUSED=$(curl -s "http://$ADDR/metrics" | awk '/^tensor_wasm_invocations_refused_total/ { s += $NF } END { print s + 0 }')

echo
echo "## Tenant isolation under load — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(lscpu 2>/dev/null | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')), server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU, victim at $VICTIM_CONNS connections, $DURATION per point, median of $ROUNDS rounds"
echo
echo "| attacker | victim req/s | victim p50 / p90 / p99 ms | victim p99 / unattacked p99 | victim non-2xx |"
echo "|---|---:|---:|---:|---:|"
BASE_P99=$(median "$WORK/none.txt" 4)
for name in none sleep spin noshare; do
  f="$WORK/$name.txt"
  label=$name
  case $name in
    none) label="none (baseline)" ;;
    sleep) label="16 conns sleeping in a host call (its whole share)" ;;
    spin) label="16 conns spinning until a 100 ms deadline (its whole share)" ;;
    noshare) label="64 conns sleeping, share = all 64 slots (no fair share; 1 round)" ;;
  esac
  p99=$(median "$f" 4)
  ratio=$(awk -v a="$p99" -v b="$BASE_P99" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
  bad=$(awk '{ s += $5 } END { print s + 0 }' "$f")
  echo "| $label | $(median "$f" 1) | $(median "$f" 2) / $(median "$f" 3) / $p99 | $ratio | $bad |"
done
echo
echo "Invocations refused by the fair-share server (all reasons, whole run): $REFUSED"
