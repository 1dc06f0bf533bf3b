"""The coordinator role: advances jobs on events, with no client.

It fires on S3-shaped object-created records (``Records[].s3.bucket.name / object.key``):

- a task's commit record (raised by the committing task, or by a store's notifications under
  ``jobs/``): the job's state is read from the store and advanced (``jobstate.advance``), which
  launches the next round when the current one is complete;
- an upload under a watched prefix: the trigger registered for it plans and starts a job
  (``smr.triggers``).

It also receives Lambda's on-failure destination records, turning a failed asynchronous
invocation into a failure record (and a relaunch, while attempts remain). Every path is
idempotent, so duplicated and reordered events change nothing.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any

from .. import jobstate, layout
from ..platforms.invoker import descriptor_from_context, invoker_for
from .runtime import WARM

log = logging.getLogger(__name__)

_JOB_KEY = re.compile(r"(?:^|/)jobs/([^/]+)/s\d+/[a-z]+-done/[^/]+\.json$")


class WorkerLauncher:
    """Launches from inside a function, through the platform's invoker."""

    def __init__(self, context: Any) -> None:
        self.descriptor = descriptor_from_context(context)
        self._invoker = invoker_for(self.descriptor, context)

    def launch(self, events: list[dict[str, Any]]) -> None:
        self._invoker.invoke(events)


def _work(event: dict[str, Any]) -> Any:
    url = event.get("work") or os.environ.get("SMR_WORK_DIR")
    if not url:
        raise ValueError("coordinator event names no work dir and SMR_WORK_DIR is not set")
    return WARM.store(url, event.get("store_options") or None)


def on_records(event: dict[str, Any], context: Any) -> dict[str, Any]:
    work = _work(event)
    launcher = WorkerLauncher(context)
    results = []
    for record in event.get("Records", []):
        try:
            key = record["s3"]["object"]["key"]
        except (KeyError, TypeError):
            log.warning("ignoring a record without s3.object.key: %.200r", record)
            continue
        m = _JOB_KEY.search(key)
        if m:
            adv = jobstate.advance(work, m.group(1), launcher, notify=True)
            results.append({"job_id": m.group(1), "status": adv.status, "launched": adv.launched})
            continue
        from .. import triggers
        results.extend(triggers.on_upload(work, record, launcher))
    return {"results": results}


def on_failure(event: dict[str, Any], context: Any) -> dict[str, Any]:
    payload = event.get("requestPayload") or {}
    if "event_ref" in payload:
        store = WARM.store(payload["work"], payload.get("store_options"))
        payload = layout.read_json(store, payload["event_ref"])
    error = event.get("responsePayload") or {}
    kind = str(error.get("errorType", "error"))
    message = str(error.get("errorMessage", "failed"))
    if "Records" in payload:
        return _coordinator_failed(payload, kind, message, context)
    if payload.get("role") not in jobstate.ROLE_PHASE:
        log.error("asynchronous invocation failed (%s: %s): %.300r", kind, message, payload)
        return {"recorded": False}
    work = WARM.store(payload["work"], payload.get("store_options"))
    jobstate.record_failure(work, payload, kind, message)
    if payload.get("notify"):
        adv = jobstate.advance(work, payload["job_id"], WorkerLauncher(context), notify=True)
        return {"recorded": True, "status": adv.status}
    return {"recorded": True}


#: Deliveries of a commit event to a coordinator that fails, before the job is failed instead.
COMMIT_EVENT_DELIVERIES = 3


def _coordinator_failed(payload: dict[str, Any], kind: str, message: str,
                        context: Any) -> dict[str, Any]:
    """A coordinator invocation failed: deliver its commit event again, as Lambda retries an
    asynchronous invocation; past the last delivery fail the job, so it never hangs silently."""
    deliveries = int(payload.get("delivery", 1))
    jobs = sorted({m.group(1) for r in payload.get("Records", [])
                   for m in [_JOB_KEY.search(str(r.get("s3", {}).get("object", {}).get("key", "")))]
                   if m})
    if deliveries < COMMIT_EVENT_DELIVERIES:
        WorkerLauncher(context).launch([{**payload, "delivery": deliveries + 1}])
        return {"redelivered": deliveries + 1}
    log.error("coordinator failed %d times (%s: %s) on %.300r", deliveries, kind, message,
              payload)
    if jobs and payload.get("work"):
        work = WARM.store(payload["work"], payload.get("store_options") or None)
        for job_id in jobs:
            jobstate.mark_failed(work, job_id, f"the coordinator failed {deliveries} times: "
                                               f"{kind}: {message}")
    return {"failed_jobs": jobs}


def on_advance(event: dict[str, Any], context: Any) -> dict[str, Any]:
    work = _work(event)
    adv = jobstate.advance(work, event["job_id"], WorkerLauncher(context), notify=True,
                           relaunch=bool(event.get("relaunch")))
    return {"job_id": event["job_id"], "status": adv.status, "launched": adv.launched}
