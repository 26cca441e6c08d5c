#!/usr/bin/env bash
# Runs the tests of the ClickHouse HTTP test front with the chdb venv (installed on demand).
# Needs no running stack: the tests start their own server on a free port with a temporary data dir.
# Extra arguments go to pytest (e.g. -k dedup).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$HERE/../components/clickhouse.sh" install
source "$HERE/../lib.sh"
PY="$CDC_STACK_CACHE/chdb-venv-$CHDB_CORE_VERSION/bin/python"
cd "$HERE"
exec "$PY" -m pytest -q -p no:cacheprovider "$@" test_server.py
