"""Where a job keeps its state in the work store, and the commit protocol.

Everything a job needs lives under ``jobs/<job_id>/`` in the work store, so any process can
rebuild the job's state from the store alone:

    jobs/<id>/job.json                  the spec (settings, steps, inputs, output)
    jobs/<id>/job.pkl                   the job object (cloudpickle)
    jobs/<id>/s<step>/map/<task>-<attempt>.bin      one map attempt's shuffle output
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


def map_data_key(job_id: str, step: int, task: int, attempt: str) -> str:
    return f"jobs/{job_id}/s{step}/map/{task:05d}-{attempt}.bin"


def commit_prefix(job_id: str, step: int, phase: str) -> str:
    return f"jobs/{job_id}/s{step}/{phase}-done/"


def commit_key(job_id: str, step: int, phase: str, task: int) -> str:
    return f"{commit_prefix(job_id, step, phase)}{task:05d}.json"


def step_output_key(job_id: str, step: int, part: int, attempt: str) -> str:
    return f"jobs/{job_id}/s{step}/out/{part:05d}-{attempt}.bin"


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
