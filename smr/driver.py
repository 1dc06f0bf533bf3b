"""Client-side orchestration: plan a job, run its tasks with retries, finalize its output."""
from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import jobstate, layout, metrics
from .api import Job, is_columnar
from .config import JobSettings, make_settings
from .faults import FaultSpec
from .finalize import publish_output, write_success
from .jobload import load_job, pickle_job
from .partition import encode_boundaries, job_partitioner_kind, overrides_partitioner
from .planner import choose_split_size, list_inputs, plan_map_tasks
from .platforms.base import Platform
from .runner import TaskFailed, TaskRunner
from .secrets import scrub, scrub_text
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
            if settings.inject_faults or settings.speculative:
                raise JobFailed("inject_faults and speculative need the client driver's direct "
                                "fan-out and shuffle reduce (fanout: direct, reduce: shuffle)")
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
        self.faults: FaultSpec | None = None
        if settings.inject_faults:
            spec = FaultSpec.parse(settings.inject_faults)
            if spec.kills_functions and not getattr(platform, "isolates_functions", False):
                raise JobFailed("--inject-faults kill/timeout/oom need a platform that runs "
                                "functions in their own processes (e.g. --platform local)")
            self.faults = spec if spec.active else None
        self.injected: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()
        self.work = self._faulty(open_store(self.work_url, self.store_options), "work")
        self.out = self._faulty(open_store(self.output_url, self.store_options), "out")
        for what, store in (("output", self.out), ("work dir", self.work)):
            if getattr(store, "read_only", False):
                raise JobFailed(f"{what} {store.url} is read-only; use a local path, s3:// or "
                                "another writable store")
        self.stats = RunStats()
        self.phases: dict[str, float] = collections.defaultdict(float)
        self.commits: list[dict[str, Any]] = []
        self.spec_written = False

    def _faulty(self, store: Store, name: str) -> Store:
        """The driver's own stores meet store faults too, when they are injected."""
        if self.faults is None or self.faults.store <= 0:
            return store
        from .storage.faulty import FaultyStore
        faulty = FaultyStore(store, rate=self.faults.store, seed=f"{self.faults.seed}/driver/{name}")
        self._driver_stores = [*getattr(self, "_driver_stores", []), faulty]
        return faulty

    def _open(self, url: str) -> Store:
        return open_store(url, self.store_options)

    # -- the job ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        except TaskFailed as e:
            self._record_failure({**e.record, "message": str(e)})
            raise JobFailed(scrub_text(str(e)), job_id=self.job_id,
                            traceback=scrub_text(e.record["traceback"])) from None
        except Exception as e:
            if self.spec_written:
                self._record_failure({"phase": "driver", "kind": type(e).__name__,
                                      "message": str(e), "traceback": traceback.format_exc()})
            raise

    def _record_failure(self, record: dict[str, Any]) -> None:
        """``jobs/<id>/failed.json``: what ``smr status`` shows for a failed job."""
        record = {"job_id": self.job_id, "status": "failed",
                  "ended": dt.datetime.now(dt.timezone.utc).isoformat(),
                  "retries": self.stats.retries, "failures": dict(self.stats.failures),
                  **record}
        record = scrub(record)
        try:
            layout.write_json(self.work, layout.failure_key(self.job_id), record)
        except Exception:  # the store itself may be what failed; the CLI still reports
            log.warning("could not write the failure record of job %s", self.job_id, exc_info=True)

    def _run(self) -> dict[str, Any]:
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
            "settings": scrub(self.settings.model_dump(mode="json")),
            "input_objects": len(objects), "input_bytes": total, "split_size": split,
            "map_tasks": len(tasks),
        }
        self.work.put(layout.code_key(self.job_id), pickle_job(self.job))
        layout.write_json(self.work, layout.spec_key(self.job_id), spec)
        jobstate.record_created(self.work, spec, tasks,
                                [s.reducers or self.settings.reducers for s in self.steps], started)
        self.spec_written = True
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
                srcs = [layout.shuffle_source(c, r) for c in maps.commits]
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
        # _SUCCESS goes first, so a reader never sees old parts under a finished marker; what
        # a failed delete leaves behind is swept again before the new _SUCCESS (_finalize).
        self.out.delete(layout.SUCCESS)
        self.out.delete_prefix("")

    def _finalize(self, started: float, input_bytes: int, input_objects: int,
                  steps: list[dict[str, Any]]) -> dict[str, Any]:
        t = time.time()
        summary = self._summary(started, input_bytes, input_objects, steps)
        publish_output(self.work, self.out, self.job_id, len(self.steps), self.commits,
                       self.settings.keep_intermediates)
        self.phases["finalize"] += time.time() - t
        summary["phases"]["finalize"] = round(self.phases["finalize"], 3)
        summary["wall_seconds"] = round(time.time() - started, 3)
        summary["cost"]["reference"] = metrics.reference_comparison(
            input_bytes, summary["cost"]["total_usd"], summary["wall_seconds"])
        summary["faults_injected"] = self._faults_injected()
        write_success(self.work, self.out, self.job_id, summary)
        return summary

    def _faults_injected(self) -> dict[str, int]:
        counts = collections.Counter(self.injected)
        for store in getattr(self, "_driver_stores", []):
            counts["store"] += store.injected
        return {k: v for k, v in sorted(counts.items()) if v}

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
            "speculative": {"launched": self.counts["speculative"],
                            "won": self.counts["speculative_won"]},
            "resplits": self.counts["resplits"],
            "faults_injected": self._faults_injected(),
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
        self.counts.update(runner.counts)
        self.phases[phase] += seconds
        self.commits.extend(commits)
        self.progress.phase_finished(name, seconds)
        return PhaseResult(commits, seconds, runner.retries)
