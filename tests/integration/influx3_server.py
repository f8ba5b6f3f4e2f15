#!/usr/bin/python3
"""influx3_server.py - a stand-in for InfluxDB 3 Core's write API, for tests.

InfluxDB 3 is not packaged for Debian (SPEC.md 13.8), so the sink-influxdb3
tests write here. What it reproduces of InfluxDB 3:
  - POST /api/v3/write_lp?db=&precision=nanosecond[&accept_partial=false]
    and /api/v2/write?bucket=&precision=ns: 204 when every line was stored;
  - Authorization "Token <t>" or "Bearer <t>" checked: 401 otherwise;
  - Content-Encoding: gzip inflated;
  - line protocol parsed by its own parser (not the sink's encoder): tags,
    typed fields (float, 42i, 42u, "string", true/false), ns timestamps;
  - per-table column types: a field whose type differs from the column's,
    or a field named like a tag (or the reverse), answers 400 with a JSON
    error body and, as accept_partial=false, stores none of the request;
  - rows are keyed by (table, tags, time): a second write overwrites.
Not reproduced: querying (SQL), databases created on demand, retention.

Control endpoints for the tests (same port):
  GET  /rows                    every stored row as JSON lines
  GET  /requests                one JSON line per write request seen
  POST /script?status=503&count=2[&delay_ms=..][&body=...][&min_lines=N]
                                the next `count` writes answer `status`
                                (status 0: answer normally but after delay_ms);
                                with min_lines, only writes of at least N
                                lines take the entry (smaller ones pass by)
  POST /reset                   forget rows, requests and scripts
Usage: influx3_server.py --port N --token T --ready FILE [--discard]
  --discard: check the token, read (and inflate) the body, answer 204 at
  once without parsing or storing (a write server for benchmarks)
"""
import argparse
import gzip
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
ROWS = {}      # (table, tags tuple, time) -> {"table","tags","fields","time"}
COLUMNS = {}   # table -> {column: kind}
REQUESTS = []
SCRIPT = []    # [(status, delay_ms, body, min_lines)]


class LineError(Exception):
    pass


def unescape(s, chars):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] in chars:
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def split_unescaped(s, sep, start=0):
    """Index of the first `sep` at or after start not preceded by a backslash
    and not inside double quotes; -1 if none."""
    quoted, i = False, start
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == sep and not quoted:
            return i
        i += 1
    return -1


def parse_value(v):
    if v.startswith('"'):
        if len(v) < 2 or not v.endswith('"'):
            raise LineError("unterminated string")
        return "string", unescape(v[1:-1], '"\\')
    if re.fullmatch(r"-?\d+i", v):
        return "int64", int(v[:-1])
    if re.fullmatch(r"\d+u", v):
        return "uint64", int(v[:-1])
    if v in ("t", "T", "true", "True", "TRUE"):
        return "bool", True
    if v in ("f", "F", "false", "False", "FALSE"):
        return "bool", False
    if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", v):
        return "float64", float(v)
    raise LineError("invalid field value %r" % v)


def parse_line(line):
    sp = split_unescaped(line, " ")
    if sp < 0:
        raise LineError("no fields")
    head, rest = line[:sp], line[sp + 1:]
    sp2 = split_unescaped(rest, " ")
    fields_s, ts = (rest, None) if sp2 < 0 else (rest[:sp2], rest[sp2 + 1:])
    parts, i = [], 0
    while True:
        j = split_unescaped(head, ",", i)
        parts.append(head[i:] if j < 0 else head[i:j])
        if j < 0:
            break
        i = j + 1
    table = unescape(parts[0], ", ")
    tags = {}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        if not eq or not v:
            raise LineError("bad tag %r" % p)
        tags[unescape(k, ",= ")] = unescape(v, ",= ")
    fields, i = {}, 0
    while i < len(fields_s):
        j = split_unescaped(fields_s, ",", i)
        item = fields_s[i:] if j < 0 else fields_s[i:j]
        eq = split_unescaped(item, "=")
        if eq <= 0:
            raise LineError("bad field %r" % item)
        fields[unescape(item[:eq], ",= ")] = parse_value(item[eq + 1:])
        if j < 0:
            break
        i = j + 1
    if not fields:
        raise LineError("no fields")
    if ts is None or not re.fullmatch(r"-?\d+", ts):
        raise LineError("bad timestamp %r" % ts)
    return table, tags, fields, int(ts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    token = ""
    discard = False

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", ctype="application/json"):
        self.send_response(status)
        if body:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        with LOCK:
            if self.path == "/rows":
                rows = [dict(r, fields={k: [t, v] for k, (t, v) in r["fields"].items()})
                        for r in ROWS.values()]
                body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
            elif self.path == "/requests":
                body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in REQUESTS)
            else:
                return self.answer(404)
        self.answer(200, body.encode(), "text/plain")

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if url.path == "/script":
            with LOCK:
                for _ in range(int(q.get("count", "1"))):
                    SCRIPT.append((int(q.get("status", "0")), int(q.get("delay_ms", "0")),
                                   q.get("body", ""), int(q.get("min_lines", "0"))))
            return self.answer(204)
        if url.path == "/reset":
            with LOCK:
                ROWS.clear(), COLUMNS.clear(), REQUESTS.clear(), SCRIPT.clear()
            return self.answer(204)
        if url.path not in ("/api/v3/write_lp", "/api/v2/write"):
            return self.answer(404)
        self.write(url.path, q, body)

    def write(self, path, q, body):
        gz = self.headers.get("Content-Encoding", "") == "gzip"
        raw_len = len(body)
        if gz:
            body = gzip.decompress(body)
        if self.discard:
            ok = self.headers.get("Authorization", "") in ("Token " + self.token,
                                                             "Bearer " + self.token)
            return self.answer(204) if ok else self.answer(401, b'{"error":"unauthorized access"}')
        text = body.decode("utf-8", errors="replace")
        lines = [l for l in text.split("\n") if l and not l.startswith("#")]
        with LOCK:
            take = SCRIPT and len(lines) >= SCRIPT[0][3]
            script = SCRIPT.pop(0)[:3] if take else (0, 0, "")
        auth = self.headers.get("Authorization", "")
        with LOCK:
            REQUESTS.append({"path": path, "query": q, "gzip": gz, "bytes": raw_len,
                             "authorization": auth, "lines": len(lines),
                             "content_type": self.headers.get("Content-Type", ""),
                             "status": script[0] or None})
        status, delay_ms, sbody = script
        if delay_ms:
            time.sleep(delay_ms / 1000.0)
        if status:
            return self.answer(status, sbody.encode() or
                               json.dumps({"error": "scripted %d" % status}).encode())
        if auth not in ("Token " + self.token, "Bearer " + self.token):
            return self.answer(401, b'{"error":"unauthorized access"}')
        db = q.get("db") if path == "/api/v3/write_lp" else q.get("bucket")
        precision = q.get("precision")
        if not db or precision not in ("nanosecond", "ns"):
            return self.answer(400, b'{"error":"missing db or precision"}')
        try:
            parsed = [parse_line(l) for l in lines]
        except LineError as e:
            return self.answer(400, json.dumps({"error": "parsing failed: %s" % e}).encode())
        with LOCK:
            cols = {t: dict(c) for t, c in COLUMNS.items()}
            for table, tags, fields, ts in parsed:
                c = cols.setdefault(table, {})
                for k in tags:
                    if c.setdefault(k, "tag") != "tag":
                        return self.type_error(table, k, c[k], "tag")
                for k, (kind, _) in fields.items():
                    if c.setdefault(k, kind) != kind:
                        return self.type_error(table, k, c[k], kind)
            COLUMNS.clear()
            COLUMNS.update(cols)
            for table, tags, fields, ts in parsed:
                key = (table, tuple(sorted(tags.items())), ts)
                ROWS[key] = {"table": table, "tags": tags, "fields": fields, "time": ts}
        self.answer(204)

    def type_error(self, table, col, have, got):
        msg = {"error": "partial write of line protocol occurred",
               "data": [{"error_message": "invalid column type for column '%s', expected %s, "
                         "got %s" % (col, have, got), "table": table}]}
        self.answer(400, json.dumps(msg).encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", default="")
    ap.add_argument("--ready", required=True)
    ap.add_argument("--discard", action="store_true")
    a = ap.parse_args()
    Handler.token = a.token
    Handler.discard = a.discard
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    with open(a.ready, "w") as f:
        f.write("ready\n")
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
