"""The one entry point for every role, with Lambda's signature: handler(event, context)."""
from __future__ import annotations

import logging
import traceback
from typing import Any

from .. import layout
from .runtime import WARM

log = logging.getLogger(__name__)


def handler(event: dict[str, Any], context: Any) -> Any:
    # Set by fire-and-forget platforms: no caller sees the result, so errors go to the store.
    report_errors = bool(event.get("report_errors"))
    if "event_ref" in event:
        # The payload was too big to send inline (Lambda's 256 KB limit); it waits in the store.
        work = WARM.store(event["work"], event.get("store_options"))
        stored = layout.read_json(work, event["event_ref"])
        # The stored copy holds no store options (they may carry credentials); the inline ones do.
        event = {**stored, "store_options": event.get("store_options") or {}}
    if "Records" in event:
        # An object-created notification (S3's event shape): an upload or a task commit.
        from . import coordinator
        return coordinator.on_records(event, context)
    if "requestPayload" in event and "requestContext" in event:
        # Lambda's on-failure destination record for an asynchronous invocation.
        from . import coordinator
        return coordinator.on_failure(event, context)
    try:
        return _dispatch(event, context)
    except Exception as e:
        if report_errors and event.get("role") in ("map", "reduce"):
            _write_error_record(event, e)
        raise


def _dispatch(event: dict[str, Any], context: Any) -> Any:
    role = event.get("role")
    if role in ("map", "reduce", "tree-reduce"):
        from . import fanout
        return fanout.run_task(event, context)
    if role == "advance":
        from . import coordinator
        return coordinator.on_advance(event, context)
    if role == "ping":
        return {"pong": True}
    raise ValueError(f"unknown role {role!r} in event")


def _write_error_record(event: dict[str, Any], error: Exception) -> None:
    try:
        work = WARM.store(event["work"], event.get("store_options"))
        key = layout.error_key(event["job_id"], event["step"], event["role"], event["task"],
                               event["attempt"])
        layout.write_json(work, key, {"task": event["task"], "attempt": event["attempt"],
                                      "error": f"{type(error).__name__}: {error}",
                                      "traceback": traceback.format_exc()})
    except Exception:  # the original error matters more than the record of it
        log.exception("could not write the error record")
