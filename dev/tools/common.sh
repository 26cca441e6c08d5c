#!/usr/bin/env bash
# Shared helpers of dev/tools/*.sh: command-line tools the tests need (helm, kubeconform-style checks, promtool,
# OpenBao/Vault), installed from the registries this machine reaches and cached in $CDC_STACK_CACHE/tools, so a
# fresh machine or CI run installs each once and later runs start in milliseconds. Sourced, never run.
#
# Every tool script follows one contract:
#   dev/tools/<tool>.sh install   install into the cache if missing (idempotent); print nothing on success
#   dev/tools/<tool>.sh path      install if missing, then print the absolute path of the binary
#   dev/tools/<tool>.sh ARGS...   install if missing, then run the tool with ARGS
# shellcheck source=../lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../lib.sh"

TOOLS_DIR="$CDC_STACK_CACHE/tools"
# Go modules are downloaded into the machine-wide cache too (not ~/go), so `make stack-reset` keeps them and a
# second clone reuses them. -modcacherw keeps the cache deletable by `rm -rf`.
GO_MODCACHE="$CDC_STACK_CACHE/go/mod"
GO_BUILDCACHE="$CDC_STACK_CACHE/go/build"

go_env() {
    command -v go >/dev/null || die "go not found on PATH (the Go toolchain installs Go-based dev tools)"
    # GOCACHE set by the caller wins (a developer's warm cache); else the machine-wide stack cache.
    export GOMODCACHE="$GO_MODCACHE" GOCACHE="${GOCACHE:-$GO_BUILDCACHE}"
    export GOFLAGS="${GOFLAGS:+$GOFLAGS }-modcacherw"
    # Toolchain downloads are not wanted: build with the Go on PATH.
    export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
}

# tool_lock NAME: take an exclusive lock (fd 9, released when the calling (sub)shell exits) so that parallel
# callers -- e.g. the threads of one `cargo test` -- wait for a single install instead of racing.
tool_lock() {
    mkdir -p "$TOOLS_DIR"
    exec 9>"$TOOLS_DIR/.$1.lock"
    flock 9
}

# go_install_cached NAME PACKAGE VERSION: `go install PACKAGE@VERSION` into $TOOLS_DIR/NAME-VERSION/ (atomically:
# a .partial directory renamed when the build succeeded); prints the binary's path.
go_install_cached() {
    local name=$1 pkg=$2 version=$3
    local dir="$TOOLS_DIR/$name-$version" bin
    bin="$dir/$(basename "$pkg")"
    [[ -x $bin ]] || tool_lock "$name"
    if [[ ! -x $bin ]]; then
        go_env
        log "$name: go install $pkg@$version (once; cached in $dir)"
        rm -rf "$dir.partial"
        mkdir -p "$dir.partial"
        GOBIN="$dir.partial" nice -n 5 go install -trimpath "$pkg@$version" >&2 \
            || die "$name: go install $pkg@$version failed (see the messages above)"
        rm -rf "$dir"
        mv "$dir.partial" "$dir"
    fi
    printf '%s\n' "$bin"
}

# go_build_cached NAME: build the in-repo Go tool dev/tools/NAME (main.go, go.mod, go.sum) into
# $TOOLS_DIR/NAME-<hash of those files>/ (rebuilt when its source changes; atomically, like go_install_cached);
# prints the binary's path.
go_build_cached() {
    local name=$1
    local src="$REPO_ROOT/dev/tools/$name" hash dir
    hash=$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" 2>/dev/null | sha256sum | cut -c1-16)
    dir="$TOOLS_DIR/$name-$hash"
    [[ -x $dir/$name ]] || tool_lock "$name"
    if [[ ! -x $dir/$name ]]; then
        go_env
        log "$name: building dev/tools/$name (once per source change; cached in $dir)"
        rm -rf "$dir.partial"
        mkdir -p "$dir.partial"
        (cd "$src" && nice -n 5 go build -trimpath -o "$dir.partial/$name" .) >&2 \
            || die "$name: go build failed (see the messages above)"
        rm -rf "$dir"
        mv "$dir.partial" "$dir"
    fi
    printf '%s\n' "$dir/$name"
}

# tool_main BIN_PATH_FUNCTION ARGS...: the shared command dispatch of the tool scripts.
tool_main() {
    local resolve=$1; shift
    local bin
    bin=$("$resolve")
    case "${1:-}" in
        install) ;;
        path) printf '%s\n' "$bin" ;;
        *) exec "$bin" "$@" ;;
    esac
}
