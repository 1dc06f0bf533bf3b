"""A job's state, read from the store alone, and the one function that advances it.

Every way of driving a job goes through ``advance``: the client loop of ``smr run --fanout tree``
or ``--reduce tree``, the event coordinator (a function that fires on uploads and task commits),
and ``smr resume``. ``advance`` reads what the store holds (plan, commit records, failure records,
create-once round markers), works out which round of tasks is ready, and launches it. It is
idempotent: a duplicated or reordered event finds the round's marker already written and launches
nothing, a round is never skipped because readiness is computed from commit records, not from the
event that arrived, and task names are exact zero-padded keys.

``status`` turns the same state into what ``smr status`` prints.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from . import layout, metrics
from .platforms.base import PayloadTooLarge, encode_event
from .storage import Store

log = logging.getLogger(__name__)

#: Worker roles that run one task, and the phase their commit records live under.
ROLE_PHASE = {"map": "map", "reduce": "reduce", "tree-reduce": "tree"}
#: Phases as a user sees them: tree-reduce rounds are part of the reduce phase.
SHOWN_PHASE = {"map": "map", "reduce": "reduce", "tree": "reduce"}
FANOUTS = ("direct", "tree")
REDUCES = ("shuffle", "tree")


class TaskFailedError(Exception):
    """A task failed its last allowed attempt."""


class Launcher(Protocol):
    """Starts function invocations, fire-and-forget; outcomes reach the store."""

    #: Names the platform kind and function, so workers can invoke functions themselves.
    descriptor: dict[str, Any]

    def launch(self, events: list[dict[str, Any]]) -> None: ...


class InvokeLauncher:
    """Launches events through ``invoke(event)`` on a bounded pool of invoker threads.

    On Lambda one asynchronous invoke is an HTTP request of tens of milliseconds, so a thousand
    mappers need the pool; on the local host an invoke only queues, and the pool costs nothing.
    """

    def __init__(self, invoke: Callable[[dict[str, Any]], Any], descriptor: dict[str, Any],
                 threads: int = 16) -> None:
        self._invoke = invoke
        self.descriptor = descriptor
        self.threads = max(1, threads)

    def launch(self, events: list[dict[str, Any]]) -> None:
        if len(events) <= 1 or self.threads == 1:
            for e in events:
                self._invoke(e)
            return
        with ThreadPoolExecutor(min(self.threads, len(events)),
                                thread_name_prefix="smr-invoker") as pool:
            for _ in pool.map(self._invoke, events):
                pass


# -- names and keys -----------------------------------------------------------------------------

def task_name(event: dict[str, Any]) -> str:
    if event["role"] == "tree-reduce":
        return layout.tree_name(event["part"], event["round"], event["task"])
    return f"{event['task']:05d}"


def commit_key_of(event: dict[str, Any]) -> str:
    phase = ROLE_PHASE[event["role"]]
    return f"{layout.commit_prefix(event['job_id'], event['step'], phase)}{task_name(event)}.json"


def _names(store: Store, prefix: str, suffix: str = ".json") -> list[str]:
    out = []
    for info in store.list(prefix):
        rest = info.key[len(prefix):]
        if "/" not in rest and rest.endswith(suffix):
            out.append(rest[:-len(suffix)])
    return out


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def job_start_time(spec: dict[str, Any]) -> float:
    if "started_at" in spec:
        return float(spec["started_at"])
    try:
        return dt.datetime.fromisoformat(spec["created"]).timestamp()
    except (KeyError, ValueError):
        return 0.0


# -- recording ----------------------------------------------------------------------------------

def record_created(work: Store, spec: dict[str, Any], tasks: list[dict[str, Any]],
                   reducers: list[int], started_at: float) -> None:
    """Write what a job needs beyond its spec to be resumed or reported on from the store."""
    write_plan(work, spec["job_id"], tasks, reducers, started_at)
    write_index(work, spec)


def write_plan(work: Store, job_id: str, tasks: list[dict[str, Any]], reducers: list[int],
               started_at: float) -> None:
    layout.write_json(work, layout.plan_key(job_id), {
        "tasks": [t["splits"] for t in tasks], "reducers": reducers, "started_at": started_at})


def write_index(work: Store, spec: dict[str, Any]) -> None:
    job_id = spec["job_id"]
    layout.write_json(work, layout.index_key(job_id), {
        "job_id": job_id, "job": spec.get("job_class", ""), "created": spec.get("created", ""),
        "output": spec.get("output", ""), "start": spec.get("start", "client")})


def record_run(work: Store, event: dict[str, Any]) -> None:
    """An attempt started: what `smr status` counts as running and `smr timeline` draws."""
    key = layout.attempt_key(event["job_id"], event["step"], ROLE_PHASE[event["role"]], "run",
                             task_name(event), event["attempt"])
    layout.write_json(work, key, {"started": time.time(), "attempt": event["attempt"]})


def record_failure(work: Store, event: dict[str, Any], kind: str, message: str,
                   started: float | None = None) -> None:
    """An attempt failed; the coordinator relaunches the task while attempts remain.

    ``started``, when the caller knows it, lets the timeline draw an attempt that failed before
    its run record was due (see ``smr.worker.run_records``).
    """
    key = layout.attempt_key(event["job_id"], event["step"], ROLE_PHASE[event["role"]], "failed",
                             task_name(event), event.get("attempt", "unknown"))
    record = {"kind": kind, "message": message[:2000], "ended": time.time(),
              "attempt": event.get("attempt", "unknown")}
    if started is not None:
        record["started"] = started
    layout.write_json(work, key, record)


def is_finished(work: Store, job_id: str) -> bool:
    """True once the job's output is visible: its summary is final and ``_SUCCESS`` written.

    The summary is written twice, before and after ``_SUCCESS``; only the second has the
    finalize time, so a reader never takes a job for finished while its output is not.
    """
    if work.head(layout.summary_key(job_id)) is None:
        return False
    try:
        summary = layout.read_json(work, layout.summary_key(job_id))
    except Exception:  # removed meanwhile
        return False
    return "finalize" in summary.get("phases", {})


def mark_failed(work: Store, job_id: str, message: str) -> None:
    if work.head(layout.failure_key(job_id)) is None:
        layout.write_json(work, layout.failure_key(job_id), {"message": message, "ended": _now_iso()})


# -- state --------------------------------------------------------------------------------------

@dataclass
class Round:
    """Tasks that become ready together: a step's maps, its reducers, or one tree level."""

    name: str
    step: int
    phase: str                       # map, reduce or tree (commit record phase)
    names: list[str]                 # task names, exact
    build: Callable[[list[str]], list[dict[str, Any]]]   # events for the given task names
    tree_root: bool = False          # launch by MARLA's tree: invoke task 0 only


class JobState:
    """What the store says about one job; listings are read once per instance."""

    def __init__(self, work: Store, job_id: str) -> None:
        self.work = work
        self.job_id = job_id
        self.spec: dict[str, Any] = layout.read_json(work, layout.spec_key(job_id))
        self._plan: dict[str, Any] | None = None
        self._listed: dict[str, list[str]] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self.settings: dict[str, Any] = self.spec.get("settings", {})

    # the store's contents, lazily
    @property
    def plan(self) -> dict[str, Any]:
        if self._plan is None:
            self._plan = layout.read_json(self.work, layout.plan_key(self.job_id))
        return self._plan

    @property
    def steps(self) -> int:
        return int(self.spec.get("steps", 1))

    @property
    def fanout(self) -> str:
        return self.settings.get("fanout", "direct")

    @property
    def reduce(self) -> str:
        return self.settings.get("reduce", "shuffle")

    @property
    def fan_in(self) -> int:
        return int(self.settings.get("reduce_fan_in", 4))

    @property
    def max_attempts(self) -> int:
        return int(self.settings.get("max_attempts", 3))

    def reducers(self, step: int) -> int:
        return int(self.plan["reducers"][step])

    def map_count(self, step: int) -> int:
        return len(self.plan["tasks"]) if step == 0 else self.reducers(step - 1)

    def listed(self, step: int, phase: str, kind: str = "done") -> list[str]:
        if kind == "done":
            prefix = layout.commit_prefix(self.job_id, step, phase)
        else:
            prefix = layout.attempt_prefix(self.job_id, step, phase, kind)
        if prefix not in self._listed:
            self._listed[prefix] = _names(self.work, prefix)
        return self._listed[prefix]

    def done(self, step: int, phase: str) -> set[str]:
        return set(self.listed(step, phase))

    def failures(self, step: int, phase: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.listed(step, phase, "failed"):
            name = n.rsplit("-", 1)[0]
            counts[name] = counts.get(name, 0) + 1
        return counts

    def commit(self, step: int, phase: str, name: str) -> dict[str, Any]:
        key = f"{layout.commit_prefix(self.job_id, step, phase)}{name}.json"
        if key not in self._records:
            self._records[key] = layout.read_json(self.work, key)
        return self._records[key]

    def finished(self) -> bool:
        return is_finished(self.work, self.job_id)

    def failed_message(self) -> str | None:
        if self.work.head(layout.failure_key(self.job_id)) is None:
            return None
        return layout.read_json(self.work, layout.failure_key(self.job_id)).get("message", "failed")

    # events
    @property
    def store_options(self) -> dict[str, Any]:
        if self.spec.get("store_options"):
            return self.spec["store_options"]
        endpoint = self.settings.get("s3_endpoint")
        return {"s3_endpoint": endpoint} if endpoint else {}

    def _base(self, step: int) -> dict[str, Any]:
        return {"work": self.spec["work"], "store_options": self.store_options,
                "job_id": self.job_id, "step": step}

    def map_events(self, step: int, names: list[str]) -> list[dict[str, Any]]:
        base = {**self._base(step), "role": "map", "partitions": self.reducers(step)}
        if step == 0:
            tasks = self.plan["tasks"]
            return [{**base, "task": int(n), "splits": tasks[int(n)]} for n in names]
        sources = self.step_outputs(step - 1)
        return [{**base, "task": int(n), "sources": [sources[int(n)]]} for n in names]

    def step_outputs(self, step: int) -> list[str]:
        return [self.commit(step, "reduce", f"{p:05d}")["output_key"]
                for p in range(self.reducers(step))]

    def map_sources(self, step: int, part: int) -> list[list[Any]]:
        out = []
        for t in range(self.map_count(step)):
            for c in self._map_commits(step, t):
                out.append(layout.shuffle_source(c, part))
        return out

    def _map_commits(self, step: int, task: int) -> list[dict[str, Any]]:
        """A map task's commit, or its sub-tasks' when the driver re-split it (out of memory)."""
        c = self.commit(step, "map", f"{task:05d}")
        if not layout.is_split(c):
            return [c]
        return [s for sub in c["split_into"] for s in self._map_commits(step, sub)]

    # rounds
    def ready_rounds(self, step: int) -> list[Round]:
        """The step's rounds that can run now and are not complete; [] when the step is done."""
        n_maps = self.map_count(step)
        map_names = [f"{t:05d}" for t in range(n_maps)]
        if not set(map_names) <= self.done(step, "map"):
            tree = step == 0 and self.fanout == "tree"
            return [Round(f"s{step}-map", step, "map", map_names,
                          lambda names, s=step: self.map_events(s, names), tree_root=tree)]
        parts = range(self.reducers(step))
        if self.reduce == "shuffle":
            names = [f"{p:05d}" for p in parts]
            if set(names) <= self.done(step, "reduce"):
                return []
            return [Round(f"s{step}-reduce", step, "reduce", names,
                          lambda ns, s=step: self._shuffle_events(s, ns))]
        rounds = []
        for p in parts:
            r = self._tree_round(step, p, n_maps)
            if r is not None:
                rounds.append(r)
        return rounds

    def _shuffle_events(self, step: int, names: list[str]) -> list[dict[str, Any]]:
        base = {**self._base(step), "role": "reduce"}
        return [{**base, "task": int(n), "sources": self.map_sources(step, int(n))} for n in names]

    def _tree_round(self, step: int, part: int, n_maps: int) -> Round | None:
        levels = tree_levels(n_maps, self.fan_in)
        final = f"{part:05d}"
        if final in self.done(step, "reduce"):
            return None
        tree_done = self.done(step, "tree")
        prev_inputs: Callable[[], list[list[Any]]] = lambda: self.map_sources(step, part)
        for r, batches in enumerate(levels, start=1):
            names = [layout.tree_name(part, r, i) for i in range(len(batches))]
            if not set(names) <= tree_done:
                return Round(f"s{step}-tree-{part:05d}-{r:03d}", step, "tree", names,
                             self._tree_builder(step, part, r, batches, prev_inputs))
            prev_inputs = self._tree_outputs(step, names)
        last = len(levels) + 1
        return Round(f"s{step}-tree-{part:05d}-{last:03d}", step, "reduce", [final],
                     lambda ns, inputs=prev_inputs: [{**self._base(step), "role": "reduce",
                                                      "task": part, "sources": inputs()}])

    def _tree_outputs(self, step: int, names: list[str]) -> Callable[[], list[list[Any]]]:
        def inputs() -> list[list[Any]]:
            out = []
            for n in names:
                c = self.commit(step, "tree", n)
                out.append([c["data_key"], 0, c["size"]])
            return out
        return inputs

    def _tree_builder(self, step: int, part: int, round_: int, batches: list[range],
                      inputs: Callable[[], list[list[Any]]]) -> Callable[[list[str]], list[dict]]:
        def build(names: list[str]) -> list[dict[str, Any]]:
            srcs = inputs()
            by_name = {layout.tree_name(part, round_, i): b for i, b in enumerate(batches)}
            return [{**self._base(step), "role": "tree-reduce", "part": part, "round": round_,
                     "task": int(n.rsplit("-", 1)[1]),
                     "sources": [srcs[j] for j in by_name[n]]} for n in names]
        return build


def tree_levels(n: int, fan_in: int) -> list[list[range]]:
    """The intermediate levels of a tree reduction over ``n`` inputs, each a list of batches.

    A level cuts its inputs into consecutive batches of at least 2 (about ``fan_in``) inputs;
    levels repeat while more than ``fan_in`` inputs remain, and a last reducer (not listed here)
    merges the rest into the result.
    """
    levels = []
    while n > fan_in:
        k = math.ceil(n / fan_in)
        while k > 1 and n < 2 * k:
            k -= 1
        bounds = [round(i * n / k) for i in range(k + 1)]
        levels.append([range(bounds[i], bounds[i + 1]) for i in range(k)])
        n = k
    return levels


# -- advancing ----------------------------------------------------------------------------------

@dataclass
class Advance:
    status: str          # running, succeeded, failed
    launched: int = 0
    message: str = ""
    state: "JobState | None" = None


def fit_event(work: Store, event: dict[str, Any]) -> dict[str, Any]:
    """An event small enough to invoke with; a big one waits in the store (Lambda's 256 KB)."""
    try:
        encode_event(event)
        return event
    except PayloadTooLarge:
        key = layout.event_key(event["job_id"],
                               f"s{event['step']}-{event['role']}-{task_name(event)}-{event['attempt']}")
        # Store options stay inline (the handler merges them back): they may carry credentials.
        layout.write_json(work, key, {k: v for k, v in event.items() if k != "store_options"})
        return {"work": event["work"], "store_options": event.get("store_options") or {},
                "event_ref": key}


def advance(work: Store, job_id: str, launcher: Launcher, *, relaunch: bool = False,
            notify: bool = False) -> Advance:
    """Launch whatever the job's state in the store says is ready; finalize a complete job.

    ``relaunch`` (resume) also relaunches tasks of launched rounds that have neither committed
    nor failed: their launcher died with them. ``notify`` asks every task to raise a commit event
    for the coordinator (event-driven jobs).
    """
    st = JobState(work, job_id)
    if st.finished():
        return Advance("succeeded", state=st)
    message = st.failed_message()
    if message is not None:
        return Advance("failed", message=message, state=st)
    launched = 0
    try:
        for step in range(st.steps):
            rounds = st.ready_rounds(step)
            if rounds:
                for rnd in rounds:
                    launched += _ensure(st, rnd, launcher, relaunch, notify)
                return Advance("running", launched, state=st)
    except TaskFailedError as e:
        mark_failed(work, job_id, str(e))
        return Advance("failed", launched, str(e), state=st)
    if work.put_if_absent(layout.finalize_marker_key(job_id), b"") or relaunch:
        from .finalize import finalize
        finalize(st)
        return Advance("succeeded", launched, state=st)
    return Advance("running", launched, state=st)


def _ensure(st: JobState, rnd: Round, launcher: Launcher, relaunch: bool, notify: bool) -> int:
    done = st.done(rnd.step, rnd.phase)
    missing = [n for n in rnd.names if n not in done]
    if not missing:
        return 0
    work = st.work
    if work.put_if_absent(layout.marker_key(st.job_id, rnd.name), _stamp()):
        if rnd.tree_root and not relaunch:
            events = rnd.build([rnd.names[0]])
            events[0] = {**events[0], "tree": {"size": len(rnd.names)}}
            events[0].pop("splits", None)  # every node reads its splits from the plan
        else:
            events = rnd.build(missing)
        return _launch(st, launcher, events, notify)
    failures = st.failures(rnd.step, rnd.phase)
    again = []
    for name in missing:
        failed = failures.get(name, 0)
        if failed >= st.max_attempts:
            raise TaskFailedError(_failure_message(st, rnd, name, failed))
        if relaunch:  # whoever launched the missing tasks died with them
            again.append(name)
        elif failed and work.put_if_absent(
                layout.marker_key(st.job_id, rnd.name, f"{name}-a{failed + 1}"), _stamp()):
            again.append(name)
    if not again:
        return 0
    events = rnd.build(again)
    if rnd.tree_root and not relaunch:
        # A retried node of the tree invokes its children unless it already had: they are not
        # retried otherwise if it failed before invoking them. (A resume relaunches them all.)
        events = [{**e, "tree": {"size": len(rnd.names)}} for e in events]
        for e in events:
            e.pop("splits", None)
    log.info("job %s: relaunching %d task(s) of %s", st.job_id, len(again), rnd.name)
    return _launch(st, launcher, events, notify)


def _failure_message(st: JobState, rnd: Round, name: str, attempts: int) -> str:
    prefix = layout.attempt_prefix(st.job_id, rnd.step, rnd.phase, "failed")
    last = ""
    for n in sorted(st.listed(rnd.step, rnd.phase, "failed")):
        if n.rsplit("-", 1)[0] == name:
            try:
                last = layout.read_json(st.work, f"{prefix}{n}.json").get("message", "")
            except Exception:  # a record deleted meanwhile: the count still stands
                pass
    what = SHOWN_PHASE[rnd.phase]
    step = f"step {rnd.step + 1} " if st.steps > 1 else ""
    return (f"{step}{what} task {name} failed after {attempts} "
            f"attempt{'s' if attempts > 1 else ''}: {last}")


def _stamp() -> bytes:
    return json.dumps({"at": time.time()}).encode()


def _launch(st: JobState, launcher: Launcher, events: list[dict[str, Any]], notify: bool) -> int:
    ready = []
    for e in events:
        e = {**e, "attempt": uuid.uuid4().hex[:12], "platform": launcher.descriptor}
        if notify:
            e["notify"] = True
        ready.append(fit_event(st.work, e))
    launcher.launch(ready)
    return len(ready)


# -- status -------------------------------------------------------------------------------------

def status(work: Store, job_id: str) -> dict[str, Any]:
    """Phase, task counts per phase, bytes, elapsed time and cost so far, from the store."""
    st = JobState(work, job_id)
    summary = layout.read_json(work, layout.summary_key(job_id)) if st.finished() else None
    failed = st.failed_message()
    started = job_start_time(st.spec)
    phases: dict[str, dict[str, int]] = {}
    commits: list[dict[str, Any]] = []
    failures = 0
    current = None
    try:
        plan = st.plan
    except Exception:
        plan = None
    for step in range(st.steps):
        for phase in ("map", "tree", "reduce"):
            done = st.done(step, phase)
            failed_names = st.failures(step, phase)
            failed_attempts = set(st.listed(step, phase, "failed"))
            # Running: an attempt started, and neither it failed nor its task committed.
            running_now = {n.rsplit("-", 1)[0] for n in st.listed(step, phase, "run")
                           if n.rsplit("-", 1)[0] not in done and n not in failed_attempts}
            shown = SHOWN_PHASE[phase]
            label = shown if st.steps == 1 else f"step {step + 1} {shown}"
            entry = phases.setdefault(label, {"total": 0, "done": 0, "running": 0, "failed": 0})
            if plan is not None:
                if phase == "map":
                    entry["total"] += st.map_count(step)
                elif phase == "reduce":
                    entry["total"] += st.reducers(step)
                elif st.reduce == "tree":
                    entry["total"] += st.reducers(step) * sum(
                        len(lv) for lv in tree_levels(st.map_count(step), st.fan_in))
            entry["done"] += len(done)
            entry["running"] += len(running_now)
            entry["failed"] += sum(failed_names.values())
            failures += sum(failed_names.values())
            for n in sorted(done):
                try:
                    commits.append(st.commit(step, phase, n))
                except Exception:  # cleaned up under us by a finishing job
                    pass
    for label, entry in phases.items():
        entry["pending"] = max(0, entry["total"] - entry["done"] - entry["running"])
        if current is None and entry["done"] < entry["total"]:
            current = label
    if summary is not None:
        phase = "succeeded"
        elapsed = summary.get("wall_seconds", 0.0)
    elif failed is not None:
        phase = "failed"
        elapsed = max(0.0, _ended(work, job_id) - started)
    else:
        phase = current or "finalizing"
        elapsed = max(0.0, time.time() - started)
    requests: dict[str, int] = {}
    gbs = 0.0
    for c in commits:
        m = c.get("metrics", {})
        metrics.add_requests(requests, m.get("requests", {}))
        gbs += metrics.gb_seconds(m.get("duration_ms", 0), m.get("memory_mb", 0))
    cost = metrics.cost_estimate(gb_seconds=gbs, invocations=len(commits) + failures,
                                 requests=requests)
    first = [c for c in commits if c.get("phase") == "map" and c.get("step") == 0]
    finals = [c for c in commits if c.get("phase") == "reduce" and c.get("step") == st.steps - 1]
    return {
        "job_id": job_id, "job": st.spec.get("job_class", ""), "phase": phase,
        "start": st.spec.get("start", "client"), "fanout": st.fanout, "reduce": st.reduce,
        "output": st.spec.get("output", ""), "created": st.spec.get("created", ""),
        "elapsed_seconds": round(elapsed, 3), "tasks": phases,
        "bytes": {"input": st.spec.get("input_bytes", 0),
                  "read": sum(c["metrics"].get("bytes_read", 0) for c in first),
                  "shuffled": sum(c["metrics"].get("bytes_shuffled", 0) for c in commits
                                  if c.get("phase") == "map"),
                  "written": sum(c["metrics"].get("bytes_written", 0) for c in finals)},
        "retries": failures,
        "cost_usd": summary["cost_usd"] if summary else cost["total_usd"],
        "error": failed,
    }


def _ended(work: Store, job_id: str) -> float:
    try:
        ended = layout.read_json(work, layout.failure_key(job_id)).get("ended", "")
        return dt.datetime.fromisoformat(ended).timestamp()
    except Exception:
        return time.time()


def list_jobs(work: Store) -> list[dict[str, Any]]:
    """Every job in the work dir, oldest first, with whether it succeeded, failed or runs."""
    out = []
    for name in _names(work, "index/"):
        try:
            entry = layout.read_json(work, layout.index_key(name))
        except Exception:
            continue
        if is_finished(work, name):
            entry["state"] = "succeeded"
        elif work.head(layout.failure_key(name)) is not None:
            entry["state"] = "failed"
        else:
            entry["state"] = "running"
        out.append(entry)
    out.sort(key=lambda e: (e.get("created", ""), e["job_id"]))
    return out


def iter_attempts(st: JobState) -> Iterable[dict[str, Any]]:
    """Every attempt of every task: committed ones from their commit records, failed or
    unfinished ones from their run and failure records (for the timeline)."""
    for step in range(st.steps):
        for phase in ("map", "tree", "reduce"):
            done = st.done(step, phase)
            committed_attempts = set()
            for n in sorted(done):
                try:
                    c = st.commit(step, phase, n)
                except Exception:
                    continue
                committed_attempts.add(f"{n}-{c['attempt']}")
                m = c["metrics"]
                yield {"step": step, "phase": SHOWN_PHASE[phase], "task": n,
                       "start": m["started"], "end": m["ended"], "outcome": "committed",
                       "retries": st.failures(step, phase).get(n, 0)}
            failed = {}
            prefix = layout.attempt_prefix(st.job_id, step, phase, "failed")
            for n in st.listed(step, phase, "failed"):
                try:
                    failed[n] = layout.read_json(st.work, f"{prefix}{n}.json")
                except Exception:
                    continue
            prefix = layout.attempt_prefix(st.job_id, step, phase, "run")
            for n in st.listed(step, phase, "run"):
                if n in committed_attempts:
                    continue
                try:
                    run = layout.read_json(st.work, f"{prefix}{n}.json")
                except Exception:
                    continue
                f = failed.pop(n, None)
                yield {"step": step, "phase": SHOWN_PHASE[phase], "task": n.rsplit("-", 1)[0],
                       "start": run["started"], "end": f["ended"] if f else None,
                       "outcome": f["kind"] if f else "lost", "retries": 0}
            # Attempts that failed before their run record was due.
            for n, f in sorted(failed.items()):
                if n in committed_attempts:
                    continue
                yield {"step": step, "phase": SHOWN_PHASE[phase], "task": n.rsplit("-", 1)[0],
                       "start": f.get("started", f["ended"]), "end": f["ended"],
                       "outcome": f["kind"], "retries": 0}
