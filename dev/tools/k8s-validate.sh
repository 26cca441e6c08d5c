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

validator_bin() { go_build_cached k8s-validate; }

tool_main validator_bin "$@"
