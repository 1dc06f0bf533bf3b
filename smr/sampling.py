"""Sampling the input for a range partitioner (driver side, before the first map phase).

The driver reads the first ``SAMPLE_BYTES`` of up to ``SAMPLE_SPLITS`` splits spread over the
input, runs a private copy of the job's first map over them, and picks boundary keys at even
quantiles of the keys that came out (Hadoop's TeraSort InputSampler does the same).
"""
from __future__ import annotations

import logging
import pickle
from typing import Any, Callable

from .api import Job, is_columnar
from .formats import read_blocks, record_parser
from .jobload import pickle_job
from .partition import SAMPLE_BYTES, SAMPLE_KEYS, SAMPLE_SPLITS, choose_boundaries
from .storage import Store

log = logging.getLogger(__name__)


def _spread(splits: list[list[Any]], k: int) -> list[list[Any]]:
    if len(splits) <= k:
        return splits
    return [splits[(i * len(splits)) // k] for i in range(k)]


def sample_keys(job: Job, splits: list[list[Any]], open_store: Callable[[str], Store]) -> list[Any]:
    """Map keys from the start of a spread of splits."""
    job = pickle.loads(pickle_job(job))  # a private copy: setup() and counters stay here
    job.setup()
    keys: list[Any] = []
    for root, key, start, end in _spread(splits, SAMPLE_SPLITS):
        store = open_store(root)
        if is_columnar(job):
            keys.extend(_columnar_keys(job, store, key, start, end))
        else:
            keys.extend(_record_keys(job, store, key, start, min(end, start + SAMPLE_BYTES)))
    if len(keys) > SAMPLE_KEYS:
        keys = keys[::len(keys) // SAMPLE_KEYS + 1]
    return keys


def _record_keys(job: Job, store: Store, key: str, start: int, end: int) -> list[Any]:
    step = job.steps()[0]
    if step.map is None:
        return []
    parse = record_parser(job.INPUT_FORMAT)
    out = []
    for _, raw in read_blocks(store, key, start, end, block=SAMPLE_BYTES):
        for line in raw.decode("utf-8", "replace").split("\n"):
            line = line[:-1] if line.endswith("\r") else line
            if not line.strip() and (parse is not None or not line):
                continue
            try:
                for k, _ in step.map(parse(line) if parse else line):
                    out.append(k)
            except Exception:  # a bad record: the map task itself reports it, with its offset
                continue
    return out


def _columnar_keys(job: Job, store: Store, key: str, start: int, end: int) -> list[Any]:
    from .columnar import Spec, iter_batches
    spec = Spec.of(job)
    if job.INPUT_FORMAT != "parquet":
        end = min(end, start + SAMPLE_BYTES)
    out: list[Any] = []
    for _, batch in iter_batches(job, store, key, start, end, on_bad=lambda *_: None):
        out.extend(spec.check_output(job.map_batches(batch))[spec.key].to_pylist())
        if len(out) > SAMPLE_KEYS:
            break
    return out


def sample_boundaries(job: Job, splits: list[list[Any]], open_store: Callable[[str], Store],
                      partitions: int) -> list[Any]:
    keys = sample_keys(job, splits, open_store)
    bounds = choose_boundaries(keys, partitions)
    log.info("range partitioner: %d sampled keys, %d boundaries", len(keys), len(bounds))
    return bounds
