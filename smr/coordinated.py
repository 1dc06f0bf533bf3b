"""Jobs driven from their state in the store: creating them, and a client loop that drives them.

``smr run --fanout tree`` or ``--reduce tree`` and ``smr resume`` run here: the client plans (or
finds) the job, then loops over ``jobstate.advance`` until the store says the job is done. Tasks
are launched fire-and-forget (``Platform.invoke_event``); their commits, and the failure records
their on-failure destination writes, are all the loop needs, which is why an event coordinator
and a resumed client can drive the same job with the same code.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any

from . import jobstate, layout
from .api import Job
from .config import JobSettings, make_settings
from .jobload import pickle_job
from .planner import choose_split_size, list_inputs, plan_map_tasks
from .platforms.invoker import describe
from .storage import Store, open_store

log = logging.getLogger(__name__)

#: How often the client loop looks at the store; it backs off to MAX_POLL_S while nothing changes.
POLL_S = 0.02
MAX_POLL_S = 0.25


def check_strategies(job: Job, settings: JobSettings) -> None:
    from .driver import JobFailed
    if settings.reduce == "tree" and not getattr(job, "ASSOCIATIVE", False):
        raise JobFailed(f"reduce 'tree' needs an associative and commutative reducer: "
                        f"{type(job).__name__} does not declare ASSOCIATIVE = True "
                        "(use reduce 'shuffle', or declare it if its reduce qualifies)")


def create_job(work: Store, *, job_id: str, job: Job, code: bytes | None, settings: JobSettings,
               inputs: list[str], output_url: str, work_url: str, start: str,
               started_at: float | None = None) -> tuple[dict[str, Any], bool]:
    """Plan a job and write it to the store; returns (spec, whether this call created it).

    The spec is written last and create-once, so of several coordinators that got the same upload
    event exactly one creates the job, and nobody sees a spec without its plan and code.
    """
    check_strategies(job, settings)
    options = settings.store_options()
    steps = job.steps()
    objects = list_inputs(inputs, lambda url: open_store(url, options))
    total = sum(o.size for o in objects)
    split = settings.split_size or choose_split_size(total, settings.memory, settings.concurrency)
    tasks = plan_map_tasks(objects, split)
    started_at = started_at or time.time()
    reducers = [s.reducers or settings.reducers for s in steps]
    spec = {
        "job_id": job_id, "job_class": type(job).__name__,
        "created": dt.datetime.fromtimestamp(started_at, dt.timezone.utc).isoformat(),
        "started_at": started_at, "start": start,
        "output": output_url, "work": work_url, "inputs": inputs,
        "store_options": options,
        "steps": len(steps), "memory": settings.memory,
        "bad_records": settings.bad_records, "buffer_mb": settings.buffer_mb,
        "md5_prefixes": settings.md5_prefixes,
        "settings": settings.model_dump(mode="json"),
        "input_objects": len(objects), "input_bytes": total, "split_size": split,
        "map_tasks": len(tasks), "reducers": reducers,
    }
    jobstate.write_plan(work, job_id, tasks, reducers, started_at)
    work.put(layout.code_key(job_id), code if code is not None else pickle_job(job))
    body = json.dumps(spec, separators=(",", ":"), sort_keys=True).encode()
    created = work.put_if_absent(layout.spec_key(job_id), body)
    if created:
        jobstate.write_index(work, spec)
        log.info("job %s: %d input objects, %d bytes, %d map tasks of ~%d bytes (%s start, "
                 "%s fan-out, %s reduce)", job_id, len(objects), total, len(tasks), split, start,
                 settings.fanout, settings.reduce)
    return spec, created


def platform_launcher(platform: Any, settings: JobSettings) -> jobstate.InvokeLauncher:
    return jobstate.InvokeLauncher(platform.invoke_event,
                                   describe(settings.platform, f"smr-{settings.platform}"),
                                   threads=settings.invoker_threads)


def run_coordinated(job: Job, settings: JobSettings, platform: Any, progress: Any) -> dict[str, Any]:
    """Run a job with the client as its coordinator (tree fan-out or tree reduce)."""
    from .driver import JobRun
    run = JobRun(job, settings, platform, progress)
    check_strategies(job, settings)
    run._check_output()
    create_job(run.work, job_id=run.job_id, job=job, code=None, settings=settings,
               inputs=[_norm(u) for u in settings.input], output_url=run.output_url,
               work_url=run.work_url, start="client")
    progress.job_started(run.job_id, run.work_url)
    return drive(run.work, run.job_id, platform_launcher(platform, settings), progress)


def _norm(url: str) -> str:
    from .driver import _norm as norm
    return norm(url)


def drive(work: Store, job_id: str, launcher: Any, progress: Any,
          relaunch: bool = False) -> dict[str, Any]:
    """Advance the job until the store says it succeeded (its summary) or failed (JobFailed)."""
    from .driver import JobFailed
    shown = _ProgressView(progress)
    delay = POLL_S
    first = True
    while True:
        t = time.perf_counter()
        adv = jobstate.advance(work, job_id, launcher, relaunch=relaunch and first)
        first = False
        if adv.state is not None:
            changed = shown.update(adv.state)
            delay = POLL_S if changed or adv.launched else min(MAX_POLL_S, delay * 1.5)
        # Reading the state costs more as a job grows; the loop spends at most a fifth of its
        # time on it, so it never starves the functions it waits for.
        delay = max(delay, 4 * (time.perf_counter() - t))
        if adv.status == "succeeded":
            shown.finish()
            return layout.read_json(work, layout.summary_key(job_id))
        if adv.status == "failed":
            raise JobFailed(adv.message, job_id=job_id)
        time.sleep(delay)


class _ProgressView:
    """Turns done counts read from the store into the driver's Progress calls."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.current: str | None = None
        self.started = 0.0
        self.done = -1

    def update(self, st: jobstate.JobState) -> bool:
        for step in range(st.steps):
            label = "map" if st.steps == 1 else f"step {step + 1} map"
            total = st.map_count(step)
            done = len(st.done(step, "map"))
            if done < total:
                return self._show(label, done, total)
            label = "reduce" if st.steps == 1 else f"step {step + 1} reduce"
            total = st.reducers(step)
            if st.reduce == "tree":
                total += st.reducers(step) * sum(
                    len(lv) for lv in jobstate.tree_levels(st.map_count(step), st.fan_in))
            done = len(st.done(step, "reduce")) + len(st.done(step, "tree"))
            if done < total:
                return self._show(label, done, total)
        return self._show("finalize", 0, 0)

    def _show(self, label: str, done: int, total: int) -> bool:
        if label != self.current:
            self.finish()
            self.current, self.started, self.done = label, time.time(), -1
            if total:
                self.progress.phase_started(label, total, 0)
        if done != self.done:
            self.done = done
            if total and done:
                self.progress.task_done(label, done, total, 0)
            return True
        return False

    def finish(self) -> None:
        if self.current and self.current != "finalize":
            self.progress.phase_finished(self.current, time.time() - self.started)
        self.current = None


def resume_job(job_id: str, work_url: str, *, store_options: dict[str, Any] | None = None,
               host: Any = None, progress: Any = None, **overrides: Any) -> dict[str, Any]:
    """Finish a job whose client died, from its state in the store; committed tasks stay done.

    ``overrides`` are settings (``platform``, ``concurrency``, ...) to change for the rest of the
    run; ``host`` is a running Platform to reuse.
    """
    from .driver import JobFailed, Progress, make_platform
    work = open_store(work_url, store_options)
    if work.head(layout.spec_key(job_id)) is None:
        raise JobFailed(f"no job {job_id!r} in {work.url} (see `smr jobs`)")
    st = jobstate.JobState(work, job_id)
    if st.finished():
        return layout.read_json(work, layout.summary_key(job_id))
    message = st.failed_message()
    if message is not None:
        raise JobFailed(f"job {job_id} failed and cannot be resumed: {message}", job_id=job_id)
    if work.head(layout.plan_key(job_id)) is None:
        raise JobFailed(f"job {job_id} has no plan in the store (its client died while "
                        "planning); run it again", job_id=job_id)
    values = {k: v for k, v in st.settings.items() if v is not None}
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = make_settings(**values)
    own = host is None
    host = host or make_platform(settings)
    try:
        return drive(work, job_id, platform_launcher(host, settings), progress or Progress(),
                     relaunch=True)
    finally:
        if own:
            host.close()
