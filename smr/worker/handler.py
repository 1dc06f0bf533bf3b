"""The one entry point for every role, with Lambda's signature: handler(event, context)."""
from __future__ import annotations

import logging
import traceback
from typing import Any

from .. import layout
from .runtime import WARM

log = logging.getLogger(__name__)


def handler(event: dict[str, Any], context: Any) -> Any:
    if event.get("report_errors"):
        return _reporting_errors(event, context)
    if "event_ref" in event:
        # The payload was too big to send inline (Lambda's 256 KB limit); it waits in the store.
        work = WARM.store(event["work"], event.get("store_options"))
        event = layout.read_json(work, event["event_ref"])
    role = event.get("role")
    if role == "map":
        from . import map_task
        return map_task.run(event, context)
    if role == "reduce":
        from . import reduce_task
        return reduce_task.run(event, context)
    if role == "ping":
        return {"pong": True}
    raise ValueError(f"unknown role {role!r} in event")


def _reporting_errors(event: dict[str, Any], context: Any) -> Any:
    """Run the event; if it fails, leave the error where the driver looks for it.

    Fire-and-forget platforms (Lambda ``Event`` invocations) set ``report_errors``: no caller
    receives the result, so a task's error goes to ``layout.error_key`` in the work store.
    """
    inner = {k: v for k, v in event.items() if k != "report_errors"}
    try:
        return handler(inner, context)
    except Exception as e:
        try:
            work = WARM.store(inner["work"], inner.get("store_options"))
            task = layout.read_json(work, inner["event_ref"]) if "event_ref" in inner else inner
            if task.get("role") in ("map", "reduce"):
                key = layout.error_key(task["job_id"], task["step"], task["role"], task["task"],
                                       task["attempt"])
                layout.write_json(work, key, {"task": task["task"], "attempt": task["attempt"],
                                              "error": f"{type(e).__name__}: {e}",
                                              "traceback": traceback.format_exc()})
        except Exception:  # the task's own error matters more than the record of it
            log.exception("could not write the error record")
        raise
