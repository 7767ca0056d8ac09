#!/usr/bin/env bash
# Build KEDA's operator and metrics adapter from the Go module proxy (no release downloads).
#
# Called by `make keda-bins` (never by `make test`, CI or .ci/run: the benchmark that
# needs KEDA, issue #13, asks for it). Produces, under $CORRAL_CACHE/keda-v$KEDA_VERSION/:
#   bin/keda           github.com/kedacore/keda/v2/cmd/operator
#   bin/keda-adapter   github.com/kedacore/keda/v2/cmd/adapter   (external metrics API server)
#   crds/*.yaml        config/crd/bases/*.yaml from the module source
#   build-stats.txt    one line per real build: wall times and peak RSS (newest last)
# A stamp records what was built from what, so a second run with the same inputs
# returns in about a second.
#
# The wrapper module (tools/keda/go.mod) requires github.com/kedacore/keda/v2 and copies
# the `replace` and `exclude` lines of the go.mod the proxy serves for that version: Go
# ignores both in a dependency, and KEDA's replace of nexus-proto-annotations is needed
# for its module graph to resolve to the versions KEDA itself builds with.
#
# Environment: KEDA_VERSION (default 2.21.0), CORRAL_CACHE (default ~/.cache/corral),
# CORRAL_BUILD_JOBS (go build -p, default 2), FORCE=1 to rebuild. Run it with low
# priority on a shared machine: `nice -n 19 ionice -c3 make keda-bins`.
set -euo pipefail

KEDA_VERSION="${KEDA_VERSION:-2.21.0}"
KEDA_VERSION="${KEDA_VERSION#v}"
CORRAL_CACHE="${CORRAL_CACHE:-$HOME/.cache/corral}"
JOBS="${CORRAL_BUILD_JOBS:-2}"
MODULE=github.com/kedacore/keda/v2

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$CORRAL_CACHE/keda-v$KEDA_VERSION"
BIN="$OUT/bin"
CRDS="$OUT/crds"
STATS="$OUT/build-stats.txt"
STAMP="$BIN/.stamp"
# binary name -> package (the names KEDA's own Makefile gives them)
BINARIES=(keda keda-adapter)
declare -A PKG=([keda]="$MODULE/cmd/operator" [keda-adapter]="$MODULE/cmd/adapter")

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
PYTHON="${PYTHON:-$(command -v python3)}"

log() { printf '[keda-bins %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[keda-bins] ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "go not found on PATH; install Go >= 1.26 (KEDA v$KEDA_VERSION declares its go version in go.mod)"
[[ -n "$PYTHON" ]] || die "python3 not found on PATH"

stamp_key() {
    {
        echo "keda=$KEDA_VERSION"
        go env GOVERSION GOOS GOARCH
        cat "$HERE/build.sh"
    } | sha256sum | cut -d' ' -f1
}

all_present() {
    local b
    for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
    compgen -G "$CRDS/*.yaml" >/dev/null
}

KEY="$(stamp_key)"
if [[ "${FORCE:-0}" != 1 ]] && all_present && [[ -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
    log "up to date: $BIN (KEDA $KEDA_VERSION)"
    [[ -f "$STATS" ]] && tail -1 "$STATS" | sed 's/^/[keda-bins] last build: /'
    exit 0
fi

mkdir -p "$BIN" "$CRDS"
TMP="$(mktemp -d "$OUT/.build.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# ---- wrapper module --------------------------------------------------------------------
log "resolving $MODULE@v$KEDA_VERSION from the module proxy"
read -r served_mod src_dir < <(cd "$TMP" && go mod download -json "$MODULE@v$KEDA_VERSION" |
    "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if d.get("Error") else print(d["GoMod"], d["Dir"])') || true
[[ -n "${served_mod:-}" && -d "${src_dir:-}" ]] ||
    die "could not download $MODULE@v$KEDA_VERSION from the module proxy (GOPROXY=$(go env GOPROXY)); check the version and the network"
go_need="$(go mod edit -json "$served_mod" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Go"])')"
go_have="$(go env GOVERSION)"; go_have="${go_have#go}"
if [[ "$(printf '%s\n%s\n' "$go_need" "$go_have" | sort -V | head -1)" != "$go_need" ]]; then
    die "KEDA v$KEDA_VERSION needs Go >= $go_need but the local Go is $go_have; install a newer Go or pin an older KEDA_VERSION"
fi

cat > "$TMP/go.mod" <<EOF
// Written by tools/keda/build.sh; DO NOT EDIT (change KEDA_VERSION there).

module corral.local/tools/keda

go $go_need

require $MODULE v$KEDA_VERSION
EOF
# Copy KEDA's replace and exclude directives, read from the served go.mod (not typed here).
go mod edit -json "$served_mod" | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
def ref(m):
    return m["Path"] + ("@" + m["Version"] if m.get("Version") else "")
for r in d.get("Replace") or []:
    if not r["New"].get("Version"):
        sys.exit("KEDA go.mod replaces %s with a local path; cannot be copied" % r["Old"]["Path"])
    print("-replace=%s=%s" % (ref(r["Old"]), ref(r["New"])))
for e in d.get("Exclude") or []:
    print("-exclude=%s" % ref(e))
' > "$TMP/edits" || die "could not read replace/exclude lines from $served_mod"
edits=()
mapfile -t edits < "$TMP/edits"
tools=()
for b in "${BINARIES[@]}"; do tools+=("-tool=${PKG[$b]}"); done
go mod edit "${edits[@]}" "${tools[@]}" "$TMP/go.mod"
cp "$TMP/go.mod" "$HERE/go.mod"
log "go.mod: ${#edits[@]} directive(s) copied from KEDA's go.mod: ${edits[*]:-none}"

log "go mod tidy (downloads KEDA's dependencies on a cold module cache)"
tidy_started=$SECONDS
(cd "$HERE" && go mod tidy) || die "go mod tidy failed in tools/keda (see the go output above)"
tidy_s=$((SECONDS - tidy_started))

# ---- build -----------------------------------------------------------------------------
ldflags="-s -w -X $MODULE/version.Version=$KEDA_VERSION -X $MODULE/version.GitCommit="
TIME=()
if [[ -x /usr/bin/time ]] && /usr/bin/time -v true 2>/dev/null; then TIME=(/usr/bin/time -v -o); fi

peak_kb=0
times=""
build_one() {
    local name="$1" pkg="$2" started rss
    started=$SECONDS
    log "building $name ($pkg) with -p $JOBS"
    if ((${#TIME[@]})); then
        (cd "$HERE" && "${TIME[@]}" "$TMP/$name.time" go build -p "$JOBS" -trimpath -ldflags "$ldflags" -o "$TMP/$name" "$pkg") ||
            die "building $name failed: (cd tools/keda && go build -p $JOBS -trimpath -ldflags '$ldflags' -o $name $pkg)"
        # GNU time's maximum resident set size is the largest single process of the build
        # (a compile or the link), which is what bounds the memory a build needs.
        rss="$(awk -F': ' '/Maximum resident set size/{print $2}' "$TMP/$name.time")"
        ((rss > peak_kb)) && peak_kb=$rss
    else
        (cd "$HERE" && go build -p "$JOBS" -trimpath -ldflags "$ldflags" -o "$TMP/$name" "$pkg") ||
            die "building $name failed: (cd tools/keda && go build -p $JOBS -trimpath -ldflags '$ldflags' -o $name $pkg)"
    fi
    mv -f "$TMP/$name" "$BIN/$name"
    log "built $name in $((SECONDS - started))s ($(du -h "$BIN/$name" | cut -f1))"
    times+="${times:+, }$name $((SECONDS - started))s"
}

rm -f "$STAMP"
total=$SECONDS
for b in "${BINARIES[@]}"; do build_one "$b" "${PKG[$b]}"; done
build_s=$((SECONDS - total))

rm -f "$CRDS"/*.yaml
install -m 0644 "$src_dir"/config/crd/bases/*.yaml "$CRDS/"
log "CRDs: $(cd "$CRDS" && ls | tr '\n' ' ')"

peak="unmeasured (no GNU /usr/bin/time)"
((peak_kb > 0)) && peak="$((peak_kb / 1024)) MiB"
# A history, not just the last build: a warm rebuild (links only) must not hide the
# cold build's figures.
line="$(date -u +%Y-%m-%dT%H:%M:%SZ) KEDA v$KEDA_VERSION $(go env GOVERSION) -p $JOBS: go mod tidy ${tidy_s}s;"
line+=" go build ${build_s}s wall ($times); peak RSS of one build process $peak"
echo "$line" >> "$STATS"
log "$line"

echo "$(stamp_key)" > "$TMP/stamp" && mv -f "$TMP/stamp" "$STAMP"
log "binaries in $BIN, CRDs in $CRDS"
