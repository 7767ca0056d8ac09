#!/usr/bin/env bash
# Fetch promtool, Prometheus' own checker for rule files, from Debian's `prometheus`
# package.
#
# Called by `make promtool` (and by `make test-e2e` / `make test` through it): the e2e
# tier runs `promtool check rules` and `promtool test rules` on the chart's
# PrometheusRule (tests/e2e/test_chart_monitoring.py). It used to be built from the Go
# module proxy, which took 70 minutes cold on CI's 2-core machine; the Debian package
# is one 19 MB download, fetched and unpacked in seconds (tools/promtool/README.md).
#
# `apt-get download` (no root needed, nothing is installed on the system) fetches the
# package into a temporary directory; only ./usr/bin/promtool is unpacked from it, into
# $CORRAL_CACHE/promtool-v$PROMTOOL_VERSION/bin/promtool. A stamp records what it came
# from, so a second run returns at once, without apt.
#
# The pin is Prometheus' own version (PROMTOOL_VERSION, e.g. 2.42.0): any Debian
# revision of it will do (2.42.0+ds-5+deb12u1 today). Debian's lists offer only the
# newest revision of a package, so an exact revision pin would fail on every fresh
# machine the day a point release ships +deb12u2. The newest offered revision of the
# pinned version is taken; PROMTOOL_DEB_VERSION names one exactly instead.
#
# Environment: PROMTOOL_VERSION (the Makefile sets it and is the one place it is
# pinned), PROMTOOL_DEB_VERSION (optional: one exact Debian version of it),
# CORRAL_CACHE (default ~/.cache/corral), FORCE=1 to fetch again.
set -euo pipefail

log() { printf '[promtool %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[promtool] ERROR: %s\n' "$*" >&2; exit 1; }

[[ -n "${PROMTOOL_VERSION:-}" ]] || die "PROMTOOL_VERSION is not set; run \`make promtool\`"
UPSTREAM="$PROMTOOL_VERSION"
CORRAL_CACHE="${CORRAL_CACHE:-$HOME/.cache/corral}"
BIN="$CORRAL_CACHE/promtool-v$UPSTREAM/bin"
STAMP="$BIN/.stamp"
KEY="debian prometheus $UPSTREAM"
if [[ -n "${PROMTOOL_DEB_VERSION:-}" && "${PROMTOOL_DEB_VERSION}" != "$UPSTREAM"[+~-]* ]]; then
    die "PROMTOOL_DEB_VERSION=$PROMTOOL_DEB_VERSION is not a Debian version of Prometheus $UPSTREAM (PROMTOOL_VERSION)"
fi

if [[ "${FORCE:-0}" != 1 && -x "$BIN/promtool" && -f "$STAMP" && "$(head -1 "$STAMP")" == "$KEY" ]]; then
    log "up to date: $BIN/promtool ($(sed -n 2p "$STAMP" | cut -d' ' -f2))"
    "$BIN/promtool" --version 2>&1 | head -1
    exit 0
fi

for tool in apt-get apt-cache dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool not found: promtool comes from Debian's \`prometheus\` package (Prometheus $UPSTREAM), which needs a Debian 12 (bookworm) machine with apt"
done

# The version to fetch: the one named, or the newest revision of $UPSTREAM apt offers.
# Refuse early, with the fix, when apt's lists offer none (lists never fetched, as in
# a fresh container, or not a bookworm source).
offered="$(apt-cache madison prometheus 2>/dev/null | awk -F' *[|] *' '{ print $2 }' | sort -u)"
if [[ -n "${PROMTOOL_DEB_VERSION:-}" ]]; then
    VERSION="$(grep -Fx -- "$PROMTOOL_DEB_VERSION" <<<"$offered" || true)"
else
    VERSION="$(grep -E -- "^${UPSTREAM//./\\.}[+~-]" <<<"$offered" | sort -V | tail -1 || true)"
fi
if [[ -z "$VERSION" ]]; then
    die "apt does not offer prometheus ${PROMTOOL_DEB_VERSION:-$UPSTREAM+*} (it offers: $(paste -sd' ' - <<<"$offered"))
  Refresh the package lists: sudo apt-get update   (then: apt-cache policy prometheus)
  It needs Debian 12 (bookworm) main in /etc/apt/sources.list(.d), or pin another
  version: make promtool PROMTOOL_VERSION=<the upstream part of a version apt-cache policy prometheus shows>"
fi

# A directory user _apt can enter, so apt can drop to it for the download. Where it
# still cannot (some containers), apt warns "Download is performed unsandboxed as
# root" and downloads as the calling user: harmless, the .deb is checked against the
# signed package lists either way.
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
chmod 755 "$TMP"

started=$SECONDS
log "apt-get download prometheus=$VERSION"
(cd "$TMP" && apt-get download -q "prometheus=$VERSION") ||
    die "apt-get download prometheus=$VERSION failed (see apt's output above); check the network and apt's sources, then run \`sudo apt-get update\` and \`make promtool\` again"
debs=("$TMP"/prometheus_*.deb)
[[ -f "${debs[0]}" ]] || die "apt-get download left no prometheus_*.deb in $TMP"

mkdir -p "$TMP/root"
dpkg-deb --fsys-tarfile "${debs[0]}" | tar -x -C "$TMP/root" ./usr/bin/promtool ||
    die "${debs[0]##*/} holds no ./usr/bin/promtool"
"$TMP/root/usr/bin/promtool" --version >/dev/null 2>&1 ||
    die "the promtool from ${debs[0]##*/} does not run on this machine (ldd $TMP/root/usr/bin/promtool)"

mkdir -p "$BIN"
rm -f "$STAMP"
install -m 0755 "$TMP/root/usr/bin/promtool" "$BIN/.promtool.new"
mv -f "$BIN/.promtool.new" "$BIN/promtool"
{
    echo "$KEY"
    echo "version $VERSION"
    echo "deb ${debs[0]##*/} sha256 $(sha256sum "${debs[0]}" | cut -d' ' -f1)"
    echo "promtool sha256 $(sha256sum "$BIN/promtool" | cut -d' ' -f1)"
} > "$STAMP.new"
mv -f "$STAMP.new" "$STAMP"
log "fetched promtool in $((SECONDS - started))s ($(du -h "$BIN/promtool" | cut -f1)) into $BIN"
"$BIN/promtool" --version 2>&1 | head -1
