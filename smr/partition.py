"""Partitioners: which reducer gets a key.

The default is a stable hash (smr.shuffle.hash_partition). ``PARTITIONER = "range"`` on a job
asks for range partitioning, as in Hadoop's TeraSort: before the first map phase the driver
samples the input, runs the job's map over the sample, and picks ``R - 1`` boundary keys at even
quantiles of the sampled keys. Reducer ``i`` then gets the keys between boundary ``i - 1``
(inclusive) and boundary ``i`` (exclusive), so part files sorted within themselves are also sorted
across each other: the output is globally sorted. A job may also override
``partitioner(self, key, n)`` to place keys itself.

Boundaries travel in the task event as base64 msgpack, so every key type keeps its exact value.
"""
from __future__ import annotations

import base64
import bisect
import logging
from typing import Any, Callable, Iterable

from .shuffle import freeze, hash_partition, order_key, packb, unpackb

log = logging.getLogger(__name__)

PARTITIONERS = ("hash", "range")
#: Input splits the driver samples for a range partitioner, at most.
SAMPLE_SPLITS = 64
#: Bytes read from the start of each sampled split.
SAMPLE_BYTES = 256 * 1024
#: Keys kept from the sample, at most (evenly thinned past this).
SAMPLE_KEYS = 200_000


def encode_boundaries(keys: list[Any]) -> str:
    return base64.b64encode(packb(keys)).decode("ascii")


def decode_boundaries(text: str) -> list[Any]:
    return [freeze(k) for k in unpackb(base64.b64decode(text))]


def choose_boundaries(keys: Iterable[Any], partitions: int) -> list[Any]:
    """``partitions - 1`` keys at even quantiles of the sample (fewer when keys repeat)."""
    ordered = sorted((freeze(k) for k in keys), key=order_key)
    if partitions <= 1 or not ordered:
        return []
    bounds: list[Any] = []
    for i in range(1, partitions):
        k = ordered[min(len(ordered) - 1, (i * len(ordered)) // partitions)]
        if not bounds or order_key(k) > order_key(bounds[-1]):
            bounds.append(k)
    return bounds


def range_partitioner(boundaries: list[Any]) -> Callable[[Any, int], int]:
    """Partition ``i`` holds keys k with boundaries[i-1] <= k < boundaries[i]."""
    ranks = [order_key(b) for b in boundaries]
    kinds = {type(b) for b in boundaries}
    # Keys of the boundaries' one native type compare natively: the same order, far faster.
    native = kinds.pop() if len(kinds) == 1 and kinds <= {str, bytes, int} else None

    def partition(key: Any, n: int) -> int:
        if type(key) is native:
            return min(n - 1, bisect.bisect_right(boundaries, key))
        return min(n - 1, bisect.bisect_right(ranks, order_key(key)))
    return partition


def job_partitioner_kind(job: Any) -> str:
    kind = getattr(job, "PARTITIONER", "hash")
    if kind not in PARTITIONERS:
        raise ValueError(f"{type(job).__name__}.PARTITIONER is {kind!r}; use 'hash' or 'range'")
    return kind


def overrides_partitioner(job: Any) -> bool:
    from .api import Job
    return getattr(type(job), "partitioner", None) is not getattr(Job, "partitioner", None)


def make_partitioner(job: Any, event: dict[str, Any]) -> Callable[[Any, int], int]:
    """The partitioner a map task uses, from its job and its event."""
    if overrides_partitioner(job):
        user = job.partitioner
        name = f"{type(job).__name__}.partitioner"

        def checked(key: Any, n: int) -> int:
            p = user(key, n)
            if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p < n:
                raise ValueError(f"{name} returned {p!r} for key {key!r:.60}; "
                                 f"expected an int in [0, {n})")
            return p
        return checked
    bounds = event.get("boundaries")
    if bounds is not None:
        return range_partitioner(decode_boundaries(bounds))
    return hash_partition
