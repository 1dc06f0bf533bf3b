"""An HTTP proxy on 127.0.0.1 that injects S3's transient faults in front of a real server.

Requests pass through unchanged (the Host header too, so SigV4 signatures stay valid) except
those a queued fault matches: answered with ``503 SlowDown``, cut off by a TCP reset, answered
with half a body before the connection drops, stalled past the client's read timeout, or
forwarded with the reply lost on the way back (the server did the work; the client must retry).
"""
from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b'<Message>Please reduce your request rate.</Message></Error>')


@dataclass
class Fault:
    kind: str  # "slowdown", "reset", "truncate", "stall", "lost_reply"
    match: Callable[[str, str, dict], bool]
    times: int = 1
    stall_s: float = 3.0


@dataclass
class Log:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, range
    injected: list[tuple[str, str, str]] = field(default_factory=list)  # kind, method, path


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        u = urlsplit(upstream)
        self.upstream = (u.hostname, u.port)
        self.faults: list[Fault] = []
        self.log = Log()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # the faults break connections on purpose

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def add(self, kind: str, method: str | None = None, path_contains: str = "",
            times: int = 1, query_contains: str = "", stall_s: float = 3.0) -> None:
        def match(m: str, path: str, headers: dict) -> bool:
            p, _, q = path.partition("?")
            return ((method is None or m == method) and path_contains in p
                    and query_contains in q)
        with self._lock:
            self.faults.append(Fault(kind, match, times, stall_s))

    def _take(self, method: str, path: str, headers: dict) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times > 0 and f.match(method, path, headers):
                    f.times -= 1
                    return f
        return None

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(f.times for f in self.faults)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k: v for k, v in h.headers.items() if k.lower() != "expect"}
        with self.log.lock:
            self.log.requests.append((h.command, h.path, h.headers.get("Range", "")))
        fault = self._take(h.command, h.path, headers)
        if fault is not None:
            with self.log.lock:
                self.log.injected.append((fault.kind, h.command, h.path))
        if fault is not None and fault.kind == "slowdown":
            h.send_response(503)
            h.send_header("Content-Type", "application/xml")
            h.send_header("Content-Length", str(len(SLOWDOWN)))
            h.end_headers()
            h.wfile.write(SLOWDOWN if h.command != "HEAD" else b"")
            return
        if fault is not None and fault.kind == "reset":
            _reset(h)
            return
        if fault is not None and fault.kind == "stall":
            time.sleep(fault.stall_s)
            _reset(h)
            return
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if fault is not None and fault.kind == "lost_reply":
            _reset(h)  # the server did the work; the client never hears of it
            return
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                h.send_header(k, v)
        size = resp.getheader("Content-Length") if h.command == "HEAD" else None
        h.send_header("Content-Length", size or str(len(data)))
        h.end_headers()
        if h.command == "HEAD":
            return
        if fault is not None and fault.kind == "truncate" and len(data) > 1:
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            # A plain close (FIN), not a reset: a reset would discard the half already sent.
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Drop the connection with a TCP RST, as a crashing load balancer would."""
    h.close_connection = True
    try:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
    except OSError:
        pass
