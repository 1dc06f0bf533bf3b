"""Finishing a job from its state in the store: the summary, the cleanup, ``_SUCCESS`` last.

The client driver finalizes from what it holds in memory; a job advanced by events or resumed
after its client died has only the store, and this module finalizes it from there.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from . import layout, metrics
from .jobstate import JobState, job_start_time
from .spool import Spool
from .storage import Store, open_store


def publish_output(work: Store, out: Store, job_id: str, steps: int,
                   commits: list[dict[str, Any]], keep_intermediates: bool) -> None:
    """Copy the committed final parts (and skipped records) into the output, remove whatever
    else is there, and clean the job's intermediates; everything but ``_SUCCESS``."""
    finals = [c for c in commits if c["phase"] == "reduce" and c["step"] == steps - 1]
    layout.publish(work, out, finals)
    expected = {layout.part_name(c["task"]) for c in finals}
    if _write_bad_records(work, out, commits):
        expected.add(layout.BAD_RECORDS)
    # Whatever else is in the output (left by an earlier job) must go before _SUCCESS.
    for stale in [o.key for o in out.list("") if o.key not in expected]:
        out.delete(stale)
    if not keep_intermediates:
        for i in range(steps):
            for sub in ("map/", "out/", "parts/", "bad/"):
                work.delete_prefix(layout.step_prefix(job_id, i) + sub)
        work.delete_prefix(layout.job_prefix(job_id) + "events/")


def write_success(work: Store, out: Store, job_id: str, summary: dict[str, Any]) -> None:
    """Written last: the output counts as finished only from this moment, and the job (for
    `smr jobs` and `smr status`) only once its output is."""
    out.put(layout.SUCCESS, json.dumps(summary, indent=2, sort_keys=True).encode())
    layout.write_json(work, layout.summary_key(job_id), summary)


def _write_bad_records(work: Store, out: Store, commits: list[dict[str, Any]]) -> bool:
    """Gather the records that map tasks skipped into the output's ``_bad_records``."""
    keys = [c["bad_key"] for c in commits if c["phase"] == "map" and c.get("bad_key")]
    if not keys:
        return False
    with Spool(64 * 2**20) as spool:
        for key in keys:
            stream = work.open_range(key)
            while chunk := stream.read(1 << 20):
                spool.write(chunk)
        spool.upload(out, layout.BAD_RECORDS)
    return True


def finalize(st: JobState) -> dict[str, Any]:
    t = time.time()
    spec = st.spec
    options = spec.get("store_options") or {}
    out = open_store(spec["output"], options)
    commits = []
    failures = 0
    for step in range(st.steps):
        for phase in ("map", "tree", "reduce"):
            commits.extend(st.commit(step, phase, n) for n in sorted(st.done(step, phase)))
            failures += sum(st.failures(step, phase).values())
    summary = build_summary(st, commits, failures)
    publish_output(st.work, out, st.job_id, st.steps, commits,
                   bool(spec.get("settings", {}).get("keep_intermediates")))
    summary["phases"]["finalize"] = round(time.time() - t, 3)
    summary["wall_seconds"] = round(time.time() - job_start_time(spec), 3)
    summary["ended"] = dt.datetime.now(dt.timezone.utc).isoformat()
    write_success(st.work, out, st.job_id, summary)
    return summary


def build_summary(st: JobState, commits: list[dict[str, Any]], failures: int) -> dict[str, Any]:
    """The job summary, with the same fields the client driver writes."""
    spec = st.spec
    last = st.steps - 1
    maps = [c for c in commits if c["phase"] == "map"]
    reduces = [c for c in commits if c["phase"] in ("reduce", "tree")]
    finals = [c for c in commits if c["phase"] == "reduce" and c["step"] == last]
    first_maps = [c for c in maps if c["step"] == 0]
    requests: dict[str, int] = {}
    counters: dict[str, dict[str, int]] = {}
    gbs = 0.0
    for c in commits:
        m = c["metrics"]
        metrics.add_requests(requests, m.get("requests", {}))
        metrics.add_counters(counters, c.get("counters", {}))
        gbs += metrics.gb_seconds(m["duration_ms"], m["memory_mb"])
    metrics.add_requests(requests, st.work.requests.snapshot())
    invocations = len(commits) + failures
    if spec.get("start") == "event":
        invocations += len(commits) + 1  # the coordinator: once per commit, once for the upload
    cost = metrics.cost_estimate(gb_seconds=gbs, invocations=invocations, requests=requests)

    def total(cs: list[dict[str, Any]], k: str) -> int:
        return sum(c["metrics"].get(k, 0) for c in cs)

    def span(cs: list[dict[str, Any]]) -> float:
        if not cs:
            return 0.0
        return max(c["metrics"]["ended"] for c in cs) - min(c["metrics"]["started"] for c in cs)

    started = job_start_time(spec)
    steps = []
    for i in range(st.steps):
        sm = [c for c in maps if c["step"] == i]
        sr = [c for c in reduces if c["step"] == i]
        steps.append({"map_tasks": len(sm), "reduce_tasks": len(sr),
                      "map_seconds": round(span(sm), 3), "reduce_seconds": round(span(sr), 3)})
    return {
        "job_id": st.job_id, "status": "succeeded", "job": spec.get("job_class", ""),
        "output": spec["output"], "work_dir": spec["work"],
        "started": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(),
        "ended": dt.datetime.now(dt.timezone.utc).isoformat(),
        "wall_seconds": round(time.time() - started, 3),
        "phases": {"map": round(span(maps), 3), "reduce": round(span(reduces), 3)},
        "steps": steps,
        "tasks": {"map": len(maps), "reduce": len(reduces)},
        "input": {"objects": spec.get("input_objects", 0), "bytes": spec.get("input_bytes", 0)},
        "records": {"input": total(first_maps, "records_in"),
                    "map_output": total(maps, "records_out"),
                    "output": total(finals, "records_out"),
                    "bad": total(maps, "bad_records")},
        "bytes": {"read": total(first_maps, "bytes_read"),
                  "shuffled": total(maps, "bytes_shuffled"),
                  "written": total(finals, "bytes_written")},
        "parts": len(finals),
        "retries": failures,
        "failures": {},
        "cold_starts": sum(1 for c in commits if c["metrics"].get("cold_start")),
        "invocations": invocations,
        "spills": total(commits, "spills"),
        "peak_rss_mb": max((c["metrics"].get("peak_rss_mb", 0) for c in commits), default=0),
        "memory_mb": spec.get("memory", 0),
        "counters": counters,
        "cost": cost,
        "cost_usd": cost["total_usd"],
        "start": spec.get("start", "client"),
        "fanout": st.fanout,
        "reduce": st.reduce,
    }
