#!/usr/bin/env bash
# Helm 3, built from the Go module proxy (`go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION`) and cached in
# $CDC_STACK_CACHE/tools/helm-<version>/helm.
#
#   dev/tools/helm.sh install | path | <helm arguments>      e.g. dev/tools/helm.sh lint helm/cdc-pipeline
set -euo pipefail
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

HELM_VERSION="${CDC_HELM_VERSION:-v3.22.0}"

helm_bin() { go_install_cached helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"; }

tool_main helm_bin "$@"
