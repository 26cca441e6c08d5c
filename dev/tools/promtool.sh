#!/usr/bin/env bash
# promtool (Prometheus' rule and config checker), cached in $CDC_STACK_CACHE/tools/promtool-<version>/promtool.
#
#   dev/tools/promtool.sh install | path | <promtool arguments>   e.g. dev/tools/promtool.sh check rules FILE
#
# Source: Debian's `prometheus` package. It is downloaded with `apt-get download` and only /usr/bin/promtool is
# extracted: installing the package would also register and start a Prometheus server on :9090, which the
# tests do not want. Fallback when the package cannot be had: `go install` of promtool from the Go module proxy.
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

# Prometheus' Go module versions are v0.<minor*100+...>: v0.316.0 is Prometheus 3.16.0.
PROMTOOL_GO_VERSION="${CDC_PROMTOOL_GO_VERSION:-v0.316.0}"

promtool_from_debian() {
    local version dir work deb
    version=$(apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: *//p')
    if [[ -z $version || $version == "(none)" ]]; then
        apt-get -o DPkg::Lock::Timeout=600 -q update >&2 || return 1
        version=$(apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: *//p')
    fi
    [[ -n $version && $version != "(none)" ]] || return 1
    dir="$TOOLS_DIR/promtool-deb-${version//[^A-Za-z0-9.+-]/_}"
    if [[ ! -x $dir/promtool ]]; then
        log "promtool: extracting /usr/bin/promtool from Debian's prometheus $version (once; cached in $dir)"
        work=$(mktemp -d)
        chmod 755 "$work"   # apt-get download writes as the _apt user
        (cd "$work" && apt-get download "prometheus=$version" >&2) || { rm -rf "$work"; return 1; }
        deb=$(ls "$work"/prometheus_*.deb)
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" ./usr/bin/promtool || { rm -rf "$work"; return 1; }
        mkdir -p "$dir"
        mv "$work/usr/bin/promtool" "$dir/promtool"
        rm -rf "$work"
    fi
    printf '%s\n' "$dir/promtool"
}

promtool_bin() {
    local cached
    # A binary extracted earlier is used as is (no apt-cache call on every run).
    cached=$(ls -d "$TOOLS_DIR"/promtool-*/promtool 2>/dev/null | head -n 1 || true)
    if [[ -n $cached && -x $cached ]]; then printf '%s\n' "$cached"; return 0; fi
    tool_lock promtool
    cached=$(ls -d "$TOOLS_DIR"/promtool-*/promtool 2>/dev/null | head -n 1 || true)
    if [[ -n $cached && -x $cached ]]; then printf '%s\n' "$cached"; return 0; fi
    if command -v apt-get >/dev/null && promtool_from_debian; then return 0; fi
    log "promtool: Debian's prometheus package is not available; building promtool with go install"
    go_install_cached promtool github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_GO_VERSION"
}

tool_main promtool_bin "$@"
