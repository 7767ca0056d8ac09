#!/usr/bin/env bash
# Fetch the Prometheus Operator's CRDs (ServiceMonitor, PodMonitor,
# PrometheusRule) from the Go module proxy, for the server-side dry run of the
# chart's observability kit (tests/e2e/test_chart.py installs them).
#
# They ship inside the Go module github.com/prometheus-operator/prometheus-operator
# (example/prometheus-operator-crd/), so `go mod download` fetches them from the
# same proxy as the Kubernetes build, checked against sum.golang.org;
# nothing else is downloaded. Called by `make monitoring-crds` (and test-e2e).
#
# Produces $CORRAL_CACHE/prometheus-operator-v$PROMETHEUS_OPERATOR_VERSION/crds/*.yaml.
set -euo pipefail

[[ -n "${PROMETHEUS_OPERATOR_VERSION:-}" ]] || { echo "[monitoring-crds] ERROR: PROMETHEUS_OPERATOR_VERSION is not set; run \`make monitoring-crds\`" >&2; exit 1; }
VERSION="v${PROMETHEUS_OPERATOR_VERSION#v}"
CORRAL_CACHE="${CORRAL_CACHE:-$HOME/.cache/corral}"
OUT="$CORRAL_CACHE/prometheus-operator-$VERSION/crds"
KINDS=(servicemonitors podmonitors prometheusrules)

if [[ "${FORCE:-0}" != 1 && -f "$OUT/.stamp" ]]; then
    echo "[monitoring-crds] up to date: $OUT"
    exit 0
fi
command -v go >/dev/null || { echo "[monitoring-crds] ERROR: go not found on PATH" >&2; exit 1; }

dir="$(cd "$(mktemp -d)" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$VERSION" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if d.get("Error") else print(d["Dir"])')"
mkdir -p "$OUT"
for kind in "${KINDS[@]}"; do
    install -m 0644 "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$OUT/"
done
echo "github.com/prometheus-operator/prometheus-operator@$VERSION" > "$OUT/.stamp"
echo "[monitoring-crds] $OUT: ${KINDS[*]}"
