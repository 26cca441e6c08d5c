#!/usr/bin/env bash
# dev/components/vault.sh — a Vault-API secrets server for tests of `vault:` secret references (issue 11 item 5).
#
#   vault.sh install|start|stop|status|env      (contract: dev/lib.sh)
#
# A dev-mode server (in-memory storage, KV version 2 mounted at `secret/`, unsealed) on
# http://127.0.0.1:$VAULT_PORT (18200) with the DEV ONLY root token `dev-only-root-token`; state and log under
# $STACK_DIR/vault. Every start is empty: tests write the secrets they read.
#
# Which server, and why not OpenBao: OpenBao was the first choice. Its module github.com/openbao/openbao lists
# no versions on the Go module proxy (its v2.x tags do not match its module path), and the one exact version
# asked for was refused:
#   go mod download -json github.com/openbao/openbao@0041230985c29b7a647d099949a11db731f691f5
#   -> reading https://proxy.golang.org/github.com/openbao/openbao/@v/0041230985c2....info: 403 Forbidden
#      server response: This module version is not available.
# So this builds the server OpenBao forked from, HashiCorp Vault (same HTTP API; BSL 1.1, used here only as a
# local test server), from the Go module proxy: github.com/hashicorp/vault@$VAULT_VERSION. `go install` cannot
# build it (its go.mod has replace directives pointing at ./api and ./sdk, which module zips leave out), so the
# module is downloaded, those replace directives are dropped (the published api/sdk modules are used instead) and
# three call sites where the published sdk v0.21.0 differs from the in-tree one are adapted (see patch_source).
# The first build takes 10-20 minutes on 2 cores and ~1.5 GB of module and build cache; the binary is cached in
# $CDC_STACK_CACHE/tools/vault-$VAULT_VERSION/ and later starts take about a second.
set -euo pipefail
# shellcheck source=../tools/common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../tools/common.sh"

NAME=vault
VAULT_VERSION="${CDC_VAULT_VERSION:-v1.21.4}"
VAULT_PORT=18200
VAULT_DEV_TOKEN=dev-only-root-token   # DEV ONLY, loopback test server
ADDR="http://127.0.0.1:$VAULT_PORT"
BIN_DIR="$TOOLS_DIR/vault-$VAULT_VERSION"
BIN="$BIN_DIR/vault"
DIR="$STACK_DIR/vault"
PIDFILE="$DIR/vault.pid"
LOG="$DIR/vault.log"

# patch_source DIR: adapt the three call sites to the published sdk v0.21.0; fails if a pattern is gone.
patch_source() {
    local src=$1
    replace() { # replace FILE OLD NEW
        grep -qF -- "$2" "$src/$1" || die "$NAME: patch target not found in $1 (another Vault version?)"
        OLD=$2 NEW=$3 perl -0pi -e 's/\Q$ENV{OLD}\E/$ENV{NEW}/' "$src/$1"
    }
    replace vault/identity_store.go \
        'ActivationFunc: iStore.activateDeduplication,' \
        'ActivationFunc: func(ctx context.Context, req *logical.Request, _ string) error { return iStore.activateDeduplication(ctx, req) },'
    replace vault/logical_system_activation_flags.go \
        'b.idStoreBackend.ActivationFunc(ctx, nil)' \
        'b.idStoreBackend.ActivationFunc(ctx, nil, "")'
    replace builtin/logical/transit/path_restore.go \
        'restoredKeyName, err := b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force)' \
        'restoredKeyName := keyName
	err := b.lm.RestorePolicy(ctx, req.Storage, keyName, backupB64, force)'
}

cmd_install() {
    [[ -x $BIN ]] && return 0
    # In a subshell: the install lock (fd 9) must not outlive the install, e.g. in the server started next.
    (
        tool_lock vault
        [[ -x $BIN ]] && exit 0
        go_env
        local work="$BIN_DIR.partial" mod
        rm -rf "$work"; mkdir -p "$work"
        log "$NAME: building HashiCorp Vault $VAULT_VERSION from the Go module proxy (once; 10-20 min on 2 cores)"
        mod=$(go mod download -json "github.com/hashicorp/vault@$VAULT_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
        [[ -d $mod ]] || die "$NAME: go mod download github.com/hashicorp/vault@$VAULT_VERSION failed"
        cp -r "$mod" "$work/src"
        chmod -R u+w "$work/src"
        local m
        for m in api api/auth/approle api/auth/kubernetes api/auth/userpass sdk; do
            (cd "$work/src" && go mod edit -dropreplace="github.com/hashicorp/vault/$m")
        done
        patch_source "$work/src"
        (cd "$work/src" && GOFLAGS="$GOFLAGS -mod=mod" nice -n 10 \
            go build -trimpath -ldflags='-s -w' -o "$work/vault" .) >&2 \
            || die "$NAME: go build failed (see the messages above)"
        rm -rf "$BIN_DIR"; mkdir -p "$BIN_DIR"
        mv "$work/vault" "$BIN"
        rm -rf "$work"
    )
}

healthy() { curl -sf --max-time 2 "$ADDR/v1/sys/health" >/dev/null; }

cmd_start() {
    if pid_alive "$PIDFILE" && healthy; then return 0; fi
    port_open "$VAULT_PORT" && die "$NAME: port $VAULT_PORT is taken by a process this script did not start"
    cmd_install
    mkdir -p "$DIR"
    log "$NAME: starting the dev server on $ADDR (log $LOG)"
    (cd "$DIR" && VAULT_DISABLE_MLOCK=true start_daemon "$PIDFILE" "$LOG" "$BIN" server -dev \
        -dev-root-token-id="$VAULT_DEV_TOKEN" -dev-listen-address="127.0.0.1:$VAULT_PORT" -dev-no-store-token)
    wait_for "$NAME" 30 healthy || { tail -n 20 "$LOG" >&2; die "$NAME: not healthy after 30 s (log $LOG)"; }
}

cmd_stop() { stop_pidfile "$PIDFILE" "$NAME" 10; }

cmd_status() {
    if pid_alive "$PIDFILE" && healthy; then
        status_line "$NAME" "$VAULT_VERSION" up "$ADDR"
    else
        status_line "$NAME" "$VAULT_VERSION" down "$ADDR"
        return 1
    fi
}

cmd_env() {
    printf 'export CDC_SECRETS_VAULT_ADDR=%s\n' "$ADDR"
    printf 'export CDC_SECRETS_VAULT_TOKEN=%s\n' "$VAULT_DEV_TOKEN"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) die "usage: $0 install|start|stop|status|env" ;;
esac
