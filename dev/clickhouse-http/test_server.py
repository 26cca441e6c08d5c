"""Tests of the ClickHouse HTTP test front (server.py). Each module run starts its own server instance on a
free port with a temporary data directory, so no running stack is needed. Run with run-tests.sh."""
from __future__ import annotations

import base64
import http.client
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("server.py")
ERROR_BODY = re.compile(r"^Code: (\d+)\. DB::Exception: .+\(([A-Z_0-9]+)\) \(version 26\.9[^\n]*\n$", re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Front:
    """A server.py process plus a small HTTP client for it."""

    def __init__(self, data_dir: Path, log_path: Path):
        self.data_dir, self.log_path = data_dir, log_path
        self.port = free_port()
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--data", str(self.data_dir), "--port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, f"server exited early: {self.log_path.read_text()}"
            try:
                if self.request("GET", "/ping")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not answer /ping: {self.log_path.read_text()}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self.log.close()
        return rc

    def request(self, method, path, body=None, headers=None, chunked=False):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            if chunked:
                conn.request(method, path, body=iter([body[: len(body) // 2], body[len(body) // 2:]]),
                             headers=headers or {}, encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def q(self, sql: str | None = None, body: bytes | str | None = None, expect=200, headers=None,
          chunked=False, **params):
        """POST to /: `sql` goes into the `query` URL parameter when `body` is given, else into the body."""
        if sql is not None and body is None:
            body, sql = sql, None
        if sql is not None:
            params["query"] = sql
        path = "/?" + urllib.parse.urlencode(params) if params else "/"
        if isinstance(body, str):
            body = body.encode()
        status, hdrs, data = self.request("POST", path, body, headers, chunked)
        if expect is not None:
            assert status == expect, (status, data)
        return status, hdrs, data

    def text(self, sql, **params) -> str:
        return self.q(sql, **params)[2].decode()


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    base = tmp_path_factory.mktemp("front")
    f = Front(base / "data", base / "server.log").start()
    yield f
    assert f.stop() == 0


@pytest.fixture(scope="module")
def table(front):
    db = "ks_" + uuid.uuid4().hex[:8]
    front.q(f"CREATE DATABASE {db}")
    front.q("""
        CREATE TABLE t
        (
            id UInt64,
            v String,
            ver UInt64,
            is_deleted UInt8
        )
        ENGINE = ReplacingMergeTree(ver, is_deleted)
        ORDER BY id
        SETTINGS non_replicated_deduplication_window = 100
    """, database=db)
    # The tests count raw rows next to FINAL results; a background merge would collapse versions under them.
    front.q("SYSTEM STOP MERGES t", database=db)
    return db


# --- encoders for the binary formats the crate sends ---------------------------------------------------

def varuint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def rb_string(s: str) -> bytes:
    b = s.encode()
    return varuint(len(b)) + b


def rowbinary(rows) -> bytes:
    return b"".join(struct.pack("<Q", i) + rb_string(v) + struct.pack("<QB", ver, d) for i, v, ver, d in rows)


def native_block(rows) -> bytes:
    """ClickHouse Native format as sent over HTTP (no block info), columns id, v, ver, is_deleted."""
    out = varuint(4) + varuint(len(rows))
    out += rb_string("id") + rb_string("UInt64") + b"".join(struct.pack("<Q", r[0]) for r in rows)
    out += rb_string("v") + rb_string("String") + b"".join(rb_string(r[1]) for r in rows)
    out += rb_string("ver") + rb_string("UInt64") + b"".join(struct.pack("<Q", r[2]) for r in rows)
    out += rb_string("is_deleted") + rb_string("UInt8") + bytes(r[3] for r in rows)
    return out


def final_rows(front, db):
    return front.text("SELECT id, v, ver FROM t FINAL ORDER BY id FORMAT TSV", database=db).splitlines()


# --- tests ---------------------------------------------------------------------------------------------

def test_ping_and_root(front):
    for path in ("/ping", "/"):
        status, _, body = front.request("GET", path)
        assert (status, body) == (200, b"Ok.\n")
    status, _, _ = front.request("GET", "/no/such/handler")
    assert status == 404


def test_version_and_headers(front):
    status, h, body = front.q("SELECT version()", query_id="qid-1")
    assert body.decode().startswith("26.9.")
    assert h["X-ClickHouse-Format"] == "TabSeparated"
    assert h["X-ClickHouse-Timezone"] == "UTC"
    assert h["X-ClickHouse-Query-Id"] == "qid-1"
    summary = json.loads(h["X-ClickHouse-Summary"])
    assert all(isinstance(v, str) for v in summary.values()) and "read_rows" in summary
    assert front.text("SELECT timezone()") == "UTC\n"


def test_get_with_query_param(front):
    status, _, body = front.request("GET", "/?query=" + urllib.parse.quote("SELECT 40 + 2"))
    assert (status, body) == (200, b"42\n")


def test_rowbinary_jsoneachrow_native_insert_and_final(front, table):
    db = table
    # RowBinary, as client.insert::<Row>() sends it with validation off
    front.q("INSERT INTO t(`id`,`v`,`ver`,`is_deleted`) FORMAT RowBinary",
            rowbinary([(1, "a", 1, 0), (2, "b", 1, 0)]), database=db)
    # RowBinaryWithNamesAndTypes, as the crate sends it with validation on
    header = varuint(4) + b"".join(rb_string(n) for n in ("id", "v", "ver", "is_deleted")) \
        + b"".join(rb_string(t) for t in ("UInt64", "String", "UInt64", "UInt8"))
    front.q("INSERT INTO t(id,v,ver,is_deleted) FORMAT RowBinaryWithNamesAndTypes",
            header + rowbinary([(3, "c", 1, 0)]), database=db)
    # JSONEachRow: newer version of id 1
    front.q("INSERT INTO t FORMAT JSONEachRow", '{"id":1,"v":"a2","ver":2,"is_deleted":0}\n', database=db)
    # Native: tombstone for id 2 (newer version, is_deleted = 1) and an older version of id 3 (ignored)
    front.q("INSERT INTO t FORMAT Native", native_block([(2, "b", 5, 1), (3, "old", 0, 0)]), database=db)
    # TSV inside the POST body together with the statement
    front.q("INSERT INTO t FORMAT TSV\n4\td\t1\t0\n", database=db)
    # RowBinary inside the POST body, with bytes that are not UTF-8 (ver 0: older, hidden by FINAL)
    front.q(b"INSERT INTO t FORMAT RowBinary\n" + struct.pack("<Q", 4) + varuint(2) + b"\xff\xfe"
            + struct.pack("<QB", 0, 0), database=db)
    assert front.text("SELECT count() FROM t", database=db) == "8\n"
    assert front.text("SELECT hex(v) FROM t WHERE id = 4 AND ver = 0", database=db) == "FFFE\n"
    assert final_rows(front, db) == ["1\ta2\t2", "3\tc\t1", "4\td\t1"]
    # the same through RowBinaryWithNamesAndTypes, which fetch_all() reads
    _, h, body = front.q("SELECT id, v FROM t FINAL WHERE id = 1", database=db,
                         default_format="RowBinaryWithNamesAndTypes")
    assert h["X-ClickHouse-Format"] == "RowBinaryWithNamesAndTypes"
    assert h["Content-Type"] == "application/octet-stream"
    assert body == varuint(2) + rb_string("id") + rb_string("v") + rb_string("UInt64") + rb_string("String") \
        + struct.pack("<Q", 1) + rb_string("a2")


def test_chunked_insert_body(front, table):
    front.q("INSERT INTO t FORMAT JSONEachRow", '{"id":50,"v":"chunk","ver":1,"is_deleted":0}\n' * 3,
            database=table, chunked=True)
    assert front.text("SELECT v FROM t FINAL WHERE id = 50", database=table) == "chunk\n"


def test_insert_deduplication_token(front, table):
    db = table
    count = lambda: int(front.text("SELECT count() FROM t WHERE id >= 100", database=db))  # noqa: E731
    ins = "INSERT INTO t FORMAT JSONEachRow"
    front.q(ins, '{"id":100,"v":"x","ver":1,"is_deleted":0}', database=db, insert_deduplication_token="tok-A")
    assert count() == 1
    # same token, different data: a no-op only if the token really reached the engine
    front.q(ins, '{"id":101,"v":"y","ver":1,"is_deleted":0}', database=db, insert_deduplication_token="tok-A")
    assert count() == 1
    # a new token inserts, even for data identical to the first block
    front.q(ins, '{"id":100,"v":"x","ver":1,"is_deleted":0}', database=db, insert_deduplication_token="tok-B")
    assert count() == 2
    # and the token does not stick to the next request
    front.q(ins, '{"id":102,"v":"z","ver":1,"is_deleted":0}', database=db)
    assert count() == 3


def test_settings_apply_per_request_only(front):
    status, h, body = front.q("SELECT number FROM numbers(5)", expect=500, max_result_rows="1",
                              result_overflow_mode="throw")
    assert h["X-ClickHouse-Exception-Code"] == "396"
    assert front.text("SELECT number FROM numbers(5) FORMAT CSV") == "0\n1\n2\n3\n4\n"
    assert front.text("SELECT getSetting('max_result_rows')") == "0\n"
    # HTTP-level parameters the crate may send are accepted
    assert front.text("SELECT 1", wait_end_of_query="1", session_id="s1", query_id="q",
                      send_progress_in_http_headers="1", max_execution_time="60",
                      date_time_input_format="best_effort", output_format_json_quote_64bit_integers="0") == "1\n"
    status, h, body = front.q("SELECT 1", expect=404, no_such_setting="1")
    assert h["X-ClickHouse-Exception-Code"] == "115"


def test_param_placeholders_url_and_multipart(front, table):
    assert front.text("SELECT {a:UInt32} + 1, {s:String} FORMAT CSV", param_a="41", param_s="it's") == "42,\"it's\"\n"
    # the crate sends .param() values as multipart/form-data fields next to `query`
    boundary = "----b" + uuid.uuid4().hex
    fields = {"query": "SELECT v FROM t FINAL WHERE id = {id:UInt64} FORMAT JSONEachRow", "param_id": "3"}
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in fields.items()) + f"--{boundary}--\r\n"
    status, h, data = front.request("POST", "/?" + urllib.parse.urlencode({"database": table,
                                                                           "default_format": "RowBinary"}),
                                    body.encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert (status, data) == (200, b'{"v":"c"}\n')
    assert h["X-ClickHouse-Format"] == "JSONEachRow"


def test_database_param_and_header(front, table):
    assert front.text("SELECT currentDatabase()", database=table) == f"{table}\n"
    _, _, body = front.q("SELECT currentDatabase()", headers={"X-ClickHouse-Database": table})
    assert body == f"{table}\n".encode()
    # each request starts from its own database, not the previous request's
    assert front.text("SELECT currentDatabase()") == "default\n"
    _, h, body = front.q("SELECT 1", expect=404, database="no_such_db")
    assert h["X-ClickHouse-Exception-Code"] == "81" and b"(UNKNOWN_DATABASE)" in body


def test_errors_are_clickhouse_shaped(front):
    status, h, body = front.q("SELECT throwIf(1, 'boom')", expect=500)
    m = ERROR_BODY.match(body.decode())
    assert m, body
    assert m.group(1) == h["X-ClickHouse-Exception-Code"] == "395"
    status, h, body = front.q("SELEC 1", expect=400)   # clickhouse-server answers 400 for syntax errors
    assert h["X-ClickHouse-Exception-Code"] == "62" and ERROR_BODY.match(body.decode())
    status, h, body = front.q("SELECT * FROM default.no_such_table", expect=404)
    assert h["X-ClickHouse-Exception-Code"] == "60" and ERROR_BODY.match(body.decode())
    # a broken RowBinary body
    status, h, body = front.q("INSERT INTO default.nope FORMAT RowBinary", b"\x01", expect=None)
    assert status >= 400 and h["X-ClickHouse-Exception-Code"] == "60"


def test_multi_statements_rejected_but_multiline_ok(front):
    status, h, body = front.q("SELECT 1; SELECT 2", expect=400)
    assert h["X-ClickHouse-Exception-Code"] == "62" and b"Multi-statements" in body
    assert front.text("SELECT\n  1 AS a, -- one\n  ';' AS b /* two; */\nFORMAT TSV;\n") == "1\t;\n"


def test_auth_headers_accepted(front):
    basic = base64.b64encode(b"default:secret").decode()
    assert front.q("SELECT 1", headers={"Authorization": f"Basic {basic}"})[2] == b"1\n"
    assert front.q("SELECT 1", headers={"X-ClickHouse-User": "u", "X-ClickHouse-Key": "k"})[2] == b"1\n"


def test_keep_alive_connection(front):
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
    try:
        for i in range(3):
            conn.request("POST", "/", body=f"SELECT {i}".encode())
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, f"{i}\n".encode())
        conn.request("POST", "/", body=b"SELEC 1")
        resp = conn.getresponse()
        assert resp.status == 400
        resp.read()
        conn.request("GET", "/ping")
        assert conn.getresponse().read() == b"Ok.\n"
    finally:
        conn.close()


def test_log_has_query_not_insert_body(front, table):
    marker = "SECRET_" + uuid.uuid4().hex
    front.q("INSERT INTO t FORMAT JSONEachRow", f'{{"id":200,"v":"{marker}","ver":1,"is_deleted":0}}',
            database=table)
    front.q(f"SELECT '{marker[:7]}' AS logged_select")
    deadline = time.time() + 5   # the line is written right after the response is sent
    while "logged_select" not in (log := front.log_path.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    assert marker not in log
    assert re.search(r"POST / 200 [\d.]+ms INSERT INTO t FORMAT JSONEachRow", log)
    assert "logged_select" in log


def test_restart_keeps_databases_and_tables(tmp_path):
    f = Front(tmp_path / "data", tmp_path / "server.log").start()
    f.q("CREATE DATABASE keep")
    f.q("CREATE TABLE keep.t (id UInt64, ver UInt64) ENGINE = ReplacingMergeTree(ver) ORDER BY id")
    f.q("INSERT INTO keep.t FORMAT JSONEachRow", '{"id":1,"ver":1}\n{"id":1,"ver":2}\n')
    assert f.stop() == 0, "SIGTERM must stop the server cleanly"
    assert "stopped" in f.log_path.read_text()

    g = Front(tmp_path / "data", tmp_path / "server2.log").start()
    try:
        assert g.text("SELECT id, ver FROM keep.t FINAL") == "1\t2\n"
        assert g.text("EXISTS TABLE keep.t") == "1\n"
    finally:
        assert g.stop() == 0
