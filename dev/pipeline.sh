#!/usr/bin/env bash
# The demo pipeline on the local stack: capture, masker and the three sinks as background daemons with
# config/pipeline.demo.yaml. State under .stack/pipeline/ (<service>.pid, <service>.log).
#
#   dev/pipeline.sh up                 build the binaries (debug), start what is not running, wait for /readyz
#   dev/pipeline.sh build              only build the binaries
#   dev/pipeline.sh start SERVICE      start one service (no build) and wait for its /readyz (used by make demo)
#   dev/pipeline.sh down               SIGTERM every service, SIGKILL what is still running after the drain
#   dev/pipeline.sh status             pid and /readyz of each service; exit 1 when any is not ready
#   dev/pipeline.sh logs [SERVICE]     last lines of every log, or follow one service's log
#   dev/pipeline.sh cdcctl ARGS...     run cdcctl against the demo pipeline (same config and environment)
#   dev/pipeline.sh env                print the environment the services get (secret values elided)
#
# Needs the stack (`make stack-up`) and .stack/demo/secrets.env (`make demo` generates it; fake keys).
# Debug binaries: `make test` builds the same ones (shared target dir), a debug build is several times faster
# than a release build on 2 cores, and the demo's load (a few hundred events/s) is far below what debug
# builds sustain (dependencies are built with opt-level 1, see Cargo.toml).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PIPELINE_DIR="$STACK_DIR/pipeline"
DEMO_DIR="$STACK_DIR/demo"
CONFIG="${CDC_DEMO_CONFIG:-$REPO_ROOT/config/pipeline.demo.yaml}"
POLICY="${CDC_DEMO_POLICY:-$REPO_ROOT/config/masking-policy.demo.yaml}"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
BIN_DIR="$TARGET_DIR/debug"
# Services in start order, with their admin ports (config/pipeline.demo.yaml).
SERVICES=(capture masker sink-postgres sink-clickhouse sink-timescaledb)
declare -A PORT=([capture]=9101 [masker]=9102 [sink-postgres]=9103 [sink-clickhouse]=9104 [sink-timescaledb]=9105)
READY_SECS=${CDC_PIPELINE_READY_SECS:-90}
# drain_timeout_secs (30, the default) plus a margin, before SIGKILL.
STOP_SECS=35

plog() { printf '[pipeline %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[pipeline %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# load_env: the stack's addresses, the demo secrets and the two path overrides, exported.
load_env() {
    [[ -f $STACK_DIR/env ]] || die "$STACK_DIR/env is missing: run \`make stack-up\` first"
    [[ -f $DEMO_DIR/secrets.env ]] ||
        die "$DEMO_DIR/secrets.env is missing: run \`make demo\` (it generates fake development keys)"
    set -a
    # shellcheck disable=SC1091
    source "$STACK_DIR/env"
    # shellcheck disable=SC1091
    source "$DEMO_DIR/secrets.env"
    set +a
    export CDC__CAPTURE__CDC_RAW_DIR="$CDC_CASSANDRA_CDC_RAW"
    export CDC__MASKER__POLICY_FILE="$POLICY"
    export CDC_CONFIG="$CONFIG"
    # Stable masker instance: its transactional id (masker-demo) survives restarts.
    export CDC_INSTANCE_ID=demo
}

build() {
    local started=$SECONDS
    plog "building capture, masker, the three sinks and cdcctl (debug; log $PIPELINE_DIR/build.log)"
    mkdir -p "$PIPELINE_DIR"
    if ! (cd "$REPO_ROOT" && cargo build -p capture -p masker -p sink-postgres -p sink-clickhouse \
            -p sink-timescaledb -p cdcctl --bins) >"$PIPELINE_DIR/build.log" 2>&1; then
        tail -n 40 "$PIPELINE_DIR/build.log" >&2
        die "cargo build failed (full log: $PIPELINE_DIR/build.log)"
    fi
    plog "built in $((SECONDS - started)) s"
}

ready() { curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:${PORT[$1]}/readyz"; }

start_service() {
    local s=$1 pidfile="$PIPELINE_DIR/$1.pid" log="$PIPELINE_DIR/$1.log" started=$SECONDS
    if pid_alive "$pidfile"; then
        plog "$s already running (pid $(cat "$pidfile"))"
    else
        [[ -x $BIN_DIR/$s ]] || die "$BIN_DIR/$s is missing (dev/pipeline.sh up builds it)"
        if port_open "${PORT[$s]}"; then
            die "port ${PORT[$s]} (admin of $s) is taken by another process; stop it first"
        fi
        echo "--- start $(date -u +%Y-%m-%dT%H:%M:%SZ) ---" >>"$log"
        start_daemon "$pidfile" "$log" "$BIN_DIR/$s" --config "$CONFIG"
        plog "$s started (pid $(cat "$pidfile"), log $log)"
    fi
    local i
    for ((i = 0; i < READY_SECS * 5; i++)); do
        ready "$s" && { plog "$s ready after $((SECONDS - started)) s"; return 0; }
        if ! pid_alive "$pidfile"; then
            tail -n 30 "$log" >&2
            die "$s exited during start (log $log)"
        fi
        sleep 0.2
    done
    tail -n 30 "$log" >&2
    die "$s not ready after ${READY_SECS}s (http://127.0.0.1:${PORT[$s]}/readyz; log $log)"
}

cmd_up() {
    local s
    load_env
    mkdir -p "$PIPELINE_DIR"
    [[ ${CDC_PIPELINE_NO_BUILD:-0} == 1 ]] || build
    for s in "${SERVICES[@]}"; do start_service "$s"; done
}

cmd_down() {
    local s pids=()
    mkdir -p "$PIPELINE_DIR"
    # In parallel: each drains on its own (capture and masker finish their transaction, sinks flush).
    for s in "${SERVICES[@]}"; do
        stop_pidfile "$PIPELINE_DIR/$s.pid" "$s" "$STOP_SECS" &
        pids+=($!)
    done
    for s in "${pids[@]}"; do wait "$s" || true; done
    plog "pipeline stopped"
}

cmd_status() {
    local s pidfile state pid ok=0
    printf '%-18s %-8s %-8s %s\n' SERVICE PID STATE ADMIN
    for s in "${SERVICES[@]}"; do
        pidfile="$PIPELINE_DIR/$s.pid"
        pid=-
        if pid_alive "$pidfile"; then
            pid=$(cat "$pidfile")
            if ready "$s"; then state=ready; else state=unready; ok=1; fi
        else
            state=down; ok=1
        fi
        printf '%-18s %-8s %-8s %s\n' "$s" "$pid" "$state" "http://127.0.0.1:${PORT[$s]}"
    done
    return $ok
}

cmd_logs() {
    local s
    if [[ -n ${1:-} ]]; then
        [[ -n ${PORT[$1]:-} ]] || die "unknown service $1 (one of: ${SERVICES[*]})"
        exec tail -n 50 -F "$PIPELINE_DIR/$1.log"
    fi
    for s in "${SERVICES[@]}"; do
        echo "==> $PIPELINE_DIR/$s.log <=="
        tail -n 10 "$PIPELINE_DIR/$s.log" 2>/dev/null || echo "(no log yet)"
    done
}

cmd_cdcctl() {
    load_env
    [[ -x $BIN_DIR/cdcctl ]] || die "$BIN_DIR/cdcctl is missing: run dev/pipeline.sh up (or cargo build -p cdcctl)"
    exec "$BIN_DIR/cdcctl" --config "$CONFIG" "$@"
}

cmd_env() {
    load_env
    env | grep -E '^CDC_' | sort | sed -E 's/^(CDC_(DEMO_[A-Z_]*KEY|TOKEN_VAULT[A-Z_]*URL|POSTGRES_URL|TIMESCALE_URL|VAULT_URL))=.*/\1=<set>/'
}

case "${1:-}" in
    up) cmd_up ;;
    build) build ;;
    start)
        [[ -n ${2:-} && -n ${PORT[${2:-x}]:-} ]] || die "usage: $0 start SERVICE (one of: ${SERVICES[*]})"
        load_env; mkdir -p "$PIPELINE_DIR"; start_service "$2" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    logs) shift; cmd_logs "$@" ;;
    cdcctl) shift; cmd_cdcctl "$@" ;;
    env) cmd_env ;;
    *) die "usage: $0 up|build|start SERVICE|down|status|logs [SERVICE]|cdcctl ARGS...|env" ;;
esac
