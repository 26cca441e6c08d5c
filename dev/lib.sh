#!/usr/bin/env bash
# Shared helpers for the local stack scripts. Sourced, never run.
#
# Contract for every dev/components/<name>.sh:
#   <name>.sh install   download/build into $CDC_STACK_CACHE (idempotent, fast when cached)
#   <name>.sh start     start if not already running (idempotent); waits until healthy; exit !=0 on failure
#   <name>.sh stop      stop if running (idempotent)
#   <name>.sh status    print one line "<name>\t<version>\t<up|down>\t<address>"; exit 0 only when healthy
# State and logs live under $STACK_DIR/<name>/; everything binds to 127.0.0.1.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${CDC_STACK_DIR:-$REPO_ROOT/.stack}"
CDC_STACK_CACHE="${CDC_STACK_CACHE:-$HOME/.cache/cdc-pipeline}"
mkdir -p "$STACK_DIR" "$CDC_STACK_CACHE"

# Fixed ports (ARCHITECTURE §11).
KAFKA_PORT=19092
KAFKA_CONTROLLER_PORT=19093
CASSANDRA_CQL_PORT=19042
CASSANDRA_STORAGE_PORT=17000
CASSANDRA_JMX_PORT=17199
POSTGRES_PORT=15432
TIMESCALE_PORT=15433
CLICKHOUSE_HTTP_PORT=18123
SCHEMA_REGISTRY_PORT=18081

# Pinned versions.
KAFKA_VERSION=4.1.1
CASSANDRA_VERSION=5.0.6
TIMESCALEDB_VERSION=2.19.3
CHDB_CORE_VERSION=26.9.0
APICURIO_VERSION=2.6.13.Final

log()  { printf '[stack %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { printf '[stack %s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for NAME SECONDS COMMAND...: poll COMMAND every second until it succeeds or time runs out.
wait_for() {
    local name=$1 secs=$2; shift 2
    local i
    for ((i = 0; i < secs; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    return 1
}

# pid_alive FILE: true when FILE holds the pid of a running process.
pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pidfile FILE NAME [SECONDS]: TERM, wait, then KILL.
stop_pidfile() {
    local file=$1 name=$2 secs=${3:-30} pid i
    pid_alive "$file" || { rm -f "$file"; return 0; }
    pid=$(cat "$file")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs; i++)); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return 0; }
        sleep 1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$file"
}

status_line() { printf '%-16s %-22s %-5s %s\n' "$1" "$2" "$3" "$4"; }

# maven_fetch [--no-deps] DEST COORD...: resolve each groupId:artifactId:version[:type[:classifier]] with its
# runtime dependencies (none with --no-deps) from Maven Central into DEST (flat directory), using the local repository
# $CDC_STACK_CACHE/m2 so a fresh clone on the same machine reuses every download. DEST is written atomically
# (built as DEST.partial, then renamed) and a DEST/.complete marker makes later calls a no-op.
maven_fetch() {
    local excl=""
    if [[ ${1:-} == --no-deps ]]; then
        excl="<exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions>"
        shift
    fi
    local dest=$1; shift
    [[ -f $dest/.complete ]] && return 0
    command -v mvn >/dev/null || die "maven_fetch: mvn not found (apt-get install maven)"
    local work="$dest.partial" coord deps="" g a v t c
    rm -rf "$work"; mkdir -p "$work/pom"
    for coord in "$@"; do
        IFS=: read -r g a v t c <<<"$coord"
        deps+="<dependency><groupId>$g</groupId><artifactId>$a</artifactId><version>$v</version>"
        [[ -n ${t:-} ]] && deps+="<type>$t</type>"
        [[ -n ${c:-} ]] && deps+="<classifier>$c</classifier>"
        deps+="$excl</dependency>"
    done
    cat >"$work/pom/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cdc-pipeline.stack</groupId><artifactId>fetch</artifactId><version>0</version>
  <packaging>pom</packaging>
  <dependencies>$deps</dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId><version>3.8.1</version>
  </plugin></plugins></build>
</project>
POM
    log "resolving $* from Maven Central (cache $CDC_STACK_CACHE/m2)"
    if ! mvn -B -q -f "$work/pom/pom.xml" -Dmaven.repo.local="$CDC_STACK_CACHE/m2" \
            dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$work/lib" \
            >"$work/mvn.log" 2>&1; then
        tail -n 30 "$work/mvn.log" >&2
        die "maven_fetch: resolving $* failed (full log: $work/mvn.log)"
    fi
    rm -rf "$dest"; mv "$work/lib" "$dest"; rm -rf "$work"
    touch "$dest/.complete"
}

# java_bin: the java launcher to use (CDC_JAVA overrides; default: java on PATH, i.e. JDK 17).
java_bin() { printf '%s\n' "${CDC_JAVA:-java}"; }

# start_daemon PIDFILE LOGFILE COMMAND...: run COMMAND detached (own session, no stdin) with stdout/stderr
# appended to LOGFILE, and record its pid in PIDFILE.
start_daemon() {
    local pidfile=$1 logfile=$2; shift 2
    mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
    nohup setsid "$@" </dev/null >>"$logfile" 2>&1 &
    echo $! >"$pidfile"
}

# apt_ensure PKG...: apt-get install the Debian packages that are not installed yet (needs root when any are
# missing). Near-instant when all are present. Waits for the dpkg lock if another install is running.
apt_ensure() {
    local p missing=()
    for p in "$@"; do
        [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $EUID -eq 0 ]] || die "missing Debian packages (need root to install): ${missing[*]}"
    log "apt-get install ${missing[*]}"
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends)
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >&2 ||
        { apt-get -o DPkg::Lock::Timeout=600 -q update >&2 &&
          DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >&2; } ||
        die "apt-get install failed for: ${missing[*]}"
}
