#!/usr/bin/env bash
# Debezium's Cassandra 5 connector in its standalone mode, for the head-to-head in `make bench`
# (docs/benchmarks.md, "Head-to-head"). Never part of `make test`.
#
#   debezium.sh install              resolve the connector and its runtime dependencies from Maven Central
#                                    into $CDC_STACK_CACHE/debezium-cassandra-5-<version> (cached)
#   debezium.sh run CONF_DIR         run the connector in the foreground with CONF_DIR/debezium.properties
#                                    (the bench writes it, and a cassandra.yaml whose cdc_raw_directory is a
#                                    copy of the segments: the connector moves processed segments away)
#   debezium.sh version              the connector version used
#
# DEBEZIUM_VERSION overrides the version (default below: the newest one Maven Central serves for the
# cassandra-5 module; 3.6.1.Final, the version of the rest of Debezium, is not served for it).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

DEBEZIUM_VERSION="${DEBEZIUM_VERSION:-3.4.0.Final}"
COORD="io.debezium:debezium-connector-cassandra-5:$DEBEZIUM_VERSION"
LIB="$CDC_STACK_CACHE/debezium-cassandra-5-$DEBEZIUM_VERSION"
CASSANDRA_LIB="$CDC_STACK_CACHE/cassandra-$CASSANDRA_VERSION/lib"
MAIN_CLASS="${DEBEZIUM_MAIN_CLASS:-io.debezium.connector.cassandra.CassandraConnectorTask}"

# The connector's POMs name a parent (debezium-connector-reactor-cassandra) that Maven Central does
# not serve, so Maven cannot resolve their dependencies: the two connector jars are fetched on their own
# (dependency:get, no transitive resolution) and the dependencies that parent declares are listed here
# by hand (the classes the connector jars reference: Debezium core, Kafka Connect, the DataStax driver 4,
# Jetty 9 + Dropwizard servlets for its HTTP endpoint).
DEPS=(
    "io.debezium:debezium-core:$DEBEZIUM_VERSION"
    "org.apache.kafka:connect-api:4.1.1"
    "org.apache.kafka:connect-json:4.1.1"
    "org.apache.kafka:kafka-clients:4.1.1"
    "org.apache.cassandra:java-driver-core:4.18.1"
    "io.dropwizard.metrics:metrics-servlets:4.2.28"
    "io.dropwizard.metrics:metrics-jmx:4.2.28"
    "org.eclipse.jetty:jetty-servlet:9.4.57.v20241219"
    "org.apache.commons:commons-math3:3.2"
)

install() {
    [[ -f $LIB/.complete ]] && return 0
    maven_fetch "$LIB.deps" "${DEPS[@]}"
    local work="$LIB.partial" a
    rm -rf "$work"; mkdir -p "$work"
    for a in debezium-connector-cassandra-core debezium-connector-cassandra-5; do
        log "fetching io.debezium:$a:$DEBEZIUM_VERSION (jar only)"
        mvn -B -q -Dmaven.repo.local="$CDC_STACK_CACHE/m2" dependency:get \
            -Dartifact="io.debezium:$a:$DEBEZIUM_VERSION" -Dtransitive=false >"$work/mvn-$a.log" 2>&1 ||
            { tail -n 20 "$work/mvn-$a.log" >&2; die "io.debezium:$a:$DEBEZIUM_VERSION is not served"; }
        cp "$CDC_STACK_CACHE/m2/io/debezium/$a/$DEBEZIUM_VERSION/$a-$DEBEZIUM_VERSION.jar" "$work/"
    done
    cp "$LIB.deps"/*.jar "$work/"
    rm -f "$work"/*.log
    rm -rf "$LIB"; mv "$work" "$LIB"; touch "$LIB/.complete"
}

# The class path: the Cassandra server jars of the running node first (the connector decodes commit
# logs with Cassandra's own classes, which must see their own Netty, Guava and Jackson), then the
# connector's jars.
classpath() {
    local cp="$CASSANDRA_LIB/*" j
    for j in "$LIB"/*.jar; do cp+=":$j"; done
    printf '%s\n' "$cp"
}

run() {
    local conf=${1:?usage: debezium.sh run CONF_DIR}
    [[ -f $LIB/.complete ]] || install
    [[ -d $CASSANDRA_LIB ]] || die "Cassandra jars not found in $CASSANDRA_LIB (run make stack-up)"
    exec "$(java_bin)" -Xmx${DEBEZIUM_HEAP:-1g} -XX:+UseG1GC \
        --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED \
        --add-exports=java.base/sun.nio.ch=ALL-UNNAMED --add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED \
        --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED \
        --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED \
        --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED \
        --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/jdk.internal.misc=ALL-UNNAMED \
        -Dcassandra.config="file://$conf/cassandra.yaml" -Dcassandra.storagedir="$conf/storage" \
        -Dlogback.configurationFile="file://$conf/logback.xml" \
        -cp "$(classpath)" "$MAIN_CLASS" "$conf/debezium.properties"
}

case ${1:-} in
    install) install ;;
    run) shift; run "$@" ;;
    version) echo "$DEBEZIUM_VERSION" ;;
    classpath) classpath ;;
    *) die "usage: $0 install|run CONF_DIR|version|classpath" ;;
esac
