#!/usr/bin/env python3
"""TEST HARNESS: a ClickHouse HTTP interface emulated over the embedded ClickHouse engine (chdb).

Production uses clickhouse-server. This front exists only so the local dev stack and the tests have a
ClickHouse that speaks HTTP on a machine where clickhouse-server is not available. It covers what the Rust
`clickhouse` crate (0.15, HTTP, Compression::None) and our tests use; see README.md beside this file.

One persistent chdb connection is opened on --data; every request runs under one lock (the engine keeps
per-connection state such as the current database and settings, which each request sets and resets).
Only the Python standard library and chdb are used.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

# The real server reports its timezone in X-ClickHouse-Timezone; pin the engine to UTC so that holds.
os.environ["TZ"] = "UTC"
time.tzset()

import chdb  # noqa: E402  (after TZ is pinned)

INSERT_CHUNK = 4 << 20

# URL parameters of the HTTP interface that are not engine settings: accepted and handled or ignored.
NON_SETTING_PARAMS = {
    "query", "database", "default_format", "user", "password", "quota_key", "query_id", "session_id",
    "session_timeout", "session_check", "compress", "decompress", "buffer_size", "wait_end_of_query",
    "role", "stacktrace", "client_protocol_version", "http_response_headers",
}

# HTTP status per exception name, as clickhouse-server's HTTPHandler maps it; anything else is 500.
STATUS_BY_ERROR = {
    **dict.fromkeys([
        "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE", "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_DATE",
        "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER", "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
        "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6", "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "CANNOT_PARSE_UUID",
        "DUPLICATE_COLUMN", "ILLEGAL_COLUMN", "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE",
        "TOO_DEEP_AST", "TOO_BIG_AST", "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA",
        "TYPE_MISMATCH", "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
    ], 400),
    **dict.fromkeys([
        "UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
        "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION",
        "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE",
    ], 404),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "TIMEOUT_EXCEEDED": 408,
    "READONLY": 403,
    "ACCESS_DENIED": 403,
}

CONTENT_TYPES = {
    "tabseparated": "text/tab-separated-values; charset=UTF-8",
    "tsv": "text/tab-separated-values; charset=UTF-8",
    "tabseparatedwithnames": "text/tab-separated-values; charset=UTF-8; header=present",
    "tsvwithnames": "text/tab-separated-values; charset=UTF-8; header=present",
    "tabseparatedwithnamesandtypes": "text/tab-separated-values; charset=UTF-8; header=present",
    "tsvwithnamesandtypes": "text/tab-separated-values; charset=UTF-8; header=present",
    "csv": "text/csv; charset=UTF-8; header=absent",
    "csvwithnames": "text/csv; charset=UTF-8; header=present",
    "json": "application/json; charset=UTF-8",
    "jsoncompact": "application/json; charset=UTF-8",
    "jsoneachrow": "application/x-ndjson; charset=UTF-8",
    "jsoncompacteachrow": "application/x-ndjson; charset=UTF-8",
    "jsonstringseachrow": "application/x-ndjson; charset=UTF-8",
    "xml": "application/xml; charset=UTF-8",
}
BINARY_FORMATS = {"rowbinary", "rowbinarywithnames", "rowbinarywithnamesandtypes", "rowbinarywithdefaults",
                  "native", "parquet", "arrow", "arrowstream", "orc", "avro", "protobuf", "msgpack", "npy"}
# Output kinds of the chdb Python wrapper that are Python objects, not ClickHouse formats.
PY_ONLY_FORMATS = {"dataframe", "arrowtable", "debug"}


class ChError(Exception):
    """A ClickHouse-shaped error: numeric code, exception name, full message text."""

    def __init__(self, code: int, name: str, message: str):
        super().__init__(message)
        self.code, self.name, self.message = code, name, message


def ch_error(code: int, name: str, text: str, version: str) -> ChError:
    return ChError(code, name, f"Code: {code}. DB::Exception: {text}. ({name}) (version {version} (official build))")


def error_from_engine(exc: BaseException, version: str) -> ChError:
    text = str(exc).strip()
    start = text.find("Code: ")
    m = re.match(r"Code: (\d+)\. ", text[start:]) if start >= 0 else None
    if not m:
        return ch_error(1001, "STD_EXCEPTION", text or type(exc).__name__, version)
    text = text[start:]
    # chdb sometimes nests the same prefix several times ("Code: 73. DB::Exception: Code: 73. ...").
    text = re.sub(r"^(Code: \d+\. DB::Exception: )(?:Code: \d+\. DB::Exception: )+", r"\1", text)
    names = re.findall(r"\(([A-Z][A-Z0-9_]+)\)", text)
    name = names[0] if names else "UNKNOWN_EXCEPTION"
    if "(version " not in text:
        text = f"{text} (version {version} (official build))"
    return ChError(int(m.group(1)), name, text)


# ---------------------------------------------------------------------------------------------------------
# A small SQL scanner: top-level words and semicolons, skipping literals, quoted identifiers and comments.

_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def scan(sql: str):
    """Yield (token, start, end, depth) for words and ';' outside literals/comments."""
    i, n, depth = 0, len(sql), 0
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
        elif sql.startswith("--", i) or (c == "#" and sql.startswith("#!", i)) or sql.startswith("# ", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c in "([{":
            depth += 1
            i += 1
        elif c in ")]}":
            depth -= 1
            i += 1
        elif c == ";":
            yield ";", i, i + 1, depth
            i += 1
        elif c.isalpha() or c == "_":
            m = _WORD_RE.match(sql, i)
            yield m.group(0), m.start(), m.end(), depth
            i = m.end()
        elif c.isdigit():
            while i < n and (sql[i].isalnum() or sql[i] in "._"):
                i += 1
        else:
            i += 1


class Statement:
    """What the front needs to know about one request's SQL text."""

    def __init__(self, sql: str):
        self.sql = sql
        self.kind = ""               # first keyword, upper case
        self.insert_prefix = None    # "INSERT INTO t(cols) [SETTINGS ..]" when INSERT ... FORMAT fmt
        self.insert_format = None
        self.inline_data = b""       # data after "FORMAT fmt" in the SQL text itself
        self.output_format = None    # explicit FORMAT clause of a non-INSERT statement
        self.multi = False
        words = []
        gen = scan(sql)
        for tok, start, end, depth in gen:
            if not self.kind and tok != ";":
                self.kind = tok.upper()
            if tok == ";":
                # anything but whitespace/comments after a top-level ';' is a second statement
                if depth == 0 and any(True for _ in scan(sql[end:])):
                    self.multi = True
                break
            words.append((tok, start, end, depth))
            if self.kind != "INSERT" or depth != 0:
                continue
            if tok.upper() == "VALUES" and len(words) > 1:
                break  # INSERT ... VALUES: an ordinary statement; the data must not be scanned
            if tok.upper() == "FORMAT":
                k = end
                while k < len(sql) and sql[k].isspace():
                    k += 1
                m = _WORD_RE.match(sql, k)
                if m:
                    self.insert_prefix = sql[:start].rstrip()
                    self.insert_format = m.group(0)
                    rest = sql[m.end():].lstrip(" \t")
                    if rest.startswith("\r\n"):
                        rest = rest[2:]
                    elif rest.startswith("\n"):
                        rest = rest[1:]
                    self.inline_data = rest.encode("utf-8", "surrogateescape")
                break
        if self.insert_format is None:
            # "... FORMAT <name>" closes a statement, optionally followed by a SETTINGS clause.
            top = [w for w in words if w[3] == 0]
            for k in range(len(top) - 2, -1, -1):
                tail = top[k + 2:]
                if (top[k][0].upper() == "FORMAT" and not sql[top[k][2]:].lstrip().startswith("(")
                        and not sql[top[k + 1][2]:].lstrip().startswith("(")
                        and (not tail or tail[0][0].upper() == "SETTINGS")):
                    self.output_format = top[k + 1][0]
                    break

    def head(self, limit=100) -> str:
        text = self.sql if self.insert_format is None else f"{self.insert_prefix} FORMAT {self.insert_format}"
        return " ".join(text.split())[:limit]


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---------------------------------------------------------------------------------------------------------


class Engine:
    def __init__(self, data_dir: str):
        os.makedirs(data_dir, exist_ok=True)
        self.lock = threading.Lock()
        self.conn = chdb.connect(data_dir)
        self.version = self._bytes("SELECT version()").decode().strip()
        self.setting_names = set(self._bytes("SELECT name FROM system.settings").decode().split())

    def _bytes(self, sql: str, fmt: str = "TabSeparated", params=None) -> bytes:
        res = self.conn.query(sql, fmt, params=params or {})
        return res.bytes() if hasattr(res, "bytes") else bytes(res)

    def close(self):
        with self.lock:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001
                pass

    def check_settings(self, settings: list[tuple[str, str]]):
        for name, _ in settings:
            if name not in self.setting_names:
                raise ch_error(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'", self.version)

    def run(self, stmt: Statement, data: bytes | None, database: str, settings: list[tuple[str, str]],
            params: dict[str, str], out_format: str) -> tuple[bytes, dict]:
        """Runs one statement; returns (body, summary). Raises ChError."""
        self.check_settings(settings)
        t0 = time.monotonic()
        summary = {"read_rows": 0, "read_bytes": 0, "written_rows": 0, "written_bytes": 0}
        with self.lock:
            applied = []
            try:
                self._bytes(f"USE {quote_ident(database)}")
                for name, value in settings:
                    self._bytes(f"SET {name} = {quote_literal(value)}")
                    applied.append(name)
                if stmt.insert_format is not None:
                    payload = stmt.inline_data
                    if data:
                        payload = (payload + b"\n" + data) if payload.strip() else data
                    ins = self.conn.send_insert(stmt.insert_prefix, stmt.insert_format)
                    try:
                        view = memoryview(payload)
                        for off in range(0, len(view), INSERT_CHUNK):
                            ins.append(view[off:off + INSERT_CHUNK])
                        res = ins.finish()
                    except BaseException:
                        try:
                            ins.cancel()
                        except Exception:  # noqa: BLE001
                            pass
                        raise
                    summary["written_rows"] = res.rows_written
                    summary["written_bytes"] = res.bytes_written
                    body = b""
                else:
                    sql = stmt.sql.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    if data:
                        sql = sql + "\n" + data.decode("utf-8", "replace")
                    res = self.conn.query(sql, out_format, params=params)
                    body = res.bytes() if hasattr(res, "bytes") else bytes(res)
                    for key in ("rows_read", "bytes_read"):
                        try:
                            summary[key.replace("rows_read", "read_rows").replace("bytes_read", "read_bytes")] = \
                                int(getattr(res, key)())
                        except Exception:  # noqa: BLE001
                            pass
            except ChError:
                raise
            except Exception as exc:  # noqa: BLE001  (ChdbError / RuntimeError from the engine)
                raise error_from_engine(exc, self.version) from None
            finally:
                if applied:
                    try:
                        self._bytes("SET " + ", ".join(f"{n} = DEFAULT" for n in applied))
                    except Exception as exc:  # noqa: BLE001
                        print(f"clickhouse-http: resetting settings failed: {exc}", file=sys.stderr, flush=True)
        summary["elapsed_ns"] = int((time.monotonic() - t0) * 1e9)
        return body, summary


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "clickhouse-http-test-front"
    engine: Engine = None  # set by main()
    _enable_compression = False

    def log_message(self, fmt, *args):  # silence the default per-request log; we log our own line
        pass

    # --- plumbing -------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("connection closed inside chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
            body = b"".join(parts)
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
        enc = (self.headers.get("Content-Encoding") or "").lower().strip()
        if enc in ("", "identity", "none"):
            return body
        if enc == "gzip":
            return gzip.decompress(body)
        if enc == "deflate":
            return zlib.decompress(body)
        raise ch_error(48, "NOT_IMPLEMENTED",
                       f"Content-Encoding '{enc}' is not supported by this test front (use no compression)",
                       self.engine.version)

    def _send(self, status: int, body: bytes, headers: dict | None = None, head_only=False):
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "text/plain; charset=UTF-8")
        accept = (self.headers.get("Accept-Encoding") or "").lower()
        if body and self._enable_compression and "gzip" in accept:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "Keep-Alive")
        self.send_header("Keep-Alive", "timeout=10")
        self.end_headers()
        if not head_only and body:
            self.wfile.write(body)

    def _log(self, what: str, status: int, t0: float):
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {self.command} {self.path.split('?')[0]} "
              f"{status} {(time.monotonic() - t0) * 1000:.1f}ms {what}", file=sys.stderr, flush=True)

    # --- HTTP methods ---------------------------------------------------------------------------------
    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_HEAD(self):
        t0 = time.monotonic()
        self._enable_compression = False
        path = urlsplit(self.path).path
        status = 200 if path in ("/", "/ping") else 404
        self._send(status, b"Ok.\n" if status == 200 else b"", head_only=True)
        self._log("", status, t0)

    def _handle(self):
        t0 = time.monotonic()
        self._enable_compression = False
        version = self.engine.version
        query_id = str(uuid.uuid4())
        stmt_head = ""
        try:
            url = urlsplit(self.path)
            params_list = parse_qsl(url.query, keep_blank_values=True)
            body = self._read_body() if self.command == "POST" else b""
            if url.path == "/ping" or url.path == "/replicas_status":
                self._send(200, b"Ok.\n")
                self._log("", 200, t0)
                return
            if url.path != "/":
                msg = f"There is no handle {url.path}\n\nUse / or /ping for health checks.\n".encode()
                self._send(404, msg)
                self._log("", 404, t0)
                return

            ctype = self.headers.get("Content-Type") or ""
            is_multipart = self.command == "POST" and ctype.lower().startswith("multipart/form-data")
            if is_multipart:
                params_list += parse_multipart(body, ctype)
            params = {}
            for k, v in params_list:
                params[k] = v  # the last occurrence wins, like the server
            self._enable_compression = params.get("enable_http_compression", "0") in ("1", "true")
            if "query_id" in params and params["query_id"]:
                query_id = params["query_id"]

            if self.command == "POST" and not is_multipart:
                if "query" in params:
                    text, data = params["query"], body
                else:
                    # surrogateescape keeps binary data after "INSERT ... FORMAT x" byte-exact
                    text, data = body.decode("utf-8", "surrogateescape"), None
            else:
                text, data = params.get("query", ""), None

            if not text.strip():
                if self.command == "GET" and "query" not in params:
                    self._send(200, b"Ok.\n")
                    self._log("", 200, t0)
                    return
                raise ch_error(62, "SYNTAX_ERROR", "Empty query", version)
            if params.get("decompress", "0") not in ("0", "false", ""):
                raise ch_error(48, "NOT_IMPLEMENTED",
                               "decompress=1 (ClickHouse-compressed request bodies) is not supported by this "
                               "test front; use Compression::None", version)

            stmt = Statement(text)
            stmt_head = stmt.head()
            if stmt.multi:
                raise ch_error(62, "SYNTAX_ERROR", "Multi-statements are not allowed", version)

            database = params.get("database") or self.headers.get("X-ClickHouse-Database") or "default"
            default_format = params.get("default_format") or self.headers.get("X-ClickHouse-Format") \
                or "TabSeparated"
            out_format = stmt.output_format or default_format
            if out_format.lower() in PY_ONLY_FORMATS:
                raise ch_error(73, "UNKNOWN_FORMAT", f"Unknown format {out_format}", version)
            query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
            settings = [(k, v) for k, v in params.items()
                        if not k.startswith("param_") and k not in NON_SETTING_PARAMS]

            result, summary = self.engine.run(stmt, data, database, settings, query_params, out_format)
            headers = {
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Timezone": "UTC",
                "X-ClickHouse-Server-Display-Name": socket.gethostname(),
                "X-ClickHouse-Summary": json.dumps(
                    {"read_rows": str(summary["read_rows"]), "read_bytes": str(summary["read_bytes"]),
                     "written_rows": str(summary["written_rows"]), "written_bytes": str(summary["written_bytes"]),
                     "total_rows_to_read": "0", "result_rows": "0", "result_bytes": str(len(result)),
                     "elapsed_ns": str(summary["elapsed_ns"])}, separators=(",", ":")),
            }
            if stmt.insert_format is None:
                headers["X-ClickHouse-Format"] = out_format
                lf = out_format.lower()
                headers["Content-Type"] = CONTENT_TYPES.get(lf) or (
                    "application/octet-stream" if lf in BINARY_FORMATS else "text/plain; charset=UTF-8")
            self._send(200, result, headers)
            self._log(stmt_head, 200, t0)
        except ChError as err:
            status = STATUS_BY_ERROR.get(err.name, 500)
            self._send(status, (err.message.rstrip("\n") + "\n").encode("utf-8", "replace"), {
                "X-ClickHouse-Exception-Code": str(err.code),
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Timezone": "UTC",
            })
            self._log(f"{stmt_head} -- Code: {err.code} ({err.name})", status, t0)
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001  (a bug in the front itself)
            err = ch_error(1001, "STD_EXCEPTION", f"{type(exc).__name__}: {exc}", version)
            try:
                self._send(500, (err.message + "\n").encode(), {"X-ClickHouse-Exception-Code": "1001"})
            except Exception:  # noqa: BLE001
                self.close_connection = True
            self._log(f"{stmt_head} -- front error: {exc!r}", 500, t0)


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """Fields of a multipart/form-data body (the crate sends `query` and `param_*` this way)."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        return []
    delim = b"--" + m.group(1).encode()
    fields = []
    for part in body.split(delim)[1:]:
        if part.startswith(b"--"):
            break
        part = part[2:] if part.startswith(b"\r\n") else part
        head, _, value = part.partition(b"\r\n\r\n")
        if value.endswith(b"\r\n"):
            value = value[:-2]
        nm = re.search(rb'name="([^"]*)"', head)
        if nm:
            fields.append((nm.group(1).decode(), value.decode("utf-8", "replace")))
    return fields


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="engine data directory (kept across restarts)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18123)
    ap.add_argument("--pidfile", help="write the server pid here once listening")
    args = ap.parse_args(argv)

    engine = Engine(args.data)
    Handler.engine = engine
    httpd = Server((args.host, args.port), Handler)

    def on_signal(signum, _frame):
        print(f"clickhouse-http: signal {signum}, shutting down", file=sys.stderr, flush=True)
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    host, port = httpd.server_address[:2]
    print(f"clickhouse-http: TEST HARNESS over chdb engine {engine.version}, data {args.data}, "
          f"listening on http://{host}:{port}", file=sys.stderr, flush=True)
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()
        engine.close()
        print("clickhouse-http: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
