#!/usr/bin/env bash
# Compose-spec check of docker-compose.yml without a Docker engine: dev/tools/compose-validate (Go, the official
# loader github.com/compose-spec/compose-go/v2 -- the library `docker compose config` uses -- with schema
# validation, interpolation and consistency checks), built once and cached in $CDC_STACK_CACHE/tools.
#
#   dev/tools/compose-validate.sh docker-compose.yml [MORE.yml]...     dev/tools/compose-validate.sh install | path
#
# Prints the project's service names (every profile enabled), one per line; on an invalid file exits 1 with
# `compose-validate: <file>: <error>` on stderr. Why not `docker compose config`: it needs the docker CLI with the
# compose plugin, which this project's machines and CI do not have (no Docker engine), and no registry they
# reach serves it; the loader is the same code, reachable through the Go module proxy.
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

SRC="$REPO_ROOT/dev/tools/compose-validate"

validator_bin() {
    local hash dir
    # Rebuilt when its source changes: the cache key is the hash of main.go + go.mod + go.sum.
    hash=$(cat "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" 2>/dev/null | sha256sum | cut -c1-16)
    dir="$TOOLS_DIR/compose-validate-$hash"
    [[ -x $dir/compose-validate ]] || tool_lock compose-validate
    if [[ ! -x $dir/compose-validate ]]; then
        go_env
        log "compose-validate: building dev/tools/compose-validate (once per source change; cached in $dir)"
        mkdir -p "$dir.partial"
        (cd "$SRC" && nice -n 5 go build -trimpath -o "$dir.partial/compose-validate" .) >&2 \
            || die "compose-validate: go build failed (see the messages above)"
        rm -rf "$dir"
        mv "$dir.partial" "$dir"
    fi
    printf '%s\n' "$dir/compose-validate"
}

tool_main validator_bin "$@"
