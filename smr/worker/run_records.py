"""Run records, written only for attempts that run long enough for anyone to watch them.

A run record tells `smr status` that an attempt is running and gives `smr timeline` the start of
an attempt that never committed. Writing one costs a PUT, which for a task that takes a
millisecond is most of its cost; so an attempt's record is written once it has run
``RUN_RECORD_AFTER_S``, by one background thread per function instance. An attempt that commits
or fails sooner leaves none: its commit record, or the failure record the client writes (which
carries the attempt's start), says everything the run record would have.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .. import jobstate

log = logging.getLogger(__name__)

#: How long an attempt runs before its run record is written.
RUN_RECORD_AFTER_S = 0.5


class RunRecorder:
    def __init__(self, after_s: float = RUN_RECORD_AFTER_S) -> None:
        self.after_s = after_s
        self._cv = threading.Condition()
        self._due: dict[str, tuple[float, Any, dict[str, Any]]] = {}
        self._thread: threading.Thread | None = None

    def started(self, work: Any, event: dict[str, Any]) -> str:
        """Schedule the attempt's run record; returns the token to pass to ``finished``."""
        token = f"{event['job_id']}/{event['step']}/{event['role']}/{event['task']}/{event['attempt']}"
        with self._cv:
            self._due[token] = (time.monotonic() + self.after_s, work, event)
            if self._thread is None or not self._thread.is_alive():
                # Started lazily, in the instance itself: a thread never crosses a fork.
                self._thread = threading.Thread(target=self._loop, name="smr-run-records",
                                                daemon=True)
                self._thread.start()
            self._cv.notify()
        return token

    def finished(self, token: str) -> None:
        with self._cv:
            self._due.pop(token, None)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._due:
                    self._cv.wait()
                token, (due, work, event) = min(self._due.items(), key=lambda kv: kv[1][0])
                wait = due - time.monotonic()
                if wait > 0:
                    self._cv.wait(wait)
                    continue
                del self._due[token]
            try:
                # A committed task's late or duplicate attempt leaves no trace.
                if work.head(jobstate.commit_key_of(event)) is None:
                    jobstate.record_run(work, event)
            except Exception:  # a missing run record only hides the attempt from `smr status`
                log.debug("could not write the run record of %s", token, exc_info=True)
