#!/usr/bin/env bash
# shellcheck disable=SC2016  # single-quoted bash -c bodies expand in the inner shell
# Validate the deployment artifacts without deploying anything:
#   YAML/JSON well-formed, Prometheus rules (check + unit tests) and config,
#   the systemd unit, the Helm chart (lint + render + assertions), the
#   compose file, and the release tarball layout (with a stand-in binary).
# A check whose tool is missing is skipped with a message, never failed.
#
# Usage: scripts/validate-deploy.sh [--install-tools]
#   --install-tools  apt-get install prometheus (promtool) and pip-install
#                    helm-python-sdk (an offline Helm renderer) into
#                    ${XDG_CACHE_HOME:-~/.cache}/tensor-wasm-validate/venv
# Env: HELM_PYTHON=/path/to/python with helm_python importable.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tensor-wasm-validate"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PASSED=0 FAILED=0 SKIPPED=0

ok()   { PASSED=$((PASSED+1));  echo "PASS  $1"; }
bad()  { FAILED=$((FAILED+1));  echo "FAIL  $1" >&2; }
skip() { SKIPPED=$((SKIPPED+1)); echo "SKIP  $1"; }
run()  { # run NAME CMD... : PASS/FAIL on exit status, output shown on failure
  local name=$1; shift
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name"; printf '      %s\n' "${out//$'\n'/$'\n'      }" >&2; fi
}

if [ "${1:-}" = "--install-tools" ]; then
  command -v promtool >/dev/null || { apt-get update -qq && apt-get install -y -qq prometheus >/dev/null; }
  if [ ! -x "$CACHE/venv/bin/python" ]; then python3 -m venv "$CACHE/venv"; fi
  "$CACHE/venv/bin/pip" install -q helm-python-sdk pyyaml
fi

# --- 1. YAML and JSON well-formed ------------------------------------------------
YAML_FILES=(docker-compose.yml deploy/prometheus/prometheus.yml deploy/prometheus/alerts.yml
            deploy/prometheus/alerts_test.yml deploy/grafana/provisioning/datasources/prometheus.yml
            deploy/grafana/provisioning/dashboards/tensor-wasm.yml
            deploy/helm/tensor-wasm/Chart.yaml deploy/helm/tensor-wasm/values.yaml
            deploy/helm/tensor-wasm/files/alerts.yml)
PY=""
for p in "${HELM_PYTHON:-}" "$CACHE/venv/bin/python" python3; do
  if [ -n "$p" ] && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done
if [ -n "$PY" ]; then
  run "YAML well-formed (${#YAML_FILES[@]} files)" "$PY" -c '
import sys, yaml
for f in sys.argv[1:]:
    with open(f) as fh:
        list(yaml.safe_load_all(fh))' "${YAML_FILES[@]}"
else
  skip "YAML well-formed: python3 with PyYAML not found"
fi
if command -v python3 >/dev/null; then
  run "Grafana dashboard JSON parses, top row = SLO stats" python3 -c '
import json
d = json.load(open("deploy/grafana/tensor-wasm-dashboard.json"))
top = [p for p in d["panels"] if p["gridPos"]["y"] == 0]
exprs = " ".join(t["expr"] for p in top for t in p["targets"])
assert all(p["type"] == "stat" for p in top), "top row must be stat panels"
for name in ("availability_http", "error_rate_invoke", "latency_invoke_p95_seconds",
             "latency_dispatch_p95_seconds", "latency_healthz_p95_seconds"):
    assert name in exprs, name + " missing from the top row"'
else
  skip "Grafana dashboard JSON: python3 not found"
fi

# --- 2. Prometheus ------------------------------------------------------------------
run "chart's files/alerts.yml identical to deploy/prometheus/alerts.yml" \
  cmp deploy/prometheus/alerts.yml deploy/helm/tensor-wasm/files/alerts.yml
if command -v promtool >/dev/null; then
  run "promtool check rules deploy/prometheus/alerts.yml" promtool check rules deploy/prometheus/alerts.yml
  run "promtool test rules deploy/prometheus/alerts_test.yml" promtool test rules deploy/prometheus/alerts_test.yml
  # prometheus.yml names the rule file by its in-container path.
  sed "s#/etc/prometheus/alerts.yml#$ROOT/deploy/prometheus/alerts.yml#" \
    deploy/prometheus/prometheus.yml > "$TMP/prometheus.yml"
  run "promtool check config deploy/prometheus/prometheus.yml" promtool check config "$TMP/prometheus.yml"
  # Every alert has a runbook, and every runbook_url points at a file.
  run "every alert's runbook_url names an existing runbook" bash -c '
    urls=$(grep -o "runbook_url: .*" deploy/prometheus/alerts.yml | sed "s#.*/docs/runbooks/##" | sort -u)
    [ -n "$urls" ] || exit 1
    for u in $urls; do test -f "docs/runbooks/$u" || { echo "missing docs/runbooks/$u"; exit 1; }; done'
else
  skip "promtool checks: promtool not found (apt-get install prometheus, or --install-tools)"
fi

# --- 3. systemd unit ----------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  # verify needs ExecStart to exist: point it at a stand-in executable.
  printf '#!/bin/sh\necho "tensor-wasm v0.0.0"\n' > "$TMP/tensor-wasm"; chmod +x "$TMP/tensor-wasm"
  sed "s#^ExecStart=/usr/local/bin/tensor-wasm #ExecStart=$TMP/tensor-wasm #" \
    share/tensor-wasm.service > "$TMP/tensor-wasm.service"
  run "systemd-analyze verify share/tensor-wasm.service" bash -c "
    out=\$(systemd-analyze verify '$TMP/tensor-wasm.service' 2>&1); rc=\$?
    echo \"\$out\"; [ \$rc -eq 0 ] && ! echo \"\$out\" | grep -q 'tensor-wasm.service'"
  run "unit has the runbook contract's settings" bash -c '
    for l in "ExecStart=/usr/local/bin/tensor-wasm serve" "EnvironmentFile=/etc/tensor-wasm/env" \
             "User=tensor-wasm" "StateDirectory=tensor-wasm" "NoNewPrivileges=yes" "ProtectSystem=strict" \
             "ReadWritePaths=/var/lib/tensor-wasm" "Restart=on-failure" "KillSignal=SIGTERM"; do
      grep -qxF "$l" share/tensor-wasm.service || { echo "missing: $l"; exit 1; }
    done'
else
  skip "systemd-analyze verify: systemd-analyze not found"
fi

# --- 4. Helm chart ------------------------------------------------------------------
CHART=deploy/helm/tensor-wasm
if command -v helm >/dev/null; then
  run "helm lint --strict $CHART" helm lint --strict "$CHART"
  run "helm template (defaults)" helm template tensor-wasm "$CHART" -n tensor-wasm
  run "helm template (existingSecret, gpu, monitoring)" helm template tensor-wasm "$CHART" -n tensor-wasm \
    --set auth.existingSecret=tensor-wasm-tokens --set gpu.enabled=true \
    --set serviceMonitor.enabled=true --set prometheusRule.enabled=true
  if helm template tensor-wasm "$CHART" --set replicaCount=2 >/dev/null 2>&1; then
    bad "helm template refuses replicaCount=2"; else ok "helm template refuses replicaCount=2"; fi
else
  HPY=""
  for p in "${HELM_PYTHON:-}" "$CACHE/venv/bin/python" python3; do
    if [ -n "$p" ] && "$p" -c 'import helm_python, yaml' 2>/dev/null; then HPY=$p; break; fi
  done
  if [ -n "$HPY" ]; then
    run "Helm chart: lint (strict) and render with assertions (helm-python-sdk)" "$HPY" - "$CHART" <<'PYEOF'
import sys, yaml
from helm_python.chart import Chart, lint
path = sys.argv[1]
report = lint(path, strict=True)
errs = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
assert not errs, f"lint: {errs}"
def render(values):
    with Chart.load(path) as c:
        out = c.render(values=values, name="tensor-wasm", namespace="tensor-wasm")
    docs = {}
    for k, s in out.items():
        if k.endswith(".txt"):
            continue
        for d in yaml.safe_load_all(s):
            if d:
                docs[(d["kind"], d["metadata"]["name"])] = d
    return docs, out
# defaults: a generated admin token (never dev mode by accident), persistence on
docs, out = render({})
dep = docs[("Deployment", "tensor-wasm")]
assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
c = dep["spec"]["template"]["spec"]["containers"][0]
assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
env = {e["name"]: e for e in c["env"]}
ref = env["TENSOR_WASM_API_TOKENS"]["valueFrom"]["secretKeyRef"]
assert ref["name"] == "tensor-wasm-tokens" and ref["key"] == "TENSOR_WASM_API_TOKENS" and "optional" not in ref
gen = docs[("Secret", "tensor-wasm-tokens")]["stringData"]["TENSOR_WASM_API_TOKENS"]
tok, scope = gen.rsplit(":", 1)
assert scope == "tenant=*" and len(tok) == 48 and tok.isalnum(), gen
assert ("PersistentVolumeClaim", "tensor-wasm-data") in docs
assert ("Service", "tensor-wasm") in docs
notes = out["tensor-wasm/templates/NOTES.txt"]
assert "DEV MODE" not in notes and "generated an admin token" in notes and "base64 -d" in notes
# dev mode only when asked for: optional Secret reference, no Secret, a warning
docs, out = render({"auth": {"devMode": True}})
c = docs[("Deployment", "tensor-wasm")]["spec"]["template"]["spec"]["containers"][0]
env = {e["name"]: e for e in c["env"]}
assert env["TENSOR_WASM_API_TOKENS"]["valueFrom"]["secretKeyRef"].get("optional") is True
assert ("Secret", "tensor-wasm-tokens") not in docs
assert "DEV MODE" in out["tensor-wasm/templates/NOTES.txt"]
try:
    render({"auth": {"devMode": True, "tokens": "t-0123456789abcdef:tenant=*"}})
except Exception as e:
    assert "devMode" in str(e), e
else:
    raise AssertionError("devMode with tokens rendered")
# tokens rendered into the Secret
docs, _ = render({"auth": {"tokens": "t-0123456789abcdef:tenant=*"}})
sec = docs[("Secret", "tensor-wasm-tokens")]
assert sec["stringData"]["TENSOR_WASM_API_TOKENS"] == "t-0123456789abcdef:tenant=*"
# production shape
docs, _ = render({"auth": {"existingSecret": "tensor-wasm-tokens"}, "gpu": {"enabled": True},
                  "serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                  "persistence": {"existingClaim": "tensor-wasm-state-restored"},
                  "extraEnv": [{"name": "X", "value": "1"}]})
assert ("Secret", "tensor-wasm-tokens") not in docs
dep = docs[("Deployment", "tensor-wasm")]
c = dep["spec"]["template"]["spec"]["containers"][0]
assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
env = {e["name"]: e for e in c["env"]}
assert "optional" not in env["TENSOR_WASM_API_TOKENS"]["valueFrom"]["secretKeyRef"]
assert env["X"]["value"] == "1" and env["TENSOR_WASM_GPU"]["value"] == "cuda"
assert dep["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "tensor-wasm-state-restored"
assert ("PersistentVolumeClaim", "tensor-wasm-data") not in docs
rules = docs[("PrometheusRule", "tensor-wasm")]["spec"]["groups"]
assert sum(len(g["rules"]) for g in rules) == sum(len(g["rules"]) for g in yaml.safe_load(open("deploy/prometheus/alerts.yml"))["groups"])
assert ("ServiceMonitor", "tensor-wasm") in docs
# no persistence: emptyDir, rolling update
docs, _ = render({"persistence": {"enabled": False}})
dep = docs[("Deployment", "tensor-wasm")]
assert dep["spec"]["strategy"]["type"] == "RollingUpdate" and "emptyDir" in dep["spec"]["template"]["spec"]["volumes"][0]
# more than one replica is refused
try:
    render({"replicaCount": 2})
except Exception as e:
    assert "single writer" in str(e), e
else:
    raise AssertionError("replicaCount=2 rendered")
PYEOF
  else
    skip "Helm chart render: neither helm nor helm-python-sdk found (--install-tools installs the latter)"
  fi
fi

# --- 5. docker compose / Dockerfile -----------------------------------------------
if docker compose version >/dev/null 2>&1; then
  run "docker compose config" env TENSOR_WASM_ENV_FILE=/dev/null docker compose -f docker-compose.yml config -q
else
  skip "docker compose config: docker compose plugin not found"
fi
if command -v hadolint >/dev/null; then
  run "hadolint Dockerfile" hadolint Dockerfile
else
  skip "hadolint Dockerfile: hadolint not found"
fi

# --- 6. scripts ---------------------------------------------------------------------
run "bash -n scripts/*.sh" bash -c 'for f in scripts/package.sh scripts/validate-deploy.sh; do bash -n "$f" || exit 1; done'
if command -v shellcheck >/dev/null; then
  run "shellcheck scripts/package.sh scripts/validate-deploy.sh" shellcheck scripts/package.sh scripts/validate-deploy.sh
else
  skip "shellcheck: shellcheck not found"
fi
# Release tarball layout, with a stand-in binary that reports the workspace version.
V=$(awk '/^\[workspace\.package\]/{w=1;next} /^\[/{w=0} w && /^version *=/{gsub(/[" ]/,"");sub(/^version=/,"");print;exit}' Cargo.toml)
printf '#!/bin/sh\necho "tensor-wasm v%s"\n' "$V" > "$TMP/stand-in"; chmod +x "$TMP/stand-in"
run "scripts/package.sh --binary <stand-in>: tarball layout and checksum" bash -c "
  scripts/package.sh --binary '$TMP/stand-in' --out '$TMP/dist' --version 'v$V' >/dev/null &&
  (cd '$TMP/dist' && sha256sum -c tensor-wasm-linux-x86_64.tar.gz.sha256) &&
  tar -tzf '$TMP/dist/tensor-wasm-linux-x86_64.tar.gz' | grep -qx bin/tensor-wasm &&
  tar -tzf '$TMP/dist/tensor-wasm-linux-x86_64.tar.gz' | grep -qx share/tensor-wasm.service"

# --- summary ------------------------------------------------------------------------
echo "validate-deploy: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]
