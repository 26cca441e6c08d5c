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

validator_bin() { go_build_cached compose-validate; }

tool_main validator_bin "$@"
