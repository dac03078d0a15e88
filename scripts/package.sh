#!/usr/bin/env bash
# Build the release tarball the runbooks install:
#
#   dist/tensor-wasm-linux-x86_64.tar.gz         extracts into /usr/local/lib/tensor-wasm/vX.Y.Z/
#   dist/tensor-wasm-linux-x86_64.tar.gz.sha256  `sha256sum -c` format
#
# Archive layout (paths at the top level, no leading directory):
#   bin/tensor-wasm
#   share/tensor-wasm.service  share/tensor-wasm.sysusers
#   share/tensor-wasm.logrotate  share/env.example
#   share/prometheus/alerts.yml  share/grafana/tensor-wasm-dashboard.json
#   share/doc/tensor-wasm/{README,CHANGELOG,SLO,BACKUP-RESTORE,...}.md
#   share/doc/tensor-wasm/runbooks/*.md
#
# Usage: scripts/package.sh [--binary PATH] [--out DIR] [--version vX.Y.Z]
#   --binary   package this binary instead of running
#              `cargo build --release --locked -p tensor-wasm`
#   --out      output directory (default: dist)
#   --version  override the version read from `cargo metadata`
# The binary's `--version` must print `tensor-wasm vX.Y.Z` for the same
# version, so a tarball can never be labelled with the wrong release.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "package.sh: error: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BINARY=""
OUT="$ROOT/dist"
VERSION=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BINARY=${2:?--binary needs a path}; shift 2 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --version) VERSION=${2:?--version needs vX.Y.Z}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

# --- version --------------------------------------------------------------
if [ -z "$VERSION" ]; then
  if command -v cargo >/dev/null 2>&1; then
    # shellcheck disable=SC2015  # any failure falls through to Cargo.toml
    VERSION=$(cd "$ROOT" && cargo metadata --no-deps --format-version 1 2>/dev/null \
      | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="tensor-wasm"))' \
      2>/dev/null || true)
  fi
  if [ -z "$VERSION" ]; then
    # No cargo (or no python3): the workspace version in Cargo.toml.
    VERSION=$(awk '/^\[workspace\.package\]/{w=1;next} /^\[/{w=0} w && /^version *=/{gsub(/[" ]/,"",$0); sub(/^version=/,"",$0); print; exit}' "$ROOT/Cargo.toml")
  fi
  [ -n "$VERSION" ] || die "could not determine the version (cargo metadata and Cargo.toml both failed)"
  VERSION="v${VERSION#v}"
fi
[[ "$VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+([-+].*)?$ ]] || die "version '$VERSION' is not vX.Y.Z"

# --- binary ---------------------------------------------------------------
if [ -z "$BINARY" ]; then
  echo "package.sh: building tensor-wasm $VERSION (cargo build --release --locked -p tensor-wasm)" >&2
  (cd "$ROOT" && cargo build --release --locked -p tensor-wasm)
  BINARY="${CARGO_TARGET_DIR:-$ROOT/target}/release/tensor-wasm"
fi
[ -f "$BINARY" ] || die "binary '$BINARY' not found"
[ -x "$BINARY" ] || die "binary '$BINARY' is not executable"
REPORTED=$("$BINARY" --version 2>/dev/null | head -n 1 || true)
case "$REPORTED" in
  "tensor-wasm $VERSION"|"tensor-wasm $VERSION "*) ;;
  *) die "'$BINARY --version' printed '$REPORTED', expected 'tensor-wasm $VERSION'" ;;
esac

# --- stage ----------------------------------------------------------------
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
install -D -m 0755 "$BINARY" "$STAGE/bin/tensor-wasm"
for f in tensor-wasm.service tensor-wasm.sysusers tensor-wasm.logrotate env.example; do
  [ -f "$ROOT/share/$f" ] || die "missing share/$f"
  install -D -m 0644 "$ROOT/share/$f" "$STAGE/share/$f"
done
install -D -m 0644 "$ROOT/deploy/prometheus/alerts.yml" "$STAGE/share/prometheus/alerts.yml"
install -D -m 0644 "$ROOT/deploy/grafana/tensor-wasm-dashboard.json" "$STAGE/share/grafana/tensor-wasm-dashboard.json"

DOC="$STAGE/share/doc/tensor-wasm"
[ -f "$ROOT/CHANGELOG.md" ] || die "missing CHANGELOG.md"
[ -f "$ROOT/docs/runbooks/README.md" ] || die "missing docs/runbooks/"
missing=()
for f in README.md CHANGELOG.md SLO.md BACKUP-RESTORE.md AUDIT-LOG.md ARCHITECTURE.md \
         SNAPSHOT-COMPATIBILITY.md STORE-COMPATIBILITY.md COLD-START.md BENCHMARKS.md LICENSE \
         crates/tensor-wasm-api/API.md crates/tensor-wasm-snapshot/FORMAT.md; do
  if [ -f "$ROOT/$f" ]; then
    install -D -m 0644 "$ROOT/$f" "$DOC/$(basename "$f")"
  else
    missing+=("$f")
  fi
done
for f in "$ROOT"/docs/runbooks/*.md; do
  install -D -m 0644 "$f" "$DOC/runbooks/$(basename "$f")"
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "package.sh: note: not in the tree, not packaged: ${missing[*]}" >&2
fi

# --- archive (reproducible: sorted, numeric root owner, fixed mtime) -------
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}
NAME=tensor-wasm-linux-x86_64.tar.gz
mkdir -p "$OUT"
tar -C "$STAGE" --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@$EPOCH" -cf - bin share | gzip -n -9 > "$OUT/$NAME.tmp"
mv "$OUT/$NAME.tmp" "$OUT/$NAME"
(cd "$OUT" && sha256sum "$NAME" > "$NAME.sha256")

# --- self-check: install it the way the runbooks do ----------------------
CHECK=$(mktemp -d)
trap 'rm -rf "$STAGE" "$CHECK"' EXIT
(cd "$OUT" && sha256sum -c --quiet "$NAME.sha256")
install -d "$CHECK/usr/local/lib/tensor-wasm/$VERSION"
tar -C "$CHECK/usr/local/lib/tensor-wasm/$VERSION" -xz < "$OUT/$NAME"
for f in bin/tensor-wasm share/tensor-wasm.service share/doc/tensor-wasm/CHANGELOG.md \
         share/doc/tensor-wasm/runbooks/rollback.md share/doc/tensor-wasm/runbooks/disaster-recovery.md; do
  [ -e "$CHECK/usr/local/lib/tensor-wasm/$VERSION/$f" ] || die "archive lacks $f"
done
GOT=$("$CHECK/usr/local/lib/tensor-wasm/$VERSION/bin/tensor-wasm" --version | head -n 1)
[ "$GOT" = "$REPORTED" ] || die "extracted binary printed '$GOT', expected '$REPORTED'"

echo "package.sh: $VERSION → $OUT/$NAME ($(du -h "$OUT/$NAME" | cut -f1)), sha256 $(cut -d' ' -f1 "$OUT/$NAME.sha256")"
echo "package.sh: install with: sudo install -d /usr/local/lib/tensor-wasm/$VERSION && sudo tar -C /usr/local/lib/tensor-wasm/$VERSION -xzf $NAME"
