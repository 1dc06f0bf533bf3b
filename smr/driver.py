"""Client-side orchestration: plan a job, run its tasks with retries, finalize its output."""
from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import os
import random
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

from . import jobstate, layout, metrics
from .api import Job, is_columnar
from .config import JobSettings, make_settings
from .jobload import load_job, pickle_job
from .partition import encode_boundaries, job_partitioner_kind, overrides_partitioner
from .planner import choose_split_size, list_inputs, plan_map_tasks
from .platforms.base import InvocationError, Platform, PayloadTooLarge, encode_event
from .storage import Store, open_store, process_local, url_scheme

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """A task failed every attempt (or the job could not start); the message names the cause."""

    def __init__(self, message: str, *, job_id: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.job_id = job_id
        self.traceback = traceback


class Progress:
    """Receives progress as a job runs; the CLI draws it. Every method is optional."""

    def job_started(self, job_id: str, work_url: str) -> None: ...
    def phase_started(self, name: str, total_tasks: int, total_bytes: int) -> None: ...
    def task_done(self, name: str, done: int, total: int, bytes_done: int) -> None: ...
    def task_retry(self, name: str, task: int, kind: str, message: str) -> None: ...
    def phase_finished(self, name: str, seconds: float) -> None: ...


@dataclass
class PhaseResult:
    commits: list[dict[str, Any]]
    seconds: float
    retries: int = 0


@dataclass
class RunStats:
    retries: int = 0
    failures: collections.Counter = field(default_factory=collections.Counter)
    failure_log: list[dict[str, Any]] = field(default_factory=list)


def new_job_id() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def default_work_dir() -> str:
    return os.environ.get("SMR_WORK_DIR") or os.path.join(os.path.expanduser("~"), ".smr", "work")


def make_platform(settings: JobSettings) -> Platform:
    if settings.platform == "local":
        from .platforms.local import LocalPlatform
        return LocalPlatform(memory_mb=settings.memory, timeout_s=settings.timeout,
                             concurrency=settings.concurrency)
    if settings.platform == "inline":
        from .platforms.inline import InlinePlatform
        return InlinePlatform(memory_mb=settings.memory, timeout_s=settings.timeout,
                              concurrency=settings.concurrency)
    if settings.platform == "lambda":
        from .platforms.aws_lambda import make_lambda_platform
        return make_lambda_platform(settings, default_work_dir())
    raise JobFailed(f"unknown platform {settings.platform!r}")


def run_job(job: Job | str, *, settings: JobSettings | None = None,
            progress: Progress | None = None, platform: Platform | str | None = None,
            **overrides: Any) -> dict[str, Any]:
    """Run a job to completion and return its summary (the content of ``_SUCCESS``).

    ``platform`` is a platform name (a setting) or a running Platform to reuse.
    """
    if isinstance(platform, str):
        overrides["platform"] = platform
        platform = None
    if settings is None:
        settings = make_settings(**overrides)
    elif overrides:
        settings = make_settings(**{**settings.model_dump(exclude_unset=True), **overrides})
    if isinstance(job, str):
        job = load_job(job)
    _check_process_local([*settings.input, settings.output or "",
                          settings.work_dir or default_work_dir()], settings.platform, platform)
    own_platform = platform is None
    platform = platform or make_platform(settings)
    try:
        if settings.fanout != "direct" or settings.reduce != "shuffle":
            from .coordinated import run_coordinated
            return run_coordinated(job, settings, platform, progress or Progress())
        run = JobRun(job, settings, platform, progress or Progress())
        try:
            return run.run()
        except JobFailed as e:
            if e.job_id:  # so `smr status` from any process says why
                jobstate.mark_failed(run.work, e.job_id, str(e))
            raise
    finally:
        if own_platform:
            platform.close()


def _check_job(job: Job) -> None:
    """Declaration mistakes fail at once, before any task runs."""
    try:
        job_partitioner_kind(job)
        if is_columnar(job):
            from .columnar import Spec
            Spec.of(job)
    except ValueError as e:
        raise JobFailed(str(e)) from None


def _norm(url: str) -> str:
    if url_scheme(url) in ("", "file"):
        path = url[len("file://"):] if url.startswith("file://") else url
        return os.path.abspath(os.path.expanduser(path))
    return url.rstrip("/")


def _check_process_local(urls: list[str], name: str, platform: Platform | None) -> None:
    """memory:// data is invisible to other processes: refuse it unless tasks run in this one."""
    from .platforms.inline import InlinePlatform
    in_process = isinstance(platform, InlinePlatform) if platform is not None else name == "inline"
    for url in urls:
        if process_local(url) and not in_process:
            raise JobFailed(f"{url}: memory:// data lives in one process, but the {name} "
                            "platform runs tasks in other processes; use --platform inline, "
                            "or a shared store (a local path, s3://)")


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


class JobRun:
    """One run of one job: owns the stores, the plan and the task runner."""

    def __init__(self, job: Job, settings: JobSettings, platform: Platform,
                 progress: Progress) -> None:
        if not settings.output:
            raise JobFailed("no output given: pass --output URL")
        if not settings.input:
            raise JobFailed("no input given: pass --input URL")
        self.job = job
        self.steps = job.steps()
        if not self.steps:
            raise JobFailed(f"{type(job).__name__}.steps() returned no steps")
        _check_job(job)
        self.settings = settings
        self.platform = platform
        self.progress = progress
        self.job_id = new_job_id()
        self.store_options = settings.store_options()
        self.work_url = _norm(settings.work_dir or default_work_dir())
        self.output_url = _norm(settings.output)
        self.work = open_store(self.work_url, self.store_options)
        self.out = open_store(self.output_url, self.store_options)
        for what, store in (("output", self.out), ("work dir", self.work)):
            if getattr(store, "read_only", False):
                raise JobFailed(f"{what} {store.url} is read-only; use a local path, s3:// or "
                                "another writable store")
        self.stats = RunStats()
        self.phases: dict[str, float] = collections.defaultdict(float)
        self.commits: list[dict[str, Any]] = []

    def _open(self, url: str) -> Store:
        return open_store(url, self.store_options)

    # -- the job ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = time.time()
        t = time.time()
        self._check_output()
        objects = list_inputs([_norm(u) for u in self.settings.input], self._open)
        total = sum(o.size for o in objects)
        split = self.settings.split_size or choose_split_size(
            total, self.settings.memory, self.settings.concurrency)
        tasks = plan_map_tasks(objects, split)
        spec = {
            "job_id": self.job_id, "job_class": type(self.job).__name__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(),
            "output": self.output_url, "work": self.work_url, "inputs": self.settings.input,
            "steps": len(self.steps), "memory": self.settings.memory,
            "bad_records": self.settings.bad_records, "buffer_mb": self.settings.buffer_mb,
            "md5_prefixes": self.settings.md5_prefixes,
            "settings": self.settings.model_dump(mode="json"),
            "input_objects": len(objects), "input_bytes": total, "split_size": split,
            "map_tasks": len(tasks),
        }
        self.work.put(layout.code_key(self.job_id), pickle_job(self.job))
        layout.write_json(self.work, layout.spec_key(self.job_id), spec)
        jobstate.record_created(self.work, spec, tasks,
                                [s.reducers or self.settings.reducers for s in self.steps], started)
        self.progress.job_started(self.job_id, self.work_url)
        self.phases["plan"] += time.time() - t
        log.info("job %s: %d input objects, %d bytes, %d map tasks of ~%d bytes",
                 self.job_id, len(objects), total, len(tasks), split)

        boundaries = self._range_boundaries(tasks)
        sources: list[str] = []
        step_summaries = []
        for index, step in enumerate(self.steps):
            reducers = step.reducers or self.settings.reducers
            base = {"work": self.work_url, "store_options": self.store_options,
                    "job_id": self.job_id, "step": index}
            if index == 0:
                map_events = [{**base, "role": "map", "task": i, "partitions": reducers,
                               "splits": t_["splits"]} for i, t_ in enumerate(tasks)]
                if boundaries is not None:
                    for ev in map_events:
                        ev["boundaries"] = boundaries
                map_bytes = total
            else:
                map_events = [{**base, "role": "map", "task": i, "partitions": reducers,
                               "sources": [key]} for i, key in enumerate(sources)]
                map_bytes = 0
            name = "map" if len(self.steps) == 1 else f"step {index + 1} map"
            maps = self._run_phase(name, "map", map_events, map_bytes)
            reduce_events = []
            for r in range(reducers):
                srcs = [[c["data_key"], c["segments"][r][0], c["segments"][r][1]]
                        for c in maps.commits]
                reduce_events.append({**base, "role": "reduce", "task": r, "sources": srcs})
            shuffled = sum(c["metrics"]["bytes_shuffled"] for c in maps.commits)
            name = "reduce" if len(self.steps) == 1 else f"step {index + 1} reduce"
            reduces = self._run_phase(name, "reduce", reduce_events, shuffled)
            sources = [c["output_key"] for c in reduces.commits]
            step_summaries.append({"map_tasks": len(maps.commits),
                                   "reduce_tasks": len(reduces.commits),
                                   "map_seconds": round(maps.seconds, 3),
                                   "reduce_seconds": round(reduces.seconds, 3)})
        return self._finalize(started, total, len(objects), step_summaries)

    def _range_boundaries(self, tasks: list[dict[str, Any]]) -> str | None:
        """Sampled boundary keys (encoded) when the job asks for a range partitioner."""
        if job_partitioner_kind(self.job) != "range" or overrides_partitioner(self.job):
            return None
        from .sampling import sample_boundaries
        t = time.time()
        reducers = self.steps[0].reducers or self.settings.reducers
        splits = [s for t_ in tasks for s in t_["splits"]]
        bounds = sample_boundaries(self.job, splits, self._open, reducers)
        self.phases["sample"] += time.time() - t
        return encode_boundaries(bounds)

    def _check_output(self) -> None:
        for u in self.settings.input:
            nu = _norm(u)
            if _inside(self.output_url, nu) or _inside(nu, self.output_url):
                raise JobFailed(f"output {self.output_url} overlaps input {u}; "
                                "choose an output outside the inputs")
        if _inside(self.work_url, self.output_url) or _inside(self.output_url, self.work_url):
            raise JobFailed(f"output {self.output_url} overlaps the work dir {self.work_url}; "
                            "keep them apart")
        existing = next(iter(self.out.list("")), None)
        if existing is None:
            return
        if not self.settings.overwrite:
            raise JobFailed(f"output {self.output_url} already exists; pass --overwrite to replace it")
        # _SUCCESS goes first, so a reader never sees old parts under a finished marker.
        self.out.delete("_SUCCESS")
        self.out.delete_prefix("")

    def _finalize(self, started: float, input_bytes: int, input_objects: int,
                  steps: list[dict[str, Any]]) -> dict[str, Any]:
        t = time.time()
        summary = self._summary(started, input_bytes, input_objects, steps)
        layout.write_json(self.work, layout.summary_key(self.job_id), summary)
        if not self.settings.keep_intermediates:
            for i in range(len(self.steps)):
                self.work.delete_prefix(layout.step_prefix(self.job_id, i) + "map/")
                self.work.delete_prefix(layout.step_prefix(self.job_id, i) + "out/")
            self.work.delete_prefix(layout.job_prefix(self.job_id) + "events/")
        self.phases["finalize"] += time.time() - t
        summary["phases"]["finalize"] = round(self.phases["finalize"], 3)
        summary["wall_seconds"] = round(time.time() - started, 3)
        summary["cost"]["reference"] = metrics.reference_comparison(
            input_bytes, summary["cost"]["total_usd"], summary["wall_seconds"])
        # Written last: the output counts as finished only from this moment.
        self.out.put("_SUCCESS", json.dumps(summary, indent=2, sort_keys=True).encode())
        layout.write_json(self.work, layout.summary_key(self.job_id), summary)
        return summary

    def _summary(self, started: float, input_bytes: int, input_objects: int,
                 steps: list[dict[str, Any]]) -> dict[str, Any]:
        maps = [c for c in self.commits if c["phase"] == "map"]
        reduces = [c for c in self.commits if c["phase"] == "reduce"]
        final_reduces = [c for c in reduces if c["step"] == len(self.steps) - 1]
        requests: dict[str, int] = {}
        counters: dict[str, dict[str, int]] = {}
        gbs = 0.0
        for c in self.commits:
            m = c["metrics"]
            metrics.add_requests(requests, m.get("requests", {}))
            metrics.add_counters(counters, c.get("counters", {}))
            gbs += metrics.gb_seconds(m["duration_ms"], m["memory_mb"])
        for store in (self.work, self.out):
            metrics.add_requests(requests, store.requests.snapshot())
        invocations = self.platform.stats.invocations or (len(self.commits) + self.stats.retries)
        cost = metrics.cost_estimate(gb_seconds=gbs, invocations=invocations, requests=requests)

        def total(cs: list[dict[str, Any]], k: str) -> int:
            return sum(c["metrics"].get(k, 0) for c in cs)

        first_maps = [c for c in maps if c["step"] == 0]
        return {
            "job_id": self.job_id, "status": "succeeded", "job": type(self.job).__name__,
            "output": self.output_url, "work_dir": self.work_url,
            "started": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(),
            "ended": dt.datetime.now(dt.timezone.utc).isoformat(),
            "wall_seconds": round(time.time() - started, 3),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "steps": steps,
            "tasks": {"map": len(maps), "reduce": len(reduces)},
            "input": {"objects": input_objects, "bytes": input_bytes},
            "records": {"input": total(first_maps, "records_in"),
                        "map_output": total(maps, "records_out"),
                        "output": total(final_reduces, "records_out"),
                        "bad": total(maps, "bad_records")},
            "bytes": {"read": total(first_maps, "bytes_read"),
                      "shuffled": total(maps, "bytes_shuffled"),
                      "written": total(final_reduces, "bytes_written")},
            "parts": len(final_reduces),
            "retries": self.stats.retries,
            "failures": dict(self.stats.failures),
            "cold_starts": self.platform.stats.cold_starts,
            "invocations": invocations,
            "spills": total(self.commits, "spills"),
            "peak_rss_mb": max((c["metrics"].get("peak_rss_mb", 0) for c in self.commits), default=0),
            "memory_mb": self.settings.memory,
            "counters": counters,
            "cost": cost,
            "cost_usd": cost["total_usd"],
        }

    # -- running tasks ----------------------------------------------------------------------
    def _run_phase(self, name: str, phase: str, events: list[dict[str, Any]],
                   total_bytes: int) -> PhaseResult:
        t = time.time()
        self.progress.phase_started(name, len(events), total_bytes)
        runner = TaskRunner(self, name, phase, events)
        commits = runner.run()
        seconds = time.time() - t
        self.phases[phase] += seconds
        self.commits.extend(commits)
        self.progress.phase_finished(name, seconds)
        return PhaseResult(commits, seconds, runner.retries)


class TaskRunner:
    """Runs one phase's tasks: bounded concurrency, retries with backoff, commit checks."""

    def __init__(self, run: JobRun, name: str, phase: str, events: list[dict[str, Any]]) -> None:
        self.run_ = run
        self.name = name
        self.phase = phase
        self.events = events
        self.attempts = [0] * len(events)
        self.results: list[dict[str, Any] | None] = [None] * len(events)
        self.retries = 0
        self.bytes_done = 0
        self._attempt_ids: dict[int, str] = {}
        self.outcomes: Any = None  # a StoreOutcomes, for platforms that do not report results

    def _bytes_of(self, commit: dict[str, Any]) -> int:
        m = commit["metrics"]
        return m.get("bytes_read", 0)

    def run(self) -> list[dict[str, Any]]:
        run = self.run_
        n = len(self.events)
        if n == 0:
            return []
        ready = collections.deque(range(n))
        delayed: list[tuple[float, int]] = []  # (not before, task) for retries in backoff
        inflight: dict[Future, int] = {}
        done = 0
        limit = run.settings.concurrency
        while done < n:
            now = time.time()
            for item in [d for d in delayed if d[0] <= now]:
                delayed.remove(item)
                ready.append(item[1])
            while ready and len(inflight) < limit:
                i = ready.popleft()
                inflight[self._submit(i)] = i
            if not inflight:
                time.sleep(max(0.01, min(d[0] for d in delayed) - time.time()) if delayed else 0.01)
                continue
            finished, _ = wait(list(inflight), timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = inflight.pop(fut)
                try:
                    result = fut.result()
                except InvocationError as e:
                    self._failed(i, e, delayed)
                    continue
                except Exception as e:  # the platform itself failed to invoke
                    self._failed(i, InvocationError("error", f"{type(e).__name__}: {e}"), delayed)
                    continue
                commit = result if isinstance(result, dict) and "task" in result else self._read_commit(i)
                if commit is None:
                    self._failed(i, InvocationError("error", "finished without a commit record"), delayed)
                    continue
                self.results[i] = commit
                done += 1
                self.bytes_done += self._bytes_of(commit)
                run.progress.task_done(self.name, done, n, self.bytes_done)
        return [r for r in self.results if r is not None]

    def _read_commit(self, i: int) -> dict[str, Any] | None:
        ev = self.events[i]
        key = layout.commit_key(ev["job_id"], ev["step"], self.phase, ev["task"])
        if self.run_.work.head(key) is None:
            return None
        return layout.read_json(self.run_.work, key)

    def _submit(self, i: int) -> Future:
        run = self.run_
        self.attempts[i] += 1
        event = watched = {**self.events[i], "attempt": uuid.uuid4().hex[:12]}
        self._attempt_ids[i] = event["attempt"]
        try:
            encode_event(event)
        except PayloadTooLarge:
            key = layout.event_key(run.job_id, f"s{event['step']}-{self.phase}-{i}-{event['attempt']}")
            layout.write_json(run.work, key, event)
            event = {"work": event["work"], "store_options": event["store_options"],
                     "event_ref": key}
        try:
            fut = run.platform.invoke(event)
        except InvocationError as e:
            fut = Future()
            fut.set_exception(e)
            return fut
        if not run.platform.reports_results:
            # Fire-and-forget: the outcome (commit, error record or silence) is read from the store.
            from .outcomes import StoreOutcomes
            if self.outcomes is None:
                self.outcomes = StoreOutcomes(run.work, run.platform.timeout_s,
                                              getattr(run.platform, "outcome_margin_s", 60.0))
            fut = self.outcomes.watch(fut, watched, self.phase)
        return fut

    def _failed(self, i: int, err: InvocationError, delayed: list[tuple[float, int]]) -> None:
        run = self.run_
        run.stats.failures[err.kind] += 1
        ev = self.events[i]
        try:  # for `smr status` and `smr resume`: the attempt counts even if this client dies
            jobstate.record_failure(run.work, {**ev, "attempt": self._attempt_ids.get(i, "")},
                                    err.kind, err.message)
        except Exception:
            log.debug("could not record the failure of %s task %d", self.name, i, exc_info=True)
        run.stats.failure_log.append({"phase": self.phase, "step": ev["step"], "task": i,
                                      "attempt": self.attempts[i], "kind": err.kind,
                                      "message": err.message})
        if self.attempts[i] >= run.settings.max_attempts or err.kind == "payload":
            raise JobFailed(f"{self.name} task {i} failed after {self.attempts[i]} "
                            f"attempt{'s' if self.attempts[i] > 1 else ''}: {err.message}",
                            job_id=run.job_id, traceback=err.traceback)
        self.retries += 1
        run.stats.retries += 1
        backoff = min(5.0, 0.2 * 2 ** (self.attempts[i] - 1)) * (0.5 + random.random())
        log.warning("%s task %d attempt %d failed (%s): %s; retrying in %.1fs", self.name, i,
                    self.attempts[i], err.kind, err.message, backoff)
        run.progress.task_retry(self.name, i, err.kind, err.message)
        delayed.append((time.time() + backoff, i))
