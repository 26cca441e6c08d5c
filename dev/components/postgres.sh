#!/usr/bin/env bash
# dev/components/postgres.sh — PostgreSQL 15 for the local stack (ARCHITECTURE §7, §11).
#
#   postgres.sh install|start|stop|status|env      (contract: dev/lib.sh)
#
# One cluster from Debian 12's postgresql-15 on 127.0.0.1:$POSTGRES_PORT (15432), data in
# $STACK_DIR/postgres/data, Unix socket in $STACK_DIR/postgres/run, log in $STACK_DIR/postgres/logs.
# Databases: `warehouse` (PostgreSQL sink) and `vault` (the masker's token vault).
#
# DEV ONLY credentials: login role `cdc`, password `cdc`, SUPERUSER (the sinks create schemas and tables, tests
# create and drop databases and extensions). TCP needs a SCRAM password; the Unix socket is `trust` but its
# directory is mode 0700 and owned by the server's OS user, so only that user (and root) can reach it.
# Never reuse any of this outside a loopback dev box.
#
# TLS: `ssl = on` with a DEV ONLY certificate made with openssl on first start: a throwaway CA
# ($STACK_DIR/<name>/tls/ca.crt, what clients verify against) and a server certificate for `localhost` and
# `127.0.0.1` signed by it. Plain TCP keeps working (pg_hba `host` lines accept both). A server already running
# without TLS gets it on the next `start` through a reload (no restart, no dropped sessions).
#
# The server runs as the `postgres` OS user (created if missing) because PostgreSQL refuses to run as root.
#
# This file is also a small library: timescaledb.sh sources it (nothing runs when sourced), sets its own
# name/port/databases and overrides the pg_hook_* functions.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_APT_PACKAGES=("postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR")
PG_OS_USER=postgres
PG_DEV_USER=cdc        # DEV ONLY
PG_DEV_PASSWORD=cdc    # DEV ONLY — loopback dev database, not a secret
PG_START_TIMEOUT=60

# pg_init_component NAME PORT: set the per-cluster paths.
pg_init_component() {
    PG_NAME=$1
    PG_PORT=$2
    PG_HOME=$STACK_DIR/$PG_NAME
    PG_DATA=$PG_HOME/data
    PG_RUN=$PG_HOME/run
    PG_LOGS=$PG_HOME/logs
    PG_LOG=$PG_LOGS/$PG_NAME.log
    PG_DATABASES=()
    PG_MAIN_DB=postgres
}

# pg_url DB: the dev TCP URL for DB.
pg_url() { printf 'postgres://%s:%s@127.0.0.1:%s/%s\n' "$PG_DEV_USER" "$PG_DEV_PASSWORD" "$PG_PORT" "$1"; }

# ---- hooks (timescaledb.sh overrides these) -------------------------------------------------------------------
pg_hook_install() { :; }                    # extra install work
pg_hook_conf() { :; }                       # extra postgresql.conf lines on stdout
pg_hook_bootstrap() { :; }                  # extra SQL setup after the databases exist (server is up)
pg_hook_version() { pg_server_version; }    # version column of `status` when the server is up
pg_hook_env() {
    printf 'export CDC_POSTGRES_URL=%s\n' "$(pg_url warehouse)"
    printf 'export CDC_VAULT_URL=%s\n' "$(pg_url vault)"
    printf 'export CDC_POSTGRES_CA_FILE=%s\n' "$PG_HOME/tls/ca.crt"
}

# ---- helpers ---------------------------------------------------------------------------------------------------

# as_pg CMD...: run CMD as the server's OS user, from a directory it can enter.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd "$PG_HOME" && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd "$PG_HOME" && "$@")
    fi
}

# pg_psql_admin DB ARGS...: psql as the bootstrap superuser over the Unix socket.
pg_psql_admin() {
    local db=$1; shift
    as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_RUN" -p "$PG_PORT" -U postgres -d "$db" "$@"
}

# pg_query_tcp DB SQL: one value, as the dev user over TCP (exercises the same path the services use).
pg_query_tcp() {
    PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -A -t -v ON_ERROR_STOP=1 -d "$(pg_url "$1")" -c "$2" 2>/dev/null
}

pg_healthy() { pg_query_tcp "$PG_MAIN_DB" 'SELECT 1' | grep -qx 1; }

pg_running() { [[ -f $PG_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_server_version() { pg_query_tcp "$PG_MAIN_DB" 'SHOW server_version' | awk '{print $1}'; }

# installed server version, for `status` while down
pg_binary_version() { "$PG_BIN/postgres" --version 2>/dev/null | awk '{print $3}'; }

# pg_ensure_os_user: create the `postgres` system user when missing (root only).
pg_ensure_os_user() {
    [[ $EUID -eq 0 ]] || { PG_OS_USER=$(id -un); return 0; }
    id -u "$PG_OS_USER" >/dev/null 2>&1 && return 0
    log "$PG_NAME: creating system user $PG_OS_USER"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "$PG_OS_USER"
}

# pg_prepare_dirs: make $STACK_DIR/<name> owned by the server user and check it can get there.
pg_prepare_dirs() {
    mkdir -p "$PG_HOME"
    if [[ $EUID -eq 0 ]]; then
        # walk from / down to $STACK_DIR: the first directory the server user cannot enter is the culprit
        local d="" part
        local -a parts
        IFS=/ read -ra parts <<<"${STACK_DIR#/}"
        for part in "${parts[@]}"; do
            d+=/$part
            runuser -u "$PG_OS_USER" -- test -x "$d" ||
                die "$PG_NAME: OS user '$PG_OS_USER' cannot enter '$d' (mode $(stat -c %A "$d")), so it cannot" \
                    "reach $STACK_DIR; set CDC_STACK_DIR to a path it can reach, or chmod o+x '$d'"
        done
        chown "$PG_OS_USER:" "$PG_HOME"
        chmod 0755 "$PG_HOME"
    fi
    mkdir -p "$PG_RUN" "$PG_LOGS"
    touch "$PG_LOG"
    [[ $EUID -ne 0 ]] || chown "$PG_OS_USER:" "$PG_RUN" "$PG_LOGS" "$PG_LOG"
    chmod 0700 "$PG_RUN"
    # Unix socket paths are limited to 107 bytes (sun_path); "<run>/.s.PGSQL.<port>" must fit.
    local sock="$PG_RUN/.s.PGSQL.$PG_PORT"
    ((${#sock} <= 107)) ||
        die "$PG_NAME: socket path '$sock' is ${#sock} bytes, over the 107-byte limit; use a shorter CDC_STACK_DIR"
}

# pg_ensure_tls: the DEV ONLY CA and server certificate under $PG_HOME/tls (made once, kept across starts).
pg_ensure_tls() {
    local dir=$PG_HOME/tls
    [[ -f $dir/server.crt && -f $dir/server.key && -f $dir/ca.crt ]] && return 0
    command -v openssl >/dev/null || die "$PG_NAME: openssl is needed for the dev TLS certificate"
    log "$PG_NAME: making a DEV ONLY CA and server certificate in $dir"
    rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
    (
        cd "$dir.tmp"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 -subj "/CN=cdc-dev-ca-$PG_NAME" \
            -keyout ca.key -out ca.crt -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -newkey rsa:2048 -nodes -sha256 -subj /CN=localhost -keyout server.key -out server.csr
        printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -sha256 \
            -extfile server.ext -out server.crt
        rm -f server.csr server.ext ca.srl ca.key
    ) >>"$PG_LOG" 2>&1 || die "$PG_NAME: openssl failed, see $PG_LOG"
    chmod 0644 "$dir.tmp/ca.crt" "$dir.tmp/server.crt"
    chmod 0600 "$dir.tmp/server.key"
    [[ $EUID -ne 0 ]] || chown "$PG_OS_USER:" "$dir.tmp/server.key" "$dir.tmp/server.crt"
    rm -rf "$dir"; mv "$dir.tmp" "$dir"
    chmod 0755 "$dir"
}

# pg_tls_on: the running server has TLS on.
pg_tls_on() { [[ $(pg_query_tcp "$PG_MAIN_DB" 'SHOW ssl') == on ]]; }

# pg_write_config: (re)write our settings; postgresql.conf includes them. Takes effect at (re)start or reload.
pg_write_config() {
    pg_ensure_tls
    cat >"$PG_DATA/cdc-stack.conf" <<EOF
# Written by dev/components/$PG_NAME.sh on every start — edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_RUN'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
# small shared box
max_connections = 200
shared_buffers = 128MB
# keep durability real (synchronous_commit stays at its default, on)
fsync = on
full_page_writes = on
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
# DEV ONLY certificate (pg_ensure_tls); clients may use TLS or not
ssl = on
ssl_cert_file = '$PG_HOME/tls/server.crt'
ssl_key_file = '$PG_HOME/tls/server.key'
$(pg_hook_conf)
EOF
    cat >"$PG_DATA/pg_hba.conf" <<'EOF'
# Written by the dev stack script on every start. DEV ONLY.
# TYPE  DATABASE     USER  ADDRESS        METHOD
# socket dir is mode 0700, owned by the server's OS user: only that user (and root) can connect here
local   all          all                  trust
host    all          all   127.0.0.1/32   scram-sha-256
host    replication  all   127.0.0.1/32   scram-sha-256
EOF
    chown "$PG_OS_USER:" "$PG_DATA/cdc-stack.conf" "$PG_DATA/pg_hba.conf"
    chmod 0600 "$PG_DATA/cdc-stack.conf" "$PG_DATA/pg_hba.conf"
}

pg_initdb() {
    log "$PG_NAME: initdb in $PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
        >>"$PG_LOG" 2>&1 || die "$PG_NAME: initdb failed, see $PG_LOG"
    echo "include = 'cdc-stack.conf'" >>"$PG_DATA/postgresql.conf"
}

# pg_bootstrap: dev role and databases (idempotent), then the component's extras.
pg_bootstrap() {
    local db
    pg_psql_admin postgres <<EOF
SELECT format('CREATE ROLE %I', '$PG_DEV_USER')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_DEV_USER') \gexec
-- DEV ONLY: superuser with a well-known password, reachable on 127.0.0.1 only.
ALTER ROLE $PG_DEV_USER WITH LOGIN SUPERUSER PASSWORD '$PG_DEV_PASSWORD';
EOF
    for db in "${PG_DATABASES[@]}"; do
        pg_psql_admin postgres <<EOF
SELECT format('CREATE DATABASE %I OWNER %I', '$db', '$PG_DEV_USER')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db') \gexec
EOF
    done
    pg_hook_bootstrap
}

# ---- subcommands -----------------------------------------------------------------------------------------------

pg_install() {
    apt_ensure "${PG_APT_PACKAGES[@]}"
    [[ -x $PG_BIN/postgres ]] || die "$PG_NAME: $PG_BIN/postgres missing after install"
    pg_ensure_os_user
    pg_hook_install
}

pg_start() {
    # Running and healthy: nothing to do. Running but not (yet) healthy: it may be starting up, or its
    # postmaster may just have died (a killed postmaster stays a zombie until reaped): wait, then decide.
    local i
    for ((i = 0; i < 15; i++)); do
        pg_running || break
        if pg_healthy; then
            log "$PG_NAME: already running on 127.0.0.1:$PG_PORT"
            if ! pg_tls_on; then
                # started by an older version of this script: turn TLS on without a restart
                pg_write_config
                as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" reload >/dev/null ||
                    die "$PG_NAME: pg_ctl reload failed, see $PG_LOG"
                wait_for "$PG_NAME TLS" 10 pg_tls_on || die "$PG_NAME: TLS still off after reload, see $PG_LOG"
                log "$PG_NAME: TLS on (reloaded)"
            fi
            return 0
        fi
        sleep 1
    done
    ! pg_running ||
        die "$PG_NAME: running but not accepting connections as $PG_DEV_USER on 127.0.0.1:$PG_PORT, see $PG_LOG"
    [[ -x $PG_BIN/pg_ctl ]] || die "$PG_NAME: not installed ($PG_BIN/pg_ctl missing); run '$0 install'"
    ! port_open "$PG_PORT" || die "$PG_NAME: port 127.0.0.1:$PG_PORT is taken by another process"
    pg_ensure_os_user
    pg_prepare_dirs
    [[ -f $PG_DATA/PG_VERSION ]] || pg_initdb
    pg_write_config
    log "$PG_NAME: starting on 127.0.0.1:$PG_PORT (log $PG_LOG)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_START_TIMEOUT" start >/dev/null 2>&1 ||
        die "$PG_NAME: failed to start, see $PG_LOG"
    pg_bootstrap >>"$PG_LOG" 2>&1 || die "$PG_NAME: creating role/databases failed, see $PG_LOG"
    wait_for "$PG_NAME" 10 pg_healthy ||
        die "$PG_NAME: started but $PG_DEV_USER cannot connect over TCP, see $PG_LOG"
    log "$PG_NAME: up — $(pg_url "$PG_MAIN_DB")"
}

pg_stop() {
    if ! pg_running; then
        log "$PG_NAME: not running"
        return 0
    fi
    log "$PG_NAME: stopping"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$PG_START_TIMEOUT" stop >/dev/null ||
        die "$PG_NAME: pg_ctl stop failed, see $PG_LOG"
}

pg_status() {
    local addr="127.0.0.1:$PG_PORT" version
    if pg_running && pg_healthy && version=$(pg_hook_version) && [[ -n $version ]]; then
        status_line "$PG_NAME" "$version" up "$addr"
        return 0
    fi
    status_line "$PG_NAME" "$(pg_binary_version || true)" down "$addr"
    return 1
}

pg_main() {
    case "${1:-}" in
        install) pg_install ;;
        start) pg_start ;;
        stop) pg_stop ;;
        status) pg_status ;;
        env) pg_hook_env ;;
        *) die "usage: $0 install|start|stop|status|env" ;;
    esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    pg_init_component postgres "$POSTGRES_PORT"
    PG_DATABASES=(warehouse vault)
    PG_MAIN_DB=warehouse
    pg_main "$@"
fi
