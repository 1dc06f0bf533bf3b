"""What every task shares: its job, its stores, its metrics and its commit record."""
from __future__ import annotations

import json
import logging
import math
import resource
import time
from typing import Any, Callable

from .. import layout
from ..faults import FaultAgent
from ..formats import RecordError
from ..jobstate import job_start_time
from ..shuffle import SerializationError
from ..spool import Spool
from .runtime import WARM

log = logging.getLogger(__name__)

#: Share of the function's memory that buffers may use, as in the reference architecture.
DATA_SHARE = 0.6


class TaskContext:
    """Opens a task's stores and job on entry; on exit, turns metrics into a commit record."""

    def __init__(self, event: dict[str, Any], context: Any, phase: str) -> None:
        self.event = event
        self.context = context
        self.phase = phase
        self.started = time.time()
        # Lambda's own context has no cold_start attribute; the first task in a process is one.
        cold = getattr(context, "cold_start", None)
        self.cold_start = WARM.first_invocation() if cold is None else bool(cold)
        self.job_id: str = event["job_id"]
        self.step_index: int = event["step"]
        self.task: int = event["task"]
        self.attempt: str = event["attempt"]
        self.store_options: dict[str, Any] = event.get("store_options") or {}
        # Fault injection (tests, --inject-faults): the driver's verdict for this invocation.
        self.faults = FaultAgent(event.get("faults"), context)
        self.work = self.faults.wrap(WARM.store(event["work"], self.store_options), "work")
        self._requests_before = WARM.all_requests()
        loaded = WARM.job(self.work, self.job_id)
        self.spec = loaded.spec
        self.job = loaded.new_job()
        steps = self.job.steps()
        self.step = steps[self.step_index]
        self.final_step = self.step_index == len(steps) - 1
        self.bad_records: str = self.spec.get("bad_records", "fail")
        self._bad: Spool | None = None
        self.metrics: dict[str, Any] = {"records_in": 0, "records_out": 0, "bytes_read": 0,
                                        "bytes_written": 0, "bytes_shuffled": 0, "spills": 0,
                                        "bad_records": 0}

    def __enter__(self) -> "TaskContext":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bad is not None:
            self._bad.close()

    def store(self, url: str):
        return self.faults.wrap(WARM.store(url, self.store_options), str(len(self.faults.stores)))

    def finish(self, winner: dict[str, Any]) -> dict[str, Any]:
        """The invocation's result: the winning commit record, plus what this attempt injected.

        An injected fault that the task's requests did not reach fires here, after the commit,
        so "crashed after committing" is among the cases the faults cover.
        """
        self.faults.fire()
        injected = self.faults.injected()
        return {**winner, "injected": injected} if injected else winner

    @property
    def memory_mb(self) -> int:
        return int(getattr(self.context, "memory_limit_in_mb", 0) or self.spec.get("memory", 1024))

    def buffer_bytes(self) -> int:
        """How much the task's buffers may grow before spilling to local disk."""
        override = self.spec.get("buffer_mb")
        if override:
            return int(override * 2**20)
        return int(self.memory_mb * 2**20 * DATA_SHARE * 0.5)

    def skip_bad(self, err: RecordError, raw: bytes) -> None:
        """Count a bad record and keep it (JSON lines) for the output's ``_bad_records``."""
        self.metrics["bad_records"] += 1
        log.info("skipping bad record: %s", err)
        if self._bad is None:
            self._bad = Spool(1 << 20)
        line = json.dumps({"url": err.url, "offset": err.offset, "error": err.cause,
                           "record": raw[:4096].decode("utf-8", "replace")}, ensure_ascii=False)
        self._bad.write(line.encode() + b"\n")

    def upload_bad_records(self) -> str | None:
        """Store the skipped records under this attempt's name; the key, or None if none."""
        if self._bad is None:
            return None
        key = layout.bad_records_key(self.job_id, self.step_index, self.task, self.attempt)
        try:
            self._bad.upload(self.work, key)
        finally:
            self._bad.close()
            self._bad = None
        return key

    def commit_record(self, **fields: Any) -> dict[str, Any]:
        ended = time.time()
        duration_ms = max(1, math.ceil((ended - self.started) * 1000))
        after = WARM.all_requests()
        requests = {k: v - self._requests_before.get(k, 0) for k, v in after.items()}
        requests["put"] = requests.get("put", 0) + 1  # the commit record itself
        self.metrics.update(
            started=self.started, ended=ended, duration_ms=duration_ms,
            since_job_start_s=round(self.started - job_start_time(self.spec), 4),
            memory_mb=self.memory_mb,
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            cold_start=self.cold_start,
            requests={k: v for k, v in requests.items() if v},
        )
        return {"task": self.task, "attempt": self.attempt, "phase": self.phase,
                "step": self.step_index, "metrics": self.metrics,
                "counters": self.job._take_counters(), **fields}


def describe_bad_output(fn: Callable, record: Any, error: Exception) -> str:
    """Explain a failure in user code, naming the function and what it did wrong."""
    name = getattr(fn, "__qualname__", repr(fn))
    if isinstance(error, SerializationError):
        return f"{name} yielded a pair that cannot be shuffled: {error}"
    if isinstance(error, (TypeError, ValueError)):
        try:
            result = fn(record)
        except Exception:
            result = None
        else:
            if result is None or not hasattr(result, "__iter__"):
                return (f"{name} must yield (key, value) pairs (be a generator), "
                        f"but returned {type(result).__name__}")
            try:
                for item in result:
                    if not (isinstance(item, (tuple, list)) and len(item) == 2):
                        return f"{name} yielded {item!r:.80}; expected a (key, value) pair"
            except Exception:
                pass
    return f"{name} raised {type(error).__name__}: {error}"
