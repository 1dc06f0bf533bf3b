"""Where a job keeps its state in the work store, and the commit protocol.

Everything a job needs lives under ``jobs/<job_id>/`` in the work store, so any process can
rebuild the job's state from the store alone:

    jobs/<id>/job.json                  the spec (settings, steps, inputs, output)
    jobs/<id>/job.pkl                   the job object (cloudpickle)
    jobs/<id>/s<step>/map/<task>-<attempt>.bin      one map attempt's shuffle output
                                        (with md5_prefixes: map/<md5[:4]>-<task>-<attempt>.bin)
    jobs/<id>/s<step>/map-done/<task>.json          the map task's commit record
    jobs/<id>/s<step>/out/<part>-<attempt>.bin      a non-final reduce attempt's output
    jobs/<id>/s<step>/reduce-done/<part>.json       the reduce task's commit record
    jobs/<id>/events/<name>.json        invocation payloads too big to send inline
    jobs/<id>/summary.json              the final summary (also written as _SUCCESS)
"""
from __future__ import annotations

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
    names, so a retried or duplicated attempt that loses here changes nothing downstream.
    """
    if store.head(key) is not None:
        try:
            return read_json(store, key)
        except Exception:  # a torn read is impossible with atomic puts; be safe anyway
            pass
    write_json(store, key, record)
    return record


def error_prefix(job_id: str, step: int, phase: str) -> str:
    return f"jobs/{job_id}/s{step}/{phase}-errors/"


def error_key(job_id: str, step: int, phase: str, task: int, attempt: str) -> str:
    """Where a failing attempt leaves its error when nobody waits for its result (Event mode)."""
    return f"{error_prefix(job_id, step, phase)}{task:05d}-{attempt}.json"
