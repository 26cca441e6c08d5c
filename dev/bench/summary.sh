#!/usr/bin/env bash
# The summary `make bench` ends with: the tables of docs/benchmarks.md (every "## " section's
# heading, its table rows and its one-line results), then the masker's lines of this run (its
# bench prints them instead of writing the document).
#   summary.sh [DOC] [MASKER_LOG]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
doc="${1:-$root/docs/benchmarks.md}"
masker_log="${2:-}"
[[ -f $doc ]] || { echo "summary.sh: $doc not found" >&2; exit 1; }
awk '
    /^## / { printf "\n%s\n", $0; next }
    /^\|/  { print; next }
    /^(Steady state|Highest sustained|Backlog:|Masker, one instance|PostgreSQL sink,|Cross-check|Maximum sustained)/ { print }
' "$doc"
if [[ -n $masker_log && -f $masker_log ]]; then
    printf '\n## Masker (this run, one core)\n'
    grep -E 'events/s on one core' "$masker_log" || echo "(no result lines in $masker_log)"
fi
