#!/usr/bin/env python3
"""Run CQL statements against the local dev Cassandra and print the rows (tab-separated, header first).

Usage: cql.py "STATEMENT" ...    (or "-" to read ';'-separated statements from stdin)
Address from CDC_CASSANDRA_CQL (default 127.0.0.1:19042). Used by dev/components/cassandra.sh cql.
"""
import os
import sys

from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
from cassandra.policies import WhiteListRoundRobinPolicy


def statements(args):
    for arg in args:
        if arg == "-":
            for stmt in sys.stdin.read().split(";"):
                if stmt.strip():
                    yield stmt.strip()
        else:
            yield arg


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    host, _, port = os.environ.get("CDC_CASSANDRA_CQL", "127.0.0.1:19042").rpartition(":")
    profile = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]), request_timeout=60)
    cluster = Cluster([host], port=int(port), protocol_version=5,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    try:
        session = cluster.connect()
        for stmt in statements(sys.argv[1:]):
            rows = session.execute(stmt)
            if rows.column_names:
                print("\t".join(rows.column_names))
                for row in rows:
                    print("\t".join("" if v is None else str(v) for v in row))
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
