"""Where a job keeps its state in the work store, and the commit protocol.

Everything a job needs lives under ``jobs/<job_id>/`` in the work store, so any process can
rebuild the job's state from the store alone:

    jobs/<id>/job.json                  the spec (settings, steps, inputs, output)
    jobs/<id>/job.pkl                   the job object (cloudpickle)
    jobs/<id>/s<step>/map/<task>-<attempt>.bin      one map attempt's shuffle output
                                        (with md5_prefixes: map/<md5[:4]>-<task>-<attempt>.bin)
    jobs/<id>/s<step>/map-done/<task>.json          the map task's commit record
    jobs/<id>/s<step>/bad/<task>-<attempt>.jsonl    records a map attempt skipped (bad_records: skip)
    jobs/<id>/s<step>/out/<part>-<attempt>.bin      a non-final reduce attempt's output
    jobs/<id>/s<step>/parts/<part>-<attempt>.txt    a final reduce attempt's output, published
                                                    as <output>/part-<part> when the job ends
    jobs/<id>/s<step>/reduce-done/<part>.json       the reduce task's commit record
    jobs/<id>/failed.json               why the job failed: task, kind, message, traceback
    jobs/<id>/events/<name>.json        invocation payloads too big to send inline
    jobs/<id>/summary.json              the final summary (also written as _SUCCESS)
"""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from .storage.base import Store


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def spec_key(job_id: str) -> str:
    return f"jobs/{job_id}/job.json"


def code_key(job_id: str) -> str:
    return f"jobs/{job_id}/job.pkl"


def summary_key(job_id: str) -> str:
    return f"jobs/{job_id}/summary.json"


def event_key(job_id: str, name: str) -> str:
    return f"jobs/{job_id}/events/{name}.json"


def md5_prefix(job_id: str, step: int, phase: str, task: int) -> str:
    """MARLA's scheme: a short md5 hex prefix that spreads a job's intermediate keys evenly over
    the key space, so S3 can split them across partitions (each serves ~3500 PUT/s and 5500
    GET/s); stable per task, so every attempt of a task lands in the same place."""
    return hashlib.md5(f"{job_id}/{step}/{phase}/{task}".encode()).hexdigest()[:4] + "-"


def map_data_key(job_id: str, step: int, task: int, attempt: str, md5: bool = False) -> str:
    tag = md5_prefix(job_id, step, "map", task) if md5 else ""
    return f"jobs/{job_id}/s{step}/map/{tag}{task:05d}-{attempt}.bin"


def commit_prefix(job_id: str, step: int, phase: str) -> str:
    return f"jobs/{job_id}/s{step}/{phase}-done/"


def commit_key(job_id: str, step: int, phase: str, task: int) -> str:
    return f"{commit_prefix(job_id, step, phase)}{task:05d}.json"


def step_output_key(job_id: str, step: int, part: int, attempt: str, md5: bool = False) -> str:
    tag = md5_prefix(job_id, step, "out", part) if md5 else ""
    return f"jobs/{job_id}/s{step}/out/{tag}{part:05d}-{attempt}.bin"


def part_key(job_id: str, step: int, part: int, attempt: str) -> str:
    return f"jobs/{job_id}/s{step}/parts/{part:05d}-{attempt}.txt"


def bad_records_key(job_id: str, step: int, task: int, attempt: str) -> str:
    return f"jobs/{job_id}/s{step}/bad/{task:05d}-{attempt}.jsonl"


def failure_key(job_id: str) -> str:
    return f"jobs/{job_id}/failed.json"


#: The output's record of skipped input records (JSON lines: url, offset, error, record).
BAD_RECORDS = "_bad_records"
SUCCESS = "_SUCCESS"


def step_prefix(job_id: str, step: int) -> str:
    return f"jobs/{job_id}/s{step}/"


def part_name(part: int) -> str:
    return f"part-{part:05d}"


def read_json(store: Store, key: str) -> Any:
    return json.loads(store.get(key))


def write_json(store: Store, key: str, obj: Any) -> None:
    store.put(key, json.dumps(obj, separators=(",", ":"), sort_keys=True).encode())


#: Map output at most this size travels inside the commit record, not as an object of its own:
#: a tiny task then creates one object instead of two, and its reducers read no object for it.
INLINE_SHUFFLE_BYTES = 2048


def shuffle_source(commit: dict[str, Any], part: int) -> list[Any]:
    """Where reducer ``part`` finds its segment of a map commit: ``[data_key, offset, length]``,
    or ``[None, 0, length, base64]`` for output carried inline."""
    offset, length = commit["segments"][part]
    if commit.get("data_key") is None:
        data = base64.b64decode(commit["inline"])[offset:offset + length]
        return [None, 0, length, base64.b64encode(data).decode()]
    return [commit["data_key"], offset, length]


def commit_once(store: Store, key: str, record: dict[str, Any]) -> dict[str, Any]:
    """Write a task's commit record unless an attempt already committed; return the winner.

    A task counts as done when its commit record exists, and readers use only the attempt it
    names, so a retried or duplicated attempt that loses here changes nothing downstream. The
    record is created only if absent (atomically where the store can), then read back: after a
    connection reset the repeated create may find the record its own first try wrote.
    """
    data = json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
    if store.put_if_absent(key, data):
        return record
    return read_json(store, key)


def is_split(commit: dict[str, Any]) -> bool:
    """A commit record that says the task was re-split into sub-tasks (after running out of
    memory); readers then use the sub-tasks' commits, named in ``split_into``, instead."""
    return "split_into" in commit


def publish(work: Store, out: Store, final_commits: list[dict[str, Any]]) -> None:
    """Copy each committed final-reduce attempt's output to ``part-NNNNN`` in the output.

    Only the attempt named by a commit record is ever copied, so the output holds exactly one
    complete part per partition; copying again (a retried finalize) writes the same bytes.
    """
    from .storage.base import copy_object
    for c in final_commits:
        copy_object(work, c["output_key"], out, part_name(c["task"]))



# -- coordination state (see smr/jobstate.py) -------------------------------------------------
#
#   index/<id>.json                                 one small record per job, for `smr jobs`
#   jobs/<id>/plan.json                             map tasks' splits, reducers per step, start
#   jobs/<id>/failed.json                           why the job failed (absent while it can go on)
#   jobs/<id>/rounds/<round>/launched               create-once: the round's tasks were launched
#   jobs/<id>/rounds/<round>/<task>-a<n>            create-once: attempt n of a task was launched
#   jobs/<id>/rounds/finalize                       create-once: one process finalizes
#   jobs/<id>/s<step>/<phase>-run/<task>-<attempt>.json     an attempt started (for status)
#   jobs/<id>/s<step>/<phase>-failed/<task>-<attempt>.json  an attempt failed, and why
#   jobs/<id>/s<step>/tree-done/<part>-<round>-<index>.json a tree-reduce task's commit record
#
# Task names are zero-padded and compared whole, never as substrings, so task 1 is never
# mistaken for task 10.

def index_key(job_id: str) -> str:
    return f"index/{job_id}.json"


def plan_key(job_id: str) -> str:
    return f"jobs/{job_id}/plan.json"


def marker_key(job_id: str, round_name: str, name: str = "launched") -> str:
    return f"jobs/{job_id}/rounds/{round_name}/{name}"


def finalize_marker_key(job_id: str) -> str:
    return f"jobs/{job_id}/rounds/finalize"


def attempt_prefix(job_id: str, step: int, phase: str, kind: str) -> str:
    """``kind`` is ``run`` or ``failed``."""
    return f"jobs/{job_id}/s{step}/{phase}-{kind}/"


def attempt_key(job_id: str, step: int, phase: str, kind: str, task_name: str,
                attempt: str) -> str:
    return f"{attempt_prefix(job_id, step, phase, kind)}{task_name}-{attempt}.json"


def tree_name(part: int, round_: int, index: int) -> str:
    return f"{part:05d}-{round_:03d}-{index:05d}"


def tree_data_key(job_id: str, step: int, name: str, attempt: str) -> str:
    # Under out/, so the cleanup of a finished job removes it with the other step outputs.
    return f"jobs/{job_id}/s{step}/out/tree-{name}-{attempt}.bin"


def error_prefix(job_id: str, step: int, phase: str) -> str:
    return f"jobs/{job_id}/s{step}/{phase}-errors/"


def error_key(job_id: str, step: int, phase: str, task: int, attempt: str) -> str:
    """Where a failing attempt leaves its error when nobody waits for its result (Event mode)."""
    return f"{error_prefix(job_id, step, phase)}{task:05d}-{attempt}.json"
