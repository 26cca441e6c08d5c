#!/usr/bin/env bash
# dev/components/timescaledb.sh — PostgreSQL 15 + TimescaleDB for the local stack (ARCHITECTURE §7, §11).
#
#   timescaledb.sh install|start|stop|status|env      (contract: dev/lib.sh)
#
# A second PostgreSQL 15 cluster on 127.0.0.1:$TIMESCALE_PORT (15433), data in $STACK_DIR/timescaledb/data,
# database `timeseries` with the timescaledb extension. Same dev-only role `cdc` / password `cdc` (superuser) and
# the same layout and auth as postgres.sh, whose functions this script reuses.
#
# TimescaleDB $TIMESCALEDB_VERSION is not packaged for Debian 12, so `install` builds it from Debian 13 (trixie)'s
# source package against Debian 12's postgresql-server-dev-15 (Apache-licensed part only, -DAPACHE_ONLY=ON):
#   - the source is fetched with a PRIVATE apt configuration in $CDC_STACK_CACHE/apt-trixie (own sources.list,
#     state and cache); the machine's apt sources are never touched;
#   - source and build are cached in $CDC_STACK_CACHE/timescaledb-<version>;
#   - `make install` (into /usr/lib/postgresql/15 and /usr/share/postgresql/15) runs only when the extension's
#     files are missing there, so a warm `install` takes well under a second.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR disable=SC2034  # PG_* are read by postgres.sh
source "$(dirname "${BASH_SOURCE[0]}")/postgres.sh"

pg_init_component timescaledb "$TIMESCALE_PORT"
PG_DATABASES=(timeseries)
PG_MAIN_DB=timeseries
# Build dependencies of the extension (also listed in dev/apt-packages.txt).
PG_APT_PACKAGES+=("postgresql-server-dev-$PG_MAJOR" cmake build-essential libssl-dev dpkg-dev xz-utils
    debian-archive-keyring)

TS_CACHE=$CDC_STACK_CACHE/timescaledb-$TIMESCALEDB_VERSION
TS_APT=$CDC_STACK_CACHE/apt-trixie
TS_BUILD_LOG=$TS_CACHE/build.log

# Debian's archive keyring; versions >= 2023.3+deb12u2 of Debian 12's debian-archive-keyring also carry the
# trixie (Debian 13) signing keys, so the private trixie index is verified with the machine's normal keyring.
TS_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

pg_hook_conf() {
    cat <<'EOF'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
# TimescaleDB background workers (default 16) plus parallel query need worker slots
timescaledb.max_background_workers = 8
max_worker_processes = 16
EOF
}

pg_hook_bootstrap() {
    pg_psql_admin timeseries -c 'CREATE EXTENSION IF NOT EXISTS timescaledb'
}

pg_hook_version() {
    local pg ts
    pg=$(pg_server_version) || return 1
    ts=$(pg_query_tcp timeseries "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'") || return 1
    [[ -n $pg && -n $ts ]] || return 1
    printf '%s/ts-%s\n' "$pg" "$ts"
}

pg_binary_version() { printf '%s/ts-%s\n' "$("$PG_BIN/postgres" --version | awk '{print $3}')" "$TIMESCALEDB_VERSION"; }

pg_hook_env() {
    printf 'export CDC_TIMESCALE_URL=%s\n' "$(pg_url timeseries)"
    printf 'export CDC_TIMESCALE_CA_FILE=%s\n' "$PG_HOME/tls/ca.crt"
}

pg_hook_install() {
    exec 9>"$CDC_STACK_CACHE/timescaledb.lock"
    flock 9
    if ts_installed; then
        log "timescaledb: $TIMESCALEDB_VERSION already installed in $("$PG_BIN/pg_config" --pkglibdir)"
        return 0
    fi
    [[ -f $TS_CACHE/build/.built ]] || ts_build
    [[ $EUID -eq 0 ]] || die "timescaledb: need root for 'make install' into /usr/lib/postgresql/$PG_MAJOR"
    log "timescaledb: make install"
    make -C "$TS_CACHE/build" install >>"$TS_BUILD_LOG" 2>&1 || die "timescaledb: make install failed, see $TS_BUILD_LOG"
    ts_installed || die "timescaledb: extension files still missing after make install, see $TS_BUILD_LOG"
}

# ts_installed: the loader, the versioned library, the install script and a control file defaulting to our version.
ts_installed() {
    local lib share
    lib=$("$PG_BIN/pg_config" --pkglibdir) share=$("$PG_BIN/pg_config" --sharedir)/extension
    [[ -f $lib/timescaledb.so && -f $lib/timescaledb-$TIMESCALEDB_VERSION.so &&
       -f $share/timescaledb--$TIMESCALEDB_VERSION.sql ]] &&
        grep -q "^default_version = '$TIMESCALEDB_VERSION'" "$share/timescaledb.control" 2>/dev/null
}

# ts_apt ARGS...: apt-get/apt-cache with the private trixie configuration.
ts_apt() {
    local tool=$1; shift
    local opts=(-o "Dir::Etc::sourcelist=$TS_APT/sources.list" -o Dir::Etc::sourceparts=-
        -o "Dir::State=$TS_APT/state" -o Dir::State::status=/var/lib/dpkg/status -o "Dir::Cache=$TS_APT/cache"
        -o Acquire::Languages=none)
    # root's $HOME is 0700: apt's unprivileged `_apt` download user could not write into the cache there.
    [[ $EUID -ne 0 ]] || opts+=(-o APT::Sandbox::User=root)
    "$tool" "${opts[@]}" "$@"
}

# ts_fetch_source: download and unpack trixie's timescaledb source package into $TS_CACHE/src.
ts_fetch_source() {
    [[ -f $TS_KEYRING && -f /usr/share/keyrings/debian-archive-trixie-stable.gpg ]] || {
        log "timescaledb: archive keyring lacks the Debian 13 keys, upgrading debian-archive-keyring"
        apt-get -o DPkg::Lock::Timeout=600 -y -q install debian-archive-keyring >&2 ||
            die "timescaledb: could not upgrade debian-archive-keyring"
    }
    mkdir -p "$TS_APT/state/lists/partial" "$TS_APT/cache/archives/partial"
    # deb-src only; verified against Debian's archive keyring (signed-by), never added to the machine's sources.
    echo "deb-src [signed-by=$TS_KEYRING] http://deb.debian.org/debian trixie main" >"$TS_APT/sources.list"
    log "timescaledb: apt-get update (private trixie deb-src index in $TS_APT)"
    ts_apt apt-get -q update >>"$TS_BUILD_LOG" 2>&1 ||
        die "timescaledb: private apt-get update failed, see $TS_BUILD_LOG"

    local debver upstream
    debver=$(ts_apt apt-cache showsrc timescaledb 2>>"$TS_BUILD_LOG" | awk '/^Version:/ {print $2}' | sort -V | tail -1)
    [[ -n $debver ]] || die "timescaledb: no timescaledb source package in trixie, see $TS_BUILD_LOG"
    upstream=${debver#*:} upstream=${upstream%-*} upstream=${upstream%%+*}
    [[ $upstream == "$TIMESCALEDB_VERSION" ]] ||
        die "timescaledb: trixie now carries $debver, not the pinned $TIMESCALEDB_VERSION; bump TIMESCALEDB_VERSION in dev/lib.sh (and check the build)"

    local dl=$TS_CACHE/download
    rm -rf "$dl" "$TS_CACHE/src"
    mkdir -p "$dl"
    log "timescaledb: apt-get source timescaledb=$debver"
    (cd "$dl" && ts_apt apt-get -q source --download-only "timescaledb=$debver") >>"$TS_BUILD_LOG" 2>&1 ||
        die "timescaledb: apt-get source failed, see $TS_BUILD_LOG"
    # File checksums were checked by apt against the signed index; dpkg-source has no keyring for the .dsc
    # signature itself and only warns about it.
    (cd "$dl" && dpkg-source -x ./*.dsc "$TS_CACHE/src.tmp") >>"$TS_BUILD_LOG" 2>&1 ||
        die "timescaledb: dpkg-source -x failed, see $TS_BUILD_LOG"
    mv "$TS_CACHE/src.tmp" "$TS_CACHE/src"
    rm -f "$TS_CACHE"/timescaledb_*.orig.tar.*    # dpkg-source's copy next to the output dir; download/ keeps one
}

ts_build() {
    mkdir -p "$TS_CACHE"
    : >"$TS_BUILD_LOG"
    [[ -f $TS_CACHE/src/CMakeLists.txt ]] || ts_fetch_source
    log "timescaledb: building $TIMESCALEDB_VERSION (log $TS_BUILD_LOG)"
    rm -rf "$TS_CACHE/build"
    cmake -S "$TS_CACHE/src" -B "$TS_CACHE/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DPG_CONFIG="$PG_BIN/pg_config" -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DWARNINGS_AS_ERRORS=OFF >>"$TS_BUILD_LOG" 2>&1 ||
        die "timescaledb: cmake configure failed, see $TS_BUILD_LOG"
    # nice + 2 jobs: the box is shared with other builds
    nice -n 10 make -C "$TS_CACHE/build" -j2 >>"$TS_BUILD_LOG" 2>&1 ||
        die "timescaledb: build failed, see $TS_BUILD_LOG"
    touch "$TS_CACHE/build/.built"
}

pg_main "$@"
