"""Running one task: its run record, MARLA's tree fan-out, and the commit event afterwards.

Tree fan-out: mapper ``n`` of ``N`` first invokes mappers ``n + 2**k`` for every ``2**k > n``
(below ``N``), so whoever starts the job invokes mapper 0 alone, every mapper makes at most
log2(N) calls, and the last mapper starts after O(log N) hops. A node writes a create-once marker
after invoking its children; a relaunched node that finds its marker does not invoke them again.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections import OrderedDict
from typing import Any

from .. import jobstate, layout
from ..platforms.invoker import invoker_for
from .runtime import WARM, check_job_id

log = logging.getLogger(__name__)


def tree_children(n: int, size: int) -> list[int]:
    """The mappers that mapper ``n`` starts in a tree of ``size`` mappers."""
    out = []
    step = 1
    while n + step < size:
        if step > n:
            out.append(n + step)
        step *= 2
    return out


def run_task(event: dict[str, Any], context: Any) -> Any:
    work = WARM.store(event["work"], event.get("store_options"))
    check_job_id(event["job_id"])
    token = WARM.task_started(work, event)
    try:
        return _run_task(work, event, context)
    finally:
        WARM.task_finished(token)


def _run_task(work: Any, event: dict[str, Any], context: Any) -> Any:
    invoker = None
    if "tree" in event or event.get("notify"):
        invoker = invoker_for(event.get("platform"), context)
    if "tree" in event:
        event = _tree_node(work, event, invoker)
    role = event["role"]
    if role == "map":
        from . import map_task
        result = map_task.run(event, context)
    elif role == "reduce":
        from . import reduce_task
        result = reduce_task.run(event, context)
    else:
        from . import tree_reduce
        result = tree_reduce.run(event, context)
    if event.get("notify") and invoker is not None:
        invoker.invoke([commit_event(event, jobstate.commit_key_of(event))])
    return result


def _tree_node(work: Any, event: dict[str, Any], invoker: Any) -> dict[str, Any]:
    n, size = event["task"], event["tree"]["size"]
    children = tree_children(n, size)
    if children:
        marker = layout.marker_key(event["job_id"], f"s{event['step']}-map", f"tree-{n:05d}")
        if work.head(marker) is None:
            invoker.invoke([{**event, "task": c, "attempt": uuid.uuid4().hex[:12]}
                            for c in children])
            work.put_if_absent(marker, b"")
    own = {k: v for k, v in event.items() if k != "tree"}
    own["splits"] = _plan(work, event["job_id"])["tasks"][n]
    return own


_plans: "OrderedDict[tuple[str, str], dict[str, Any]]" = OrderedDict()
_plans_lock = threading.Lock()


def _plan(work: Any, job_id: str) -> dict[str, Any]:
    """The job's plan, read once per function instance (a plan never changes once written)."""
    key = (work.url, job_id)
    with _plans_lock:
        plan = _plans.get(key)
    if plan is None:
        plan = layout.read_json(work, layout.plan_key(job_id))
        with _plans_lock:
            _plans[key] = plan
            while len(_plans) > 4:
                _plans.popitem(last=False)
    return plan


def commit_event(event: dict[str, Any], key: str) -> dict[str, Any]:
    """The notification a committing task raises, in S3's event shape, for the coordinator."""
    return {
        "Records": [{
            "eventVersion": "2.1", "eventSource": "smr:commit", "eventName": "ObjectCreated:Put",
            "eventTime": dt.datetime.now(dt.timezone.utc).isoformat(),
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": event["work"]},
                   "object": {"key": key}},
        }],
        "work": event["work"], "store_options": event.get("store_options") or {},
    }
