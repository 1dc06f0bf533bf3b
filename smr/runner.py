"""Running one phase's tasks: bounded concurrency, retries, speculation, re-splitting.

A task is done when an attempt's commit record comes back (or is found in the store). Around
that one rule:

- A failed, crashed, timed-out or out-of-memory attempt is retried with exponential backoff,
  up to ``max_attempts`` attempts; the task's last error then fails the job.
- A map task of the first step that ran out of memory is re-split before its retry (when
  ``split_on_oom``): its byte ranges are cut in two and the halves run as new sub-tasks. The
  driver first writes the parent's commit record itself, naming the sub-tasks
  (``split_into``), so no late attempt of the parent can commit too.
- With ``speculative``, a task that has run ``speculative_after`` x the median duration of the
  phase's finished tasks (and at least ``speculative_min_seconds``) gets one backup attempt.
  Whichever commits first wins; the other finds the commit and deletes its own output.
- Fault injection: the driver gives each invocation its fate (``smr.faults``) and delivers the
  events picked for duplication twice.

Several attempts of one task can be in flight (a backup, a duplicate delivery); a failure of one
while another still runs is not retried, and whatever comes back after the task is done is
ignored. Attempts still running when the phase ends are cancelled or left to lose.
"""
from __future__ import annotations

import logging
import queue
import random
import statistics
import time
import uuid
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import jobstate, layout
from .faults import OBSERVED_AS
from .platforms.base import InvocationError, PayloadTooLarge, encode_event
from .secrets import scrub_text

if TYPE_CHECKING:
    from .driver import JobRun

log = logging.getLogger(__name__)

#: Longest wait between two attempts of a task, seconds.
MAX_BACKOFF = 5.0
#: A split smaller than this is not cut further when its task runs out of memory.
MIN_RESPLIT_BYTES = 4096
#: How many times a task's descendants may be re-split in a row.
MAX_RESPLIT_DEPTH = 4


class TaskFailed(Exception):
    """A task failed every attempt; carries what the job's failure record needs."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


@dataclass
class Attempt:
    id: str
    try_no: int
    started: float
    fate: dict[str, Any] | None
    backup: bool = False


@dataclass
class TaskState:
    event: dict[str, Any]
    label: str  # stable name for fault decisions: "3", or "3.0", "3.1" after a re-split
    depth: int = 0
    tries: int = 0
    running: dict[Future, Attempt] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    superseded: bool = False
    split_into: list[int] = field(default_factory=list)
    backed_up: bool = False
    last_error: InvocationError | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.result is None and not self.superseded


class TaskRunner:
    """Runs one phase's tasks to their commits (see the module docstring)."""

    def __init__(self, run: "JobRun", name: str, phase: str, events: list[dict[str, Any]]) -> None:
        self.run_ = run
        self.name = name
        self.phase = phase
        self.tasks = [TaskState(ev, str(i)) for i, ev in enumerate(events)]
        self.retries = 0
        self.bytes_done = 0
        self.durations: list[float] = []
        self.counts: Counter[str] = Counter()  # speculative, speculative_won, resplits, ...
        self._owner: dict[Future, int] = {}
        self._ready: deque[int] = deque(range(len(self.tasks)))
        self._delayed: list[tuple[float, int]] = []
        # Finished futures arrive here from their done-callbacks, so the loop never scans every
        # running attempt, and counts of closed tasks are kept, not recounted: a phase with
        # thousands of tiny tasks stays linear.
        self._completed: "queue.SimpleQueue[Future]" = queue.SimpleQueue()
        self._n_done = 0
        self._n_superseded = 0
        self.outcomes: Any = None  # a StoreOutcomes, for platforms that do not report results

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        """The winning commit of every task, in task order (sub-tasks in place of their parent)."""
        settings = self.run_.settings
        limit = settings.concurrency
        while self._n_done + self._n_superseded < len(self.tasks):
            now = time.time()
            for item in [d for d in self._delayed if d[0] <= now]:
                self._delayed.remove(item)
                self._ready.append(item[1])
            while self._ready and self._running() < limit:
                i = self._ready.popleft()
                if self.tasks[i].open:
                    self._start(i)
            if settings.speculative and not self._ready and self._running() < limit:
                self._speculate(limit)
            if not self._owner:
                soonest = min((d[0] for d in self._delayed), default=now + 0.01)
                time.sleep(min(0.5, max(0.005, soonest - time.time())))
                continue
            try:
                fut = self._completed.get(timeout=0.25)
            except queue.Empty:
                continue
            while True:
                if fut in self._owner:  # not a cancelled loser already dealt with
                    self._finished(fut)
                try:
                    fut = self._completed.get_nowait()
                except queue.Empty:
                    break
        for fut in list(self._owner):  # losers and duplicates: not needed any more
            fut.cancel()
        return self._ordered_results()

    def _running(self) -> int:
        return len(self._owner)

    def _ordered_results(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []

        def visit(i: int) -> None:
            t = self.tasks[i]
            if t.superseded:
                for j in t.split_into:
                    visit(j)
            elif t.result is not None:
                out.append(t.result)
        roots = [i for i, t in enumerate(self.tasks) if "." not in t.label]
        for i in roots:
            visit(i)
        return out

    # -- starting attempts --------------------------------------------------------------------
    def _start(self, i: int, backup: bool = False) -> None:
        t = self.tasks[i]
        if not backup:
            t.tries += 1
        run = self.run_
        attempt = Attempt(uuid.uuid4().hex[:12], t.tries, time.time(), None, backup)
        event = {**t.event, "attempt": attempt.id}
        if run.faults is not None:
            ev = t.event
            identity = f"s{ev['step']}/{self.phase}/{t.label}/{t.tries}{'b' if backup else ''}"
            attempt.fate = run.faults.fate(identity)
            event["faults"] = {k: v for k, v in attempt.fate.items() if k != "duplicate"}
        copies = 2 if attempt.fate and attempt.fate["duplicate"] else 1
        if copies == 2:
            run.injected["duplicate"] += 1
        for _ in range(copies):
            fut = self._invoke(event)
            t.running[fut] = attempt
            self._owner[fut] = i
            fut.add_done_callback(self._completed.put)

    def _invoke(self, event: dict[str, Any]) -> Future:
        run = self.run_
        watched = event
        try:
            encode_event(event)
        except PayloadTooLarge:
            # Too big for an invocation payload: the event waits in the store, and the payload
            # names it. Store options stay inline: they may carry credentials.
            key = layout.event_key(run.job_id, f"s{event['step']}-{self.phase}-{event['task']}-"
                                               f"{event['attempt']}")
            layout.write_json(run.work, key, {k: v for k, v in event.items()
                                              if k != "store_options"})
            event = {"work": event["work"], "store_options": event["store_options"],
                     "event_ref": key}
        try:
            fut: Future = run.platform.invoke(event)
        except InvocationError as e:
            fut = Future()
            fut.set_exception(e)
            return fut
        except Exception as e:  # the platform could not take the invocation at all
            fut = Future()
            fut.set_exception(InvocationError("error", f"{type(e).__name__}: {e}"))
            return fut
        if not run.platform.reports_results:
            # Fire-and-forget: the outcome (commit, error record or silence) is read from the store.
            from .outcomes import StoreOutcomes
            if self.outcomes is None:
                self.outcomes = StoreOutcomes(run.work, run.platform.timeout_s,
                                              getattr(run.platform, "outcome_margin_s", 60.0))
            fut = self.outcomes.watch(fut, watched, self.phase)
        return fut

    def _speculate(self, limit: int) -> None:
        if not self.durations:
            return
        settings = self.run_.settings
        threshold = max(settings.speculative_min_seconds,
                        settings.speculative_after * statistics.median(self.durations))
        now = time.time()
        for i, t in enumerate(self.tasks):
            if self._running() >= limit:
                return
            if not t.open or t.backed_up or not t.running:
                continue
            first = min(a.started for a in t.running.values())
            if now - first > threshold:
                t.backed_up = True
                self.counts["speculative"] += 1
                log.info("%s task %s has run %.1f s (threshold %.1f s); starting a backup attempt",
                         self.name, t.label, now - first, threshold)
                self._start(i, backup=True)

    # -- outcomes -----------------------------------------------------------------------------
    def _finished(self, fut: Future) -> None:
        i = self._owner.pop(fut)
        t = self.tasks[i]
        attempt = t.running.pop(fut)
        if fut.cancelled():
            return
        try:
            result = fut.result()
        except InvocationError as e:
            self._failed(i, attempt, e)
            return
        except Exception as e:
            self._failed(i, attempt, InvocationError("error", f"{type(e).__name__}: {e}"))
            return
        if isinstance(result, dict):
            for kind, n in (result.pop("injected", None) or {}).items():
                self.run_.injected[kind] += n
        if not t.open:
            return  # a duplicate, or the loser of a race another attempt already won
        commit = result if isinstance(result, dict) and "task" in result else self._read_commit(i)
        if commit is None:
            self._failed(i, attempt, InvocationError("error", "finished without a commit record"))
            return
        if layout.is_split(commit):
            return  # an attempt that started after the re-split found the split record
        t.result = commit
        self._n_done += 1
        self.durations.append(time.time() - attempt.started)
        if attempt.backup and commit.get("attempt") == attempt.id:
            self.counts["speculative_won"] += 1
        for other in list(t.running):
            other.cancel()
        self.bytes_done += commit["metrics"].get("bytes_read", 0)
        self.run_.progress.task_done(self.name, self._n_done, len(self.tasks) - self._n_superseded,
                                     self.bytes_done)

    def _read_commit(self, i: int) -> dict[str, Any] | None:
        ev = self.tasks[i].event
        key = layout.commit_key(ev["job_id"], ev["step"], self.phase, ev["task"])
        if self.run_.work.head(key) is None:
            return None
        return layout.read_json(self.run_.work, key)

    def _failed(self, i: int, attempt: Attempt, err: InvocationError) -> None:
        run = self.run_
        t = self.tasks[i]
        run.stats.failures[err.kind] += 1
        fate_kind = attempt.fate.get("kind") if attempt.fate else None
        if fate_kind and OBSERVED_AS[fate_kind] == err.kind:
            run.injected[fate_kind] += 1
        message = scrub_text(err.message)  # it goes to logs, progress and the failure record
        entry = {"phase": self.phase, "step": t.event["step"], "task": t.event["task"],
                 "attempt": attempt.id, "try": attempt.try_no, "kind": err.kind,
                 "message": message}
        run.stats.failure_log.append(entry)
        t.errors.append(entry)
        try:  # for `smr status` and `smr resume`: the attempt counts even if this client dies
            jobstate.record_failure(run.work, {**t.event, "attempt": attempt.id}, err.kind,
                                    message, started=attempt.started)
        except Exception:
            log.debug("could not record the failure of %s task %s", self.name, t.label,
                      exc_info=True)
        t.last_error = err
        if not t.open or t.running:
            return  # done already, or another attempt of it is still running
        settings = run.settings
        if t.tries >= settings.max_attempts or err.kind == "payload":
            raise TaskFailed(
                f"{self.name} task {t.event['task']} failed after {t.tries} "
                f"attempt{'s' if t.tries > 1 else ''}: {err.message}",
                {"phase": self.phase, "step": t.event["step"], "task": t.event["task"],
                 "kind": err.kind, "message": err.message, "traceback": err.traceback,
                 "attempts": t.tries, "errors": t.errors})
        self.retries += 1
        run.stats.retries += 1
        if err.kind == "oom" and self._resplit(i):
            return
        backoff = min(MAX_BACKOFF, 0.2 * 2 ** (t.tries - 1)) * (0.5 + random.random())
        log.info("%s task %s attempt %d failed (%s): %s; retrying in %.1f s", self.name,
                 t.label, t.tries, err.kind, message, backoff)
        run.progress.task_retry(self.name, t.event["task"], err.kind, message)
        self._delayed.append((time.time() + backoff, i))

    # -- re-splitting -------------------------------------------------------------------------
    def _resplit(self, i: int) -> bool:
        """Replace map task ``i`` by two sub-tasks over halves of its input; False if it can't."""
        t = self.tasks[i]
        run = self.run_
        if (self.phase != "map" or "splits" not in t.event or not run.settings.split_on_oom
                or t.depth >= MAX_RESPLIT_DEPTH):
            return False
        halves = split_in_two(t.event["splits"])
        if halves is None:
            return False
        ids = [len(self.tasks), len(self.tasks) + 1]
        ev = t.event
        key = layout.commit_key(ev["job_id"], ev["step"], "map", ev["task"])
        record = {"task": ev["task"], "step": ev["step"], "phase": "map", "split_into": ids}
        winner = layout.commit_once(run.work, key, record)
        if not layout.is_split(winner):
            # An attempt committed after all (a duplicate or backup outlived the failure).
            t.result = winner
            self._n_done += 1
            return True
        t.superseded = True
        self._n_superseded += 1
        t.split_into = ids
        for j, half in zip(ids, halves):
            sub = TaskState({**ev, "task": j, "splits": half}, f"{t.label}.{j - ids[0]}",
                            depth=t.depth + 1)
            self.tasks.append(sub)
            self._ready.append(j)
        self.counts["resplits"] += 1
        log.info("%s task %s ran out of memory; re-split into tasks %d and %d", self.name,
                 t.label, *ids)
        run.progress.task_retry(self.name, ev["task"], "oom",
                                f"out of memory; re-split into tasks {ids[0]} and {ids[1]}")
        return True


def split_in_two(splits: list[list[Any]]) -> list[list[list[Any]]] | None:
    """Two halves of a task's ``[root, key, start, end]`` splits, by bytes; None if too small.

    Several splits are divided between the halves; one split is cut at the middle of its byte
    range (the line-boundary rule assigns each line to exactly one half).
    """
    if len(splits) > 1:
        total = sum(s[3] - s[2] for s in splits)
        acc, cut = 0, 1
        for n, s in enumerate(splits[:-1], start=1):
            acc += s[3] - s[2]
            cut = n
            if acc * 2 >= total:
                break
        return [splits[:cut], splits[cut:]]
    root, key, start, end = splits[0]
    if end - start < 2 * MIN_RESPLIT_BYTES:
        return None
    mid = start + (end - start) // 2
    return [[[root, key, start, mid]], [[root, key, mid, end]]]
