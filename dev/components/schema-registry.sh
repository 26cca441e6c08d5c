#!/usr/bin/env bash
# Schema registry for the local stack: Apicurio Registry 2.x (Quarkus, JVM mode) with its Confluent-compatible
# API at http://127.0.0.1:18081/apis/ccompat/v7 (GET /subjects, POST /subjects/<s>/versions, GET /schemas/ids/<id>).
#
#   schema-registry.sh install | start | stop | status | env
#
# Install: Maven Central publishes the runnable Quarkus build as io.apicurio:apicurio-registry-app:<ver>:zip:all
# (a "legacy-jar" layout: <name>-runner.jar + lib/). It is fetched without transitive dependencies and unpacked into
# $CDC_STACK_CACHE/apicurio-<ver>/app. (The plain apicurio-registry-app jar is not runnable on its own, and 3.x
# publishes no -all.zip on Maven Central, hence 2.6.)
# Storage: the SQL storage on an H2 *file* database under $STACK_DIR/schema-registry/data, so subjects and ids
# survive stop/start. It does not depend on Kafka.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../lib.sh"

NAME=schema-registry
CACHE_DIR="$CDC_STACK_CACHE/apicurio-$APICURIO_VERSION"
APP="$CACHE_DIR/app"
RUNNER="$APP/apicurio-registry-app-$APICURIO_VERSION-runner.jar"
DIR="$STACK_DIR/schema-registry"
LOGS="$DIR/logs"
PIDFILE="$DIR/schema-registry.pid"
BASE_URL="http://127.0.0.1:$SCHEMA_REGISTRY_PORT"
CCOMPAT_URL="$BASE_URL/apis/ccompat/v7"
HEAP="${CDC_SCHEMA_REGISTRY_HEAP:-384m}"
START_TIMEOUT="${CDC_SCHEMA_REGISTRY_START_TIMEOUT:-120}"

cmd_install() {
    [[ -f $APP/.complete ]] && return 0
    maven_fetch --no-deps "$CACHE_DIR/dist" "io.apicurio:apicurio-registry-app:$APICURIO_VERSION:zip:all"
    log "$NAME: unpacking Apicurio Registry $APICURIO_VERSION into $APP"
    rm -rf "$APP.partial" "$APP"
    mkdir -p "$APP.partial"
    unzip -q "$CACHE_DIR/dist/apicurio-registry-app-$APICURIO_VERSION-all.zip" -d "$APP.partial"
    [[ -f $APP.partial/$(basename "$RUNNER") ]] || die "$NAME: $(basename "$RUNNER") missing from the zip"
    mv "$APP.partial" "$APP"
    touch "$APP/.complete"
    rm -rf "$CACHE_DIR/dist"   # the zip also stays in $CDC_STACK_CACHE/m2; no third copy
}

# healthy: the Confluent-compatible API answers (this also reads the storage).
healthy() {
    curl -sf --max-time 5 "$CCOMPAT_URL/subjects" >/dev/null
}

# server_version: the version the running registry reports, empty if it does not answer.
server_version() {
    curl -sf --max-time 5 "$BASE_URL/apis/registry/v2/system/info" 2>/dev/null \
        | sed -n 's/.*"version":"\([^"]*\)".*/\1/p'
}

cmd_start() {
    if pid_alive "$PIDFILE"; then
        if healthy; then log "$NAME: already running (pid $(cat "$PIDFILE"))"; return 0; fi
        log "$NAME: process $(cat "$PIDFILE") is up but not answering yet; waiting"
    else
        port_open "$SCHEMA_REGISTRY_PORT" \
            && die "$NAME: port $SCHEMA_REGISTRY_PORT is taken by a process this script did not start"
        [[ -f $APP/.complete ]] || cmd_install
        mkdir -p "$DIR/data" "$LOGS"
        log "$NAME: starting Apicurio Registry $APICURIO_VERSION ($CCOMPAT_URL; log $LOGS/registry.log)"
        # Run from the state dir: Narayana (the embedded transaction manager) keeps its ObjectStore in the cwd.
        (
            cd "$DIR"
            REGISTRY_DATASOURCE_URL="jdbc:h2:file:$DIR/data/registry" \
                start_daemon "$PIDFILE" "$LOGS/registry.log" "$(java_bin)" "-Xmx$HEAP" -XX:+UseSerialGC \
                -XX:+ExitOnOutOfMemoryError -Djava.net.preferIPv4Stack=true \
                -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$SCHEMA_REGISTRY_PORT" \
                -Dquarkus.datasource.jdbc.initial-size=2 -Dquarkus.datasource.jdbc.min-size=2 \
                -Dquarkus.datasource.jdbc.max-size=10 \
                -Dquarkus.transaction-manager.object-store.directory="$DIR/ObjectStore" \
                -jar "$RUNNER"
        )
    fi
    local started=$SECONDS
    while ((SECONDS - started < START_TIMEOUT)); do
        pid_alive "$PIDFILE" || die "$NAME: process exited during startup; see $LOGS/registry.log"
        if healthy; then
            log "$NAME: up at $CCOMPAT_URL after $((SECONDS - started))s (pid $(cat "$PIDFILE"))"
            return 0
        fi
        sleep 1
    done
    die "$NAME: not healthy after ${START_TIMEOUT}s; see $LOGS/registry.log"
}

cmd_stop() {
    stop_pidfile "$PIDFILE" "$NAME" 30
}

cmd_status() {
    local v=""
    if pid_alive "$PIDFILE" && healthy; then v=$(server_version); fi
    if [[ -n $v ]]; then
        status_line "$NAME" "apicurio-$v" up "$CCOMPAT_URL"
    else
        status_line "$NAME" "apicurio-$APICURIO_VERSION" down "$CCOMPAT_URL"
        return 1
    fi
}

cmd_env() {
    printf 'export CDC_SCHEMA_REGISTRY_URL=%s\n' "$CCOMPAT_URL"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) die "usage: $0 install|start|stop|status|env" ;;
esac
