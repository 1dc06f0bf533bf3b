"""What a warm function instance keeps between invocations: open stores and loaded jobs.

A function instance serves many invocations; opening stores (S3 clients) and downloading the job
code once per instance is what makes warm starts cheap. Everything is keyed by URL or job id, so
nothing leaks between jobs.
"""
from __future__ import annotations

import copy
import gc
import json
import os
import pickle
import re
import threading
from dataclasses import dataclass
from typing import Any

from .. import layout
from ..api import Job
from ..storage import Store, open_store
from .run_records import RunRecorder

#: gc thresholds while a task runs (Python's defaults: 700, 10, 10).
TASK_GC_THRESHOLDS = (100_000, 50, 100)


@dataclass
class LoadedJob:
    spec: dict[str, Any]
    code: bytes
    _proto: Job | None = None

    def new_job(self) -> Job:
        """A fresh job object per task, so state set by one task's setup() never leaks.

        Unpickling re-creates the job's class each time, which costs more than a tiny task's
        work; a deep copy of one unpickled object is as fresh and keeps the class.
        """
        if self._proto is None:
            self._proto = pickle.loads(self.code)
        try:
            return copy.deepcopy(self._proto)
        except Exception:  # an attribute that cannot be copied: unpickle afresh
            return pickle.loads(self.code)


#: What a job id looks like (smr.driver.new_job_id); nothing in one can reach another directory.
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_job_id(job_id: Any) -> str:
    """A job id from an event names one directory under ``jobs/``, and nothing else."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise ValueError(f"invalid job id {job_id!r} in event")
    return job_id


class WarmState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[tuple[int, str, str], Store] = {}
        self._jobs: dict[tuple[str, str], LoadedJob] = {}
        self._served_pid: int | None = None
        self.runs = RunRecorder()
        self._tasks_running = 0
        self._gc_saved: tuple[int, ...] | None = None

    def first_invocation(self) -> bool:
        """True for the first call in this process: a cold start, where no host says so."""
        with self._lock:
            first = self._served_pid != os.getpid()
            self._served_pid = os.getpid()
            return first

    def store(self, url: str, options: dict[str, Any] | None = None) -> Store:
        # The pid is part of the key: a store (and its connections) never crosses a fork.
        key = (os.getpid(), url, json.dumps(options or {}, sort_keys=True))
        with self._lock:
            st = self._stores.get(key)
            if st is None:
                st = self._stores[key] = open_store(url, options)
            return st

    def job(self, work: Store, job_id: str) -> LoadedJob:
        """The job's spec and code, read only from ``jobs/<job_id>/`` in the event's work store."""
        check_job_id(job_id)
        key = (work.url, job_id)
        with self._lock:
            loaded = self._jobs.get(key)
        if loaded is None:
            spec = layout.read_json(work, layout.spec_key(job_id))
            code = work.get(layout.code_key(job_id))
            loaded = LoadedJob(spec, code)
            with self._lock:
                self._jobs[key] = loaded
        return loaded

    def task_started(self, work: Store, event: dict[str, Any]) -> str:
        """A task attempt begins: schedule its run record, and run it with TASK_GC_THRESHOLDS.

        A task holds millions of small lists and tuples (buffered values, grouped entries); with
        the default thresholds the cyclic GC rescans them over and over, which measured as half
        of a reduce task's time. Rarer collections still collect every cycle. The thresholds are
        the process's: the first of concurrent tasks (threads on the inline platform) sets them,
        and the last to finish gives the old ones back. Returns the token for ``task_finished``.
        """
        with self._lock:
            if self._tasks_running == 0:
                self._gc_saved = gc.get_threshold()
                gc.set_threshold(*TASK_GC_THRESHOLDS)
            self._tasks_running += 1
        return self.runs.started(work, event)

    def task_finished(self, token: str) -> None:
        self.runs.finished(token)
        with self._lock:
            self._tasks_running -= 1
            if self._tasks_running == 0 and self._gc_saved is not None:
                gc.set_threshold(*self._gc_saved)
                self._gc_saved = None

    def all_requests(self) -> dict[str, int]:
        total: dict[str, int] = {}
        with self._lock:
            stores = list(self._stores.values())
        for st in stores:
            for k, v in st.requests.snapshot().items():
                total[k] = total.get(k, 0) + v
        return total


#: One per function instance (process), like the globals of a Lambda handler module.
WARM = WarmState()
