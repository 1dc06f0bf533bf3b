"""The one entry point for every role, with Lambda's signature: handler(event, context)."""
from __future__ import annotations

import logging
from typing import Any

from .. import layout
from .runtime import WARM

log = logging.getLogger(__name__)


def handler(event: dict[str, Any], context: Any) -> Any:
    if "event_ref" in event:
        # The payload was too big to send inline (Lambda's 256 KB limit); it waits in the store.
        work = WARM.store(event["work"], event.get("store_options"))
        stored = layout.read_json(work, event["event_ref"])
        # The stored copy holds no store options (they may carry credentials); the inline ones do.
        event = {**stored, "store_options": event.get("store_options") or {}}
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
