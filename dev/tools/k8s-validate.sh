#!/usr/bin/env bash
# Structural check of rendered Kubernetes manifests: dev/tools/k8s-validate (Go, strict decoding into the
# official k8s.io/api and prometheus-operator types), built once and cached in $CDC_STACK_CACHE/tools.
#
#   helm template ... | dev/tools/k8s-validate.sh           dev/tools/k8s-validate.sh install | path
#
# Why not kubeconform: it installs fine from the Go module proxy (github.com/yannh/kubeconform v0.8.0), but it
# validates against JSON schemas it downloads at run time from raw.githubusercontent.com
# (yannh/kubernetes-json-schema); on this project's machines and CI that fails with
#   failed downloading schema at https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/...:
#   dial tcp: lookup raw.githubusercontent.com ...: no such host
# (only package registries are reachable), and no registry serves those schemas. The same checks that matter here (unknown or misplaced fields, wrong types,
# unknown kinds) come from decoding into the types the API server uses.
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

SRC="$REPO_ROOT/dev/tools/k8s-validate"

validator_bin() {
    local hash dir
    # Rebuilt when its source changes: the cache key is the hash of main.go + go.mod + go.sum.
    hash=$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" 2>/dev/null | sha256sum | cut -c1-16)
    dir="$TOOLS_DIR/k8s-validate-$hash"
    [[ -x $dir/k8s-validate ]] || tool_lock k8s-validate
    if [[ ! -x $dir/k8s-validate ]]; then
        go_env
        log "k8s-validate: building dev/tools/k8s-validate (once per source change; cached in $dir)"
        mkdir -p "$dir.partial"
        (cd "$SRC" && nice -n 5 go build -trimpath -o "$dir.partial/k8s-validate" .) >&2 \
            || die "k8s-validate: go build failed (see the messages above)"
        rm -rf "$dir"
        mv "$dir.partial" "$dir"
    fi
    printf '%s\n' "$dir/k8s-validate"
}

tool_main validator_bin "$@"
