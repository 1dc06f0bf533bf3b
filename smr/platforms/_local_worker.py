"""The function-instance side of the local host (see ``smr.platforms.local``).

This module runs inside worker processes and is preloaded into the forkserver, so it imports only
what every instance needs anyway. The protocol over the pipe, all messages pickled by
``Connection.send``:

- host -> worker: ``(request_id, event_json_bytes)`` for an invocation, ``None`` to stop.
- worker -> host: ``("ok", result_json_str, peak_rss_bytes)`` or
  ``("error", "ExcType: message", traceback_text, peak_rss_bytes)``.
- worker -> host, while an invocation runs: ``("invoke", [event_json_bytes, ...])`` asks the host
  to make asynchronous invocations (fan-out, commit events); the host answers ``("invoked", n)``
  or ``("invoke-error", message)`` before the worker goes on.

Only strings and numbers cross back, so a result or exception that cannot be pickled cannot break
the host; the peak RSS lets the host see an allocation spike that came and went between two of its
polls, which Lambda would have punished.
"""
from __future__ import annotations

import importlib
import json
import os
import resource
import signal
import tempfile
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any, Callable

from smr.platforms.context import FunctionContext


def peak_rss_bytes() -> int:
    """This process's resident-memory high-water mark.

    VmHWM rather than ``ru_maxrss``-after-fork semantics matter here: a forkserver child starts
    with a fresh mm, so the mark covers this instance only, not the process it was forked from.
    """
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def load_handler(spec: str) -> Callable[[Any, Any], Any]:
    module_name, _, func_name = spec.partition(":")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in func_name.split("."):
        obj = getattr(obj, part)
    return obj


def _error_reply(exc: BaseException) -> tuple[Any, ...]:
    return ("error", f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)),
            peak_rss_bytes())


class _HostChannel:
    """Lets a handler ask the host for invocations over the instance's pipe (``smr_invoke``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()  # a handler may invoke from several threads

    def __call__(self, events: list[dict[str, Any]]) -> int:
        bodies = [json.dumps(e, separators=(",", ":")).encode() for e in events]
        with self._lock:
            self._conn.send(("invoke", bodies))
            answer = self._conn.recv()
        if answer[0] != "invoked":
            raise RuntimeError(f"the function host refused the invocation: {answer[1]}")
        return answer[1]


def _invoke(handler: Callable[[Any, Any], Any], faults: object | None, body: bytes,
            context: FunctionContext) -> tuple[Any, ...]:
    # A function of its own so the event and result die with its frame: a warm instance must not
    # carry the last invocation's data into the next one's memory budget.
    try:
        event = json.loads(body)
        if faults is not None:
            faults.before_invoke(event, context)  # type: ignore[attr-defined]
        result = handler(event, context)
    except Exception as exc:
        return _error_reply(exc)
    try:
        text = json.dumps(result)
    except (TypeError, ValueError) as exc:
        return ("error", f"Runtime.MarshalError: {exc}", "", peak_rss_bytes())
    del result, event
    return ("ok", text, peak_rss_bytes())


def main(conn: Connection, handler_spec: str, memory_mb: int, timeout_s: float,
         env: dict[str, str], faults: object | None) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the host decides what stops, and an
    # instance dying of KeyboardInterrupt would be reported as a crash of the user's function.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The forkserver's environment is a snapshot from when it started; the host sends the one this
    # instance should see (including SMR_FUNCTION_TMP and TMPDIR, Lambda's /tmp).
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None

    handler: Callable[[Any, Any], Any] | None = None
    cold = True
    channel = _HostChannel(conn)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break  # the host went away: an instance has nobody to serve
        if msg is None:
            break
        request_id, body = msg
        context = FunctionContext(aws_request_id=request_id, memory_limit_in_mb=memory_mb,
                                  deadline=time.monotonic() + timeout_s, cold_start=cold)
        context.smr_invoke = channel  # type: ignore[attr-defined]
        cold = False
        reply: tuple[Any, ...]
        if handler is None:
            # Imported on first use, like Lambda's init phase; a failed import is retried by the
            # next invocation rather than poisoning the instance.
            try:
                handler = load_handler(handler_spec)
            except Exception as exc:
                reply = _error_reply(exc)
        if handler is not None:
            reply = _invoke(handler, faults, body, context)
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            break
        del msg, body, reply
