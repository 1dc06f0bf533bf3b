"""Outcomes of fire-and-forget invocations, learned from the store.

A platform with ``reports_results = False`` (Lambda ``Event`` invocations) resolves its futures as
soon as an invocation is accepted. ``StoreOutcomes`` turns such a future into one that resolves
the way the local host's does: with the task's commit record once it exists, with the error the
handler left under ``layout.error_key`` (handlers write one when the event has ``report_errors``),
or with a ``timeout`` when neither appeared within the function timeout plus a margin (the
function was killed, ran out of memory, or its event was lost). The driver then retries as usual.

One thread polls, listing each watched phase's commit and error prefixes once per round (two LIST
requests, whatever the number of tasks), every 0.2 s while tasks finish and up to every 2 s when
nothing changes. It exits when nothing is watched, so there is nothing to close.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from . import layout
from .platforms.base import InvocationError
from .storage import Store

log = logging.getLogger(__name__)

MIN_POLL_S = 0.2
MAX_POLL_S = 2.0


@dataclass(eq=False)
class _Watch:
    job_id: str
    step: int
    phase: str
    task: int
    attempt: str
    deadline: float
    future: "Future[Any]"


class StoreOutcomes:
    def __init__(self, work: Store, timeout_s: float, margin_s: float) -> None:
        self.work = work
        self.timeout_s = timeout_s
        self.margin_s = margin_s
        self._lock = threading.Lock()
        self._watches: list[_Watch] = []
        self._thread: threading.Thread | None = None

    def watch(self, accepted: "Future[Any]", event: dict[str, Any], phase: str) -> "Future[Any]":
        """A future for the outcome of the invocation of ``event`` that ``accepted`` stands for."""
        out: Future[Any] = Future()

        def on_accepted(f: "Future[Any]") -> None:
            exc = f.exception()
            if exc is not None:  # never accepted (throttled past the budget, bad request)
                out.set_exception(exc)
                return
            w = _Watch(event["job_id"], event["step"], phase, event["task"], event["attempt"],
                       time.monotonic() + self.timeout_s + self.margin_s, out)
            with self._lock:
                self._watches.append(w)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._poll, daemon=True,
                                                    name="smr-outcomes")
                    self._thread.start()

        accepted.add_done_callback(on_accepted)
        return out

    def _poll(self) -> None:
        interval = MIN_POLL_S
        while True:
            with self._lock:
                watches = [w for w in self._watches if not w.future.done()]
                self._watches = watches
                if not watches:
                    self._thread = None
                    return
            try:
                progressed = self._round(watches)
            except Exception:  # a failed LIST must not strand the driver; try again
                log.exception("reading task outcomes from the store failed")
                progressed = False
            interval = MIN_POLL_S if progressed else min(MAX_POLL_S, interval * 1.5)
            time.sleep(interval)

    def _round(self, watches: list[_Watch]) -> bool:
        progressed = False
        groups: dict[tuple[str, int, str], list[_Watch]] = {}
        for w in watches:
            groups.setdefault((w.job_id, w.step, w.phase), []).append(w)
        for (job_id, step, phase), ws in groups.items():
            commits = {o.key for o in self.work.list(layout.commit_prefix(job_id, step, phase))}
            errors = {o.key for o in self.work.list(layout.error_prefix(job_id, step, phase))}
            now = time.monotonic()
            for w in ws:
                ckey = layout.commit_key(job_id, step, phase, w.task)
                ekey = layout.error_key(job_id, step, phase, w.task, w.attempt)
                if ckey in commits:
                    self._settle(w, result=layout.read_json(self.work, ckey))
                elif ekey in errors:
                    rec = layout.read_json(self.work, ekey)
                    self._settle(w, error=InvocationError("error", rec.get("error", "failed"),
                                                          rec.get("traceback", "")))
                elif now > w.deadline:
                    self._settle(w, error=InvocationError(
                        "timeout", f"no commit record {self.timeout_s + self.margin_s:.0f} s "
                                   "after the invocation was accepted"))
                else:
                    continue
                progressed = True
        return progressed

    @staticmethod
    def _settle(w: _Watch, *, result: Any = None, error: Exception | None = None) -> None:
        if w.future.done():
            return
        if error is not None:
            w.future.set_exception(error)
        else:
            w.future.set_result(result)
