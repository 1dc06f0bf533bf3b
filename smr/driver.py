"""Client-side orchestration: plan a job, run its tasks with retries, finalize its output."""
from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import os
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import layout, metrics
from .api import Job
from .config import JobSettings, make_settings
from .faults import FaultSpec
from .jobload import load_job, pickle_job
from .planner import choose_split_size, list_inputs, plan_map_tasks
from .platforms.base import Platform
from .runner import TaskFailed, TaskRunner
from .secrets import scrub, scrub_text
from .spool import Spool
from .storage import Store, open_store, url_scheme

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
    own_platform = platform is None
    platform = platform or make_platform(settings)
    try:
        return JobRun(job, settings, platform, progress or Progress()).run()
    finally:
        if own_platform:
            platform.close()


def _norm(url: str) -> str:
    if url_scheme(url) in ("", "file"):
        path = url[len("file://"):] if url.startswith("file://") else url
        return os.path.abspath(os.path.expanduser(path))
    return url.rstrip("/")


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
            self._record_failure(e.record)
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
            "settings": scrub(self.settings.model_dump(mode="json")),
            "input_objects": len(objects), "input_bytes": total, "split_size": split,
            "map_tasks": len(tasks),
        }
        self.work.put(layout.code_key(self.job_id), pickle_job(self.job))
        layout.write_json(self.work, layout.spec_key(self.job_id), spec)
        self.spec_written = True
        self.progress.job_started(self.job_id, self.work_url)
        self.phases["plan"] += time.time() - t
        log.info("job %s: %d input objects, %d bytes, %d map tasks of ~%d bytes",
                 self.job_id, len(objects), total, len(tasks), split)

        sources: list[str] = []
        step_summaries = []
        for index, step in enumerate(self.steps):
            reducers = step.reducers or self.settings.reducers
            base = {"work": self.work_url, "store_options": self.store_options,
                    "job_id": self.job_id, "step": index}
            if index == 0:
                map_events = [{**base, "role": "map", "task": i, "partitions": reducers,
                               "splits": t_["splits"]} for i, t_ in enumerate(tasks)]
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
        last = len(self.steps) - 1
        finals = [c for c in self.commits if c["phase"] == "reduce" and c["step"] == last]
        layout.publish(self.work, self.out, finals)
        expected = {layout.part_name(c["task"]) for c in finals}
        if self._write_bad_records():
            expected.add(layout.BAD_RECORDS)
        # Whatever else is in the output (left by an earlier job) must go before _SUCCESS.
        for stale in [o.key for o in self.out.list("") if o.key not in expected]:
            self.out.delete(stale)
        summary = self._summary(started, input_bytes, input_objects, steps)
        layout.write_json(self.work, layout.summary_key(self.job_id), summary)
        if not self.settings.keep_intermediates:
            for i in range(len(self.steps)):
                for sub in ("map/", "out/", "parts/", "bad/"):
                    self.work.delete_prefix(layout.step_prefix(self.job_id, i) + sub)
            self.work.delete_prefix(layout.job_prefix(self.job_id) + "events/")
        self.phases["finalize"] += time.time() - t
        summary["phases"]["finalize"] = round(self.phases["finalize"], 3)
        summary["wall_seconds"] = round(time.time() - started, 3)
        summary["faults_injected"] = self._faults_injected()
        # Written last: the output counts as finished only from this moment.
        self.out.put(layout.SUCCESS, json.dumps(summary, indent=2, sort_keys=True).encode())
        layout.write_json(self.work, layout.summary_key(self.job_id), summary)
        return summary

    def _write_bad_records(self) -> bool:
        """Gather the records that map tasks skipped into the output's ``_bad_records``."""
        keys = [c["bad_key"] for c in self.commits if c["phase"] == "map" and c.get("bad_key")]
        if not keys:
            return False
        with Spool(64 * 2**20) as out:
            for key in keys:
                stream = self.work.open_range(key)
                while chunk := stream.read(1 << 20):
                    out.write(chunk)
            out.upload(self.out, layout.BAD_RECORDS)
        return True

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
