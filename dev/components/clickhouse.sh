#!/usr/bin/env bash
# ClickHouse for the local stack: the ClickHouse engine from the PyPI wheel chdb-core, behind the TEST HARNESS
# HTTP front dev/clickhouse-http/server.py (production uses clickhouse-server). Contract: dev/lib.sh.
#   clickhouse.sh install|start|stop|status|env
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

NAME=clickhouse
DIR="$STACK_DIR/$NAME"
VENV="$CDC_STACK_CACHE/chdb-venv-$CHDB_CORE_VERSION"
PY="$VENV/bin/python"
SERVER="$REPO_ROOT/dev/clickhouse-http/server.py"
PIDFILE="$DIR/server.pid"
LOGFILE="$DIR/server.log"
DATA="$DIR/data"
ADDR="127.0.0.1:$CLICKHOUSE_HTTP_PORT"
URL="http://$ADDR"
# pytest is installed beside chdb for dev/clickhouse-http/run-tests.sh.
PIP_PACKAGES=("chdb-core==$CHDB_CORE_VERSION" "pytest==9.2.0")
MARKER="$VENV/.cdc-installed"

installed() {
    [[ -x $PY && -f $MARKER && "$(cat "$MARKER")" == "${PIP_PACKAGES[*]}" ]]
}

cmd_install() {
    mkdir -p "$DIR"
    if ! installed; then
        log "$NAME: creating venv $VENV (chdb-core $CHDB_CORE_VERSION, ~180 MB download on first run)"
        local py=${CDC_PYTHON:-python3}
        rm -rf "$VENV"    # a half-built venv (no marker) is rebuilt from scratch
        "$py" -m venv "$VENV" || die "$NAME: '$py -m venv $VENV' failed"
        PIP_CACHE_DIR="$CDC_STACK_CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 \
            "$PY" -m pip install --quiet "${PIP_PACKAGES[@]}" \
            || die "$NAME: pip install ${PIP_PACKAGES[*]} into $VENV failed"
        "$PY" -c 'import chdb' || die "$NAME: chdb does not import in $VENV"
        printf '%s\n' "${PIP_PACKAGES[*]}" >"$MARKER"
    fi
    ln -sfn "$VENV" "$DIR/venv"
}

# http_get PATH_AND_QUERY: body of a GET to the front, via the venv's Python (no curl needed).
http_get() {
    [[ -x $PY ]] || return 1
    "$PY" - "$URL$1" <<'PYEOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        sys.stdout.write(r.read().decode())
except Exception:
    sys.exit(1)
PYEOF
}

healthy() {
    [[ "$(http_get /ping 2>/dev/null)" == "Ok." ]]
}

cmd_start() {
    cmd_install
    mkdir -p "$DIR" "$DATA" || die "$NAME: cannot create $DATA"
    if pid_alive "$PIDFILE" && healthy; then
        return 0
    fi
    if pid_alive "$PIDFILE"; then
        # running but not answering yet (or wedged): give it a moment, else restart it
        if wait_for "$NAME" 10 healthy; then return 0; fi
        stop_pidfile "$PIDFILE" "$NAME" 10
    fi
    if port_open "$CLICKHOUSE_HTTP_PORT"; then
        die "$NAME: port $CLICKHOUSE_HTTP_PORT is already in use by another process (not ours: no live pid in $PIDFILE)"
    fi
    rm -f "$PIDFILE"
    log "$NAME: starting chdb HTTP front on $ADDR (data $DATA, log $LOGFILE)"
    nohup setsid "$PY" "$SERVER" --data "$DATA" --host 127.0.0.1 --port "$CLICKHOUSE_HTTP_PORT" \
        --pidfile "$PIDFILE" >>"$LOGFILE" 2>&1 </dev/null &
    local launcher=$!
    # The server writes its own pid once listening; until then record the launcher's.
    [[ -s $PIDFILE ]] || echo "$launcher" >"$PIDFILE"
    local i
    for ((i = 0; i < 120; i++)); do
        healthy && break
        if ! kill -0 "$launcher" 2>/dev/null; then
            tail -n 20 "$LOGFILE" >&2 || true
            rm -f "$PIDFILE"
            die "$NAME: the server exited during startup; see $LOGFILE"
        fi
        sleep 0.5
    done
    if ! healthy; then
        tail -n 20 "$LOGFILE" >&2 || true
        stop_pidfile "$PIDFILE" "$NAME" 5
        die "$NAME: did not become healthy on $URL/ping within 60 s; see $LOGFILE"
    fi
    log "$NAME: up at $URL"
}

cmd_stop() {
    stop_pidfile "$PIDFILE" "$NAME" 30
}

cmd_status() {
    local version
    if pid_alive "$PIDFILE" && healthy \
        && version=$(http_get '/?query=SELECT%20version()' 2>/dev/null) && [[ -n $version ]]; then
        status_line "$NAME" "$version" up "$URL"
        return 0
    fi
    status_line "$NAME" "chdb-core-$CHDB_CORE_VERSION" down "$URL"
    return 1
}

cmd_env() {
    echo "export CDC_CLICKHOUSE_URL=$URL"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
