"""The Platform seam: something that runs ``handler(event, context)`` invocations.

An invocation is asynchronous: ``invoke`` returns a future at once. On platforms that report
completion (the local function host, synchronous Lambda calls) the future resolves with the
handler's JSON result or fails with ``InvocationError``. On fire-and-forget platforms it resolves
with ``None`` once the invocation is accepted, and callers learn the outcome from the store.
Either way the store, not the future, is the source of truth for what a task produced.
"""
from __future__ import annotations

import abc
import datetime as dt
import json
import logging
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

#: Lambda's limit for an asynchronous (Event) invocation payload.
ASYNC_PAYLOAD_LIMIT = 256 * 1024

log = logging.getLogger(__name__)


class InvocationError(Exception):
    """An invocation ended without a result.

    ``kind`` is one of: ``error`` (the handler raised), ``crash`` (the function instance died),
    ``timeout``, ``oom`` (memory limit exceeded), ``throttled``, ``payload`` (event too large).
    """

    def __init__(self, kind: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.traceback = traceback


class PayloadTooLarge(InvocationError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__("payload", f"event is {size} bytes; the limit is {limit} bytes")


@dataclass
class PlatformStats:
    invocations: int = 0
    cold_starts: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"invocations": self.invocations, "cold_starts": self.cold_starts,
                "failures": dict(self.failures)}


def encode_event(event: dict[str, Any], limit: int = ASYNC_PAYLOAD_LIMIT) -> bytes:
    """JSON-encode an event as Lambda would, refusing one over the payload limit."""
    body = json.dumps(event, separators=(",", ":")).encode()
    if len(body) > limit:
        raise PayloadTooLarge(len(body), limit)
    return body


class Platform(abc.ABC):
    """Runs invocations of smr's worker entry point (``smr.worker.handler.handler``)."""

    #: True when futures carry the handler's result; False for fire-and-forget invocation.
    reports_results: bool = True
    #: True when every invocation runs in a process of its own that may die (a crash, a kill at
    #: the timeout or memory limit) without taking the caller along; fault injection needs it.
    isolates_functions: bool = False

    def __init__(self, *, memory_mb: int, timeout_s: float, concurrency: int) -> None:
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.stats = PlatformStats()

    @abc.abstractmethod
    def invoke(self, event: dict[str, Any]) -> "Future[Any]":
        """Start one invocation; never blocks on the invocation itself."""

    def invoke_many(self, events: list[dict[str, Any]]) -> "list[Future[Any]]":
        return [self.invoke(e) for e in events]

    def invoke_event(self, event: dict[str, Any]) -> None:
        """An asynchronous ("Event") invocation, as Lambda makes it: fire and forget.

        When it fails, the function's on-failure destination, which smr sets to the function
        itself, receives Lambda's destination record (``destination_record``), so failures reach
        the store even when nobody waits for the invocation.
        """
        try:
            fut = self.invoke(event)
        except InvocationError as exc:
            self._to_destination(event, exc)
            return
        fut.add_done_callback(lambda f: self._event_done(event, f))

    def _event_done(self, event: dict[str, Any], fut: "Future[Any]") -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            return
        if not isinstance(exc, InvocationError):
            exc = InvocationError("error", f"{type(exc).__name__}: {exc}")
        self._to_destination(event, exc)

    def _to_destination(self, event: dict[str, Any], exc: InvocationError) -> None:
        if "requestPayload" in event:  # a failed destination call is logged, never re-sent
            log.error("on-failure destination failed: %s", exc)
            return
        try:
            self.invoke(destination_record(event, exc))
        except Exception as e:  # closed, or the record is too big: the failure stays in the log
            log.error("asynchronous invocation failed (%s) and could not be reported: %s", exc, e)

    def close(self) -> None:
        """Stop every function instance this platform started."""

    def __enter__(self) -> "Platform":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def destination_record(event: dict[str, Any], exc: InvocationError,
                       function_arn: str = "smr") -> dict[str, Any]:
    """What Lambda sends to an on-failure destination when an asynchronous invocation failed."""
    return {
        "version": "1.0",
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(),
        "requestContext": {"requestId": "", "functionArn": function_arn,
                           "condition": "RetriesExhausted", "approximateInvokeCount": 1},
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                            "functionError": "Unhandled"},
        "responsePayload": {"errorType": exc.kind, "errorMessage": exc.message},
    }
