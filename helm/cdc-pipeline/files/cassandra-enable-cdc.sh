#!/usr/bin/env bash
# Entrypoint wrapper for the official cassandra:5.0 image, used by docker-compose.yml and by the chart's
# capture.mode=statefulset: turns CDC on in /etc/cassandra/cassandra.yaml, then hands over to the image's own
# entrypoint (which applies the CASSANDRA_* variables and starts the node).
#
# Settings (see docs/cassandra-setup.md):
#   cdc_enabled: true                 tables created WITH cdc = true keep their commit-log segments in cdc_raw
#   cdc_raw_directory                 shared with the capture container (CDC_RAW_DIR). Cassandra hard-links each
#   commitlog_directory               segment from the commit log into cdc_raw, so both must be on ONE file
#                                     system: both live in the one volume mounted in both containers.
#   cdc_total_space                   cap of cdc_raw; Cassandra rejects writes to CDC tables when it is full
#                                     (capture.cdc_total_space_bytes in pipeline.yaml must say the same)
#   commitlog_sync: periodic, 500ms   _cdc.idx advances on every sync: the sync period bounds capture latency
#   commitlog_segment_size: 32MiB     Cassandra's default; smaller segments are handed over sooner
set -euo pipefail
conf="${CASSANDRA_CONF:-/etc/cassandra}/cassandra.yaml"   # CASSANDRA_CONF is set by the official image
: "${COMMITLOG_DIR:=/var/lib/cassandra/cdc/commitlog}"
: "${CDC_RAW_DIR:=/var/lib/cassandra/cdc/cdc_raw}"
: "${CDC_TOTAL_SPACE:=4096MiB}"
: "${COMMITLOG_SYNC_PERIOD:=500ms}"

set_key() { # set_key KEY VALUE: replace the key (commented out or not) or append it.
    if grep -qE "^#? ?$1:" "$conf"; then
        sed -ri "s|^#? ?$1:.*|$1: $2|" "$conf"
    else
        printf '%s: %s\n' "$1" "$2" >>"$conf"
    fi
}
set_key commitlog_directory "$COMMITLOG_DIR"
set_key cdc_enabled true
set_key cdc_raw_directory "$CDC_RAW_DIR"
set_key cdc_total_space "$CDC_TOTAL_SPACE"
set_key cdc_free_space_check_interval 250ms
set_key commitlog_sync periodic
set_key commitlog_sync_period "$COMMITLOG_SYNC_PERIOD"
mkdir -p "$COMMITLOG_DIR" "$CDC_RAW_DIR"
# As root (compose) the directories go to the cassandra user; as that user (Kubernetes) this is a no-op.
chown cassandra:cassandra "$COMMITLOG_DIR" "$CDC_RAW_DIR" 2>/dev/null || true
exec docker-entrypoint.sh "$@"
