#!/usr/bin/env bash
# Build promtool, Prometheus' own checker for rule files, from the Go module proxy.
#
# Called by `make promtool` (and by `make test-e2e` / `make test` through it): the e2e
# tier runs `promtool check rules` and `promtool test rules` on the chart's
# PrometheusRule (tests/e2e/test_prometheus_rules.py). Same approach as
# tools/k8s/build.sh: a wrapper module (go.mod beside this script, rewritten on every
# non-cached run; commit it when it changes) with a `tool` line, built with the local Go
# (GOTOOLCHAIN=local), no release download.
#
# Produces $CORRAL_CACHE/promtool-v$PROMTOOL_VERSION/bin/promtool. A stamp records what
# it was built from, so a second run with the same inputs returns at once.
#
# Environment: PROMTOOL_VERSION (the Prometheus release, e.g. 3.16.0; the Makefile sets
# it and is the one place it is pinned), CORRAL_CACHE (default ~/.cache/corral),
# CORRAL_BUILD_JOBS (go build -p, default 2), FORCE=1 to rebuild.
set -euo pipefail

[[ -n "${PROMTOOL_VERSION:-}" ]] || { echo "[promtool] ERROR: PROMTOOL_VERSION is not set; run \`make promtool\`" >&2; exit 1; }
PROMTOOL_VERSION="${PROMTOOL_VERSION#v}"
CORRAL_CACHE="${CORRAL_CACHE:-$HOME/.cache/corral}"
JOBS="${CORRAL_BUILD_JOBS:-2}"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$CORRAL_CACHE/promtool-v$PROMTOOL_VERSION/bin"
STAMP="$BIN/.stamp"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '[promtool %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[promtool] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go not found on PATH; install Go >= 1.26"

# Prometheus 3.x publishes its Go module as github.com/prometheus/prometheus
# v0.3MM.P for release 3.MM.P (3.16.0 -> v0.316.0).
IFS=. read -r major minor patch <<<"$PROMTOOL_VERSION"
[[ "$major" == 3 && -n "$minor" && -n "$patch" ]] || die "PROMTOOL_VERSION must be a Prometheus 3.x release like 3.16.0 (got $PROMTOOL_VERSION)"
MODULE_VERSION="$(printf 'v0.%d%02d.%d' "$major" "$minor" "$patch")"

stamp_key() {
    { echo "prometheus=$PROMTOOL_VERSION module=$MODULE_VERSION"; go env GOVERSION GOOS GOARCH; cat "$HERE/build.sh"; } |
        sha256sum | cut -d' ' -f1
}

KEY="$(stamp_key)"
if [[ "${FORCE:-0}" != 1 && -x "$BIN/promtool" && -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
    log "up to date: $BIN/promtool (Prometheus $PROMTOOL_VERSION)"
    exit 0
fi

mkdir -p "$BIN"
TMP="$(mktemp -d "$BIN/../.build.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

cat > "$HERE/go.mod" <<MOD
// Written by tools/promtool/build.sh; DO NOT EDIT (change PROMTOOL_VERSION in the Makefile).

module corral.local/tools/promtool

go 1.26.0

require github.com/prometheus/prometheus $MODULE_VERSION

tool github.com/prometheus/prometheus/cmd/promtool
MOD

# Refuse early, with the fix, instead of letting Go try to download a toolchain.
need="$(cd "$TMP" && go mod download -json "github.com/prometheus/prometheus@$MODULE_VERSION" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d.get("Error")) if d.get("Error") else print(open(d["GoMod"]).read())' |
    awk '$1=="go"{print $2; exit}')" || die "github.com/prometheus/prometheus@$MODULE_VERSION is not on the module proxy"
have="$(go env GOVERSION)"; have="${have#go}"
if [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]]; then
    die "Prometheus $PROMTOOL_VERSION needs Go >= $need but the local Go is $have; install a newer Go or pin an older PROMTOOL_VERSION"
fi
sed -i "s/^go 1.26.0$/go $need/" "$HERE/go.mod"

log "go mod tidy (github.com/prometheus/prometheus@$MODULE_VERSION)"
(cd "$HERE" && go mod tidy) || die "go mod tidy failed in tools/promtool"

rm -f "$STAMP"
started=$SECONDS
log "building promtool $PROMTOOL_VERSION"
# The same version variables as Prometheus' own release build (promu), so
# `promtool --version` names the release; the module zip has no git metadata.
ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMTOOL_VERSION"
ldflags+=" -X github.com/prometheus/common/version.Revision=module-$MODULE_VERSION"
ldflags+=" -X github.com/prometheus/common/version.Branch=none"
ldflags+=" -X github.com/prometheus/common/version.BuildUser=corral"
ldflags+=" -X github.com/prometheus/common/version.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"
(cd "$HERE" && go build -p "$JOBS" -trimpath -ldflags "$ldflags" -o "$TMP/promtool" github.com/prometheus/prometheus/cmd/promtool) ||
    die "building promtool failed (see the go output above)"
mv -f "$TMP/promtool" "$BIN/promtool"
echo "$KEY" > "$TMP/stamp" && mv -f "$TMP/stamp" "$STAMP"
log "built promtool in $((SECONDS - started))s ($(du -h "$BIN/promtool" | cut -f1)) into $BIN"
"$BIN/promtool" --version 2>&1 | head -1 || true
