"""A local stand-in for the AWS Lambda service: its Invoke API over HTTP, served on 127.0.0.1.

Invocations run in the local function host (``LocalPlatform``, with Lambda's memory, timeout and
payload limits), so boto3 -- and so ``LambdaPlatform`` -- can be exercised end to end without AWS:

- ``POST /2015-03-31/functions/{name}/invocations`` with ``X-Amz-Invocation-Type``
  ``RequestResponse`` (200 with the result, or 200 with ``X-Amz-Function-Error: Unhandled`` and
  Lambda's error payload), ``Event`` (202, run in the background) or ``DryRun`` (204);
- ``GET /2015-03-31/functions/{name}/configuration`` (the function's memory, timeout, handler);
- API errors as Lambda sends them (``x-amzn-ErrorType``): 404 ``ResourceNotFoundException`` for
  a function it does not serve, 413 ``RequestEntityTooLargeException`` past the payload limits
  (6 MB synchronous, 256 KB asynchronous), 429 ``TooManyRequestsException`` when a synchronous
  call finds ``concurrency`` invocations already running (asynchronous events queue instead, as
  on Lambda), 400 for a malformed request.

Workers see the server's filesystem and environment, so local-directory work dirs and outputs
work, as do S3-compatible stores reachable from here.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .base import ASYNC_PAYLOAD_LIMIT, InvocationError
from .local import LocalPlatform

log = logging.getLogger(__name__)

SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024
_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/(invocations|configuration)/?$")


def lambda_error_payload(err: InvocationError, request_id: str, timeout_s: float) -> dict[str, Any]:
    """What Lambda returns in the response body when an invocation fails."""
    if err.kind == "error":
        etype, _, msg = err.message.partition(": ")
        if not msg:
            etype, msg = "Exception", err.message
        return {"errorMessage": msg, "errorType": etype, "requestId": request_id,
                "stackTrace": err.traceback.splitlines(keepends=True)}
    if err.kind == "timeout":
        return {"errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {request_id} Error: Task timed out after "
                                f"{timeout_s:.2f} seconds"}
    if err.kind == "oom":
        return {"errorType": "Runtime.OutOfMemory",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: "
                                f"signal: killed ({err.message})"}
    return {"errorType": "Runtime.ExitError",
            "errorMessage": f"RequestId: {request_id} Error: Runtime exited with error: "
                            f"{err.message}"}


class LocalLambdaServer:
    """Serves Lambda's Invoke API for ``functions`` (any name when empty) on 127.0.0.1."""

    def __init__(self, *, port: int = 0, memory_mb: int = 1024, timeout_s: float = 900,
                 concurrency: int = 2, functions: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.functions = list(functions or [])
        self.env = dict(env or {})
        self._lock = threading.Lock()
        self._platforms: dict[str, LocalPlatform] = {}
        self._running: dict[str, int] = {}
        self.throttled = 0
        self.invocations = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LocalLambdaServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="smr-local-lambda",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()
        with self._lock:
            platforms = list(self._platforms.values())
            self._platforms.clear()
        for p in platforms:
            p.close()

    def __enter__(self) -> "LocalLambdaServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- functions ----------------------------------------------------------------------------
    def serves(self, name: str) -> bool:
        return not self.functions or name in self.functions

    def configuration(self, name: str) -> dict[str, Any]:
        return {"FunctionName": name,
                "FunctionArn": f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
                "Runtime": "python3.12", "Handler": "smr.worker.handler.handler",
                "MemorySize": self.memory_mb, "Timeout": int(self.timeout_s),
                "State": "Active", "LastUpdateStatus": "Successful"}

    def _platform(self, name: str) -> LocalPlatform:
        with self._lock:
            p = self._platforms.get(name)
            if p is None:
                p = self._platforms[name] = LocalPlatform(
                    memory_mb=self.memory_mb, timeout_s=self.timeout_s,
                    concurrency=self.concurrency, env=self.env)
            return p

    def _admit(self, name: str, sync: bool) -> bool:
        """Count an invocation in; a synchronous one over the concurrency limit is throttled."""
        with self._lock:
            running = self._running.get(name, 0)
            if sync and running >= self.concurrency:
                self.throttled += 1
                return False
            self._running[name] = running + 1
            self.invocations += 1
            return True

    def _release(self, name: str) -> None:
        with self._lock:
            self._running[name] -= 1

    def invoke(self, name: str, body: bytes, sync: bool) -> "Future[Any]":
        event = json.loads(body) if body.strip() else {}
        fut = self._platform(name).invoke(event)
        fut.add_done_callback(lambda _f: self._release(name))
        if not sync:
            fut.add_done_callback(self._log_async_failure)
        return fut

    @staticmethod
    def _log_async_failure(fut: "Future[Any]") -> None:
        exc = fut.exception()
        if exc is not None:
            log.warning("asynchronous invocation failed: %s", exc)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("%s " + fmt, self.address_string(), *args)

            def _send(self, status: int, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-amzn-RequestId", self.request_id)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def _api_error(self, status: int, code: str, message: str) -> None:
                body = json.dumps({"Type": "User", "message": message}).encode()
                self._send(status, body, {"x-amzn-ErrorType": code})

            def _route(self) -> tuple[str, str] | None:
                self.request_id = str(uuid.uuid4())
                m = _PATH.match(self.path.split("?", 1)[0])
                if not m:
                    self._api_error(404, "UnknownOperationException", f"no route for {self.path}")
                    return None
                name = m.group(1).rsplit(":", 1)[-1] if m.group(1).startswith("arn:") else m.group(1)
                if not server.serves(name):
                    self._api_error(404, "ResourceNotFoundException",
                                    f"Function not found: {m.group(1)}")
                    return None
                return name, m.group(2)

            def do_GET(self) -> None:  # noqa: N802 -- http.server's naming
                route = self._route()
                if route is None:
                    return
                name, what = route
                if what != "configuration":
                    self._api_error(405, "MethodNotAllowed", "use POST for invocations")
                    return
                self._send(200, json.dumps(server.configuration(name)).encode())

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                route = self._route()
                if route is None:
                    return
                name, what = route
                if what != "invocations":
                    self._api_error(405, "MethodNotAllowed", "use GET for configuration")
                    return
                kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
                if kind not in ("RequestResponse", "Event", "DryRun"):
                    self._api_error(400, "InvalidParameterValueException",
                                    f"invalid X-Amz-Invocation-Type {kind!r}")
                    return
                limit = SYNC_PAYLOAD_LIMIT if kind == "RequestResponse" else ASYNC_PAYLOAD_LIMIT
                if len(body) > limit:
                    self._api_error(413, "RequestEntityTooLargeException",
                                    f"{len(body)} byte payload is too large for the {kind} "
                                    f"invocation type (limit {limit} bytes)")
                    return
                try:
                    json.loads(body) if body.strip() else None
                except ValueError:
                    self._api_error(400, "InvalidRequestContentException",
                                    "Could not parse request body into json")
                    return
                if kind == "DryRun":
                    self._send(204)
                    return
                sync = kind == "RequestResponse"
                if not server._admit(name, sync):
                    self._api_error(429, "TooManyRequestsException", "Rate Exceeded.")
                    return
                try:
                    fut = server.invoke(name, body, sync)
                except InvocationError as e:
                    server._release(name)
                    self._api_error(413, "RequestEntityTooLargeException", e.message)
                    return
                except RuntimeError as e:  # the host is shutting down
                    server._release(name)
                    self._api_error(503, "ServiceException", str(e))
                    return
                if not sync:
                    self._send(202)
                    return
                try:
                    result = fut.result()
                except InvocationError as e:
                    payload = lambda_error_payload(e, self.request_id, server.timeout_s)
                    self._send(200, json.dumps(payload).encode(),
                               {"X-Amz-Function-Error": "Unhandled",
                                "X-Amz-Executed-Version": "$LATEST"})
                    return
                self._send(200, json.dumps(result).encode(),
                           {"X-Amz-Executed-Version": "$LATEST"})

        return Handler
