#!/usr/bin/env bash
# The local stack: real Kafka, Cassandra, PostgreSQL, TimescaleDB, ClickHouse (chdb behind our HTTP front) and a
# schema registry, all on 127.0.0.1 with fixed ports, state under .stack/, downloads cached in $CDC_STACK_CACHE.
#
#   dev/stack.sh up       install what is missing, start what is not running, write .stack/env, print status
#   dev/stack.sh down     stop every component (data kept)
#   dev/stack.sh status   one line per component; exit 1 when any is down
#   dev/stack.sh reset    stop everything and delete .stack/ (cached downloads are kept)
#
# A component that fails to install or start fails the whole command with its name and log file.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

COMPONENTS_DIR="$REPO_ROOT/dev/components"
# Start order: databases first (quick), Kafka before the registry (which may store schemas in Kafka).
# Cassandra is the slowest to start, so it starts in the background first and is awaited last.
COMPONENTS=(postgres timescaledb clickhouse kafka schema-registry cassandra)

component() { bash "$COMPONENTS_DIR/$1.sh" "${@:2}"; }

available_components() {
    local c
    for c in "${COMPONENTS[@]}"; do
        [[ -f $COMPONENTS_DIR/$c.sh ]] && echo "$c"
    done
    return 0
}

write_env() {
    local c tmp="$STACK_DIR/env.partial"
    {
        echo "# Written by dev/stack.sh up on $(date -u +%Y-%m-%dT%H:%M:%SZ). Source it: . .stack/env"
        echo "export CDC_REPO_ROOT=$REPO_ROOT"
        echo "export CDC_STACK_DIR=$STACK_DIR"
        for c in $(available_components); do component "$c" env; done
    } >"$tmp"
    mv "$tmp" "$STACK_DIR/env"
    log "wrote $STACK_DIR/env"
}

cmd_up() {
    local started=$SECONDS c
    local -a comps
    mapfile -t comps < <(available_components)
    for c in "${COMPONENTS[@]}"; do
        [[ -f $COMPONENTS_DIR/$c.sh ]] || die "component script dev/components/$c.sh is missing"
    done
    if [[ -f $REPO_ROOT/dev/apt-packages.txt ]]; then
        # shellcheck disable=SC2046
        apt_ensure $(grep -v '^\s*#' "$REPO_ROOT/dev/apt-packages.txt" | sort -u)
    fi
    for c in "${comps[@]}"; do
        log "[$c] install"
        component "$c" install || die "$c: install failed (see the messages above)"
    done
    log "[cassandra] start (in the background; it is the slowest)"
    local cass_log="$STACK_DIR/cassandra-start.log"
    mkdir -p "$STACK_DIR"
    component cassandra start >"$cass_log" 2>&1 &
    local cass_pid=$!
    for c in "${comps[@]}"; do
        [[ $c == cassandra ]] && continue
        log "[$c] start"
        component "$c" start || { wait "$cass_pid" || true; die "$c: start failed (see the messages above)"; }
    done
    log "[cassandra] waiting for the start to finish"
    if ! wait "$cass_pid"; then
        cat "$cass_log" >&2
        die "cassandra: start failed (messages above; server log under $STACK_DIR/cassandra/logs)"
    fi
    cat "$cass_log" >&2
    write_env
    cmd_status || die "stack is not healthy after start"
    log "stack up in $((SECONDS - started)) s"
}

# Started on demand by the tests that need them (not by `up`: their first build is slow), stopped by `down`.
ON_DEMAND_COMPONENTS=(vault)

cmd_down() {
    local i c
    for c in "${ON_DEMAND_COMPONENTS[@]}"; do
        [[ -f $COMPONENTS_DIR/$c.sh ]] && { component "$c" stop || log "WARNING: $c: stop failed"; }
    done
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        c=${COMPONENTS[$i]}
        [[ -f $COMPONENTS_DIR/$c.sh ]] || continue
        component "$c" stop || log "WARNING: $c: stop failed"
    done
}

cmd_status() {
    local c rc=0
    status_line COMPONENT VERSION STATE ADDRESS
    for c in "${COMPONENTS[@]}"; do
        if [[ ! -f $COMPONENTS_DIR/$c.sh ]]; then
            status_line "$c" - missing "dev/components/$c.sh not found"
            rc=1
            continue
        fi
        component "$c" status || rc=1
    done
    return $rc
}

cmd_reset() {
    cmd_down
    log "deleting $STACK_DIR (cache $CDC_STACK_CACHE kept)"
    rm -rf "$STACK_DIR"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    *) echo "usage: $0 up|down|status|reset" >&2; exit 2 ;;
esac
