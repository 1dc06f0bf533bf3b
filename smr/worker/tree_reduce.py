"""One task of a tree reduction's intermediate level: merge a batch of inputs, reduce, re-emit.

Only for jobs whose reducer is associative and commutative (``ASSOCIATIVE = True``): the
reducer's output for a key is then a valid partial input for the next level, so levels can merge
batches of inputs until one ordinary reduce task writes the result. Inputs and output use the
shuffle's wire format (frames of ``[key, [values...]]`` entries), so a level reads map segments
and earlier levels' outputs alike.
"""
from __future__ import annotations

from typing import Any

import zstandard

from .. import layout
from ..shuffle import FRAME_ENTRIES, ZSTD_LEVEL, Grouper, packb
from ..spool import Spool
from .reduce_task import _reduce_groups, read_sources
from .task import TaskContext


def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with TaskContext(event, context, "tree") as tc:
        name = layout.tree_name(event["part"], event["round"], event["task"])
        commit_key = f"{layout.commit_prefix(tc.job_id, tc.step_index, 'tree')}{name}.json"
        if tc.work.head(commit_key) is not None:
            return layout.read_json(tc.work, commit_key)
        grouper = Grouper(tc.buffer_bytes())
        try:
            read_sources(tc, event["sources"], grouper)
            tc.job.setup()
            data_key = layout.tree_data_key(tc.job_id, tc.step_index, name, tc.attempt)
            with Spool(tc.buffer_bytes()) as out:
                n = _write_entries(out, _reduce_groups(tc, grouper.groups()))
                out.upload(tc.work, data_key)
                size = out.size
            tc.job.teardown()
            tc.metrics["records_out"] = n
            tc.metrics["bytes_written"] = size
        finally:
            grouper.close()
        record = tc.commit_record(data_key=data_key, size=size, part=event["part"],
                                  round=event["round"])
        winner = layout.commit_once(tc.work, commit_key, record)
        if winner.get("attempt") != tc.attempt:
            tc.work.delete(data_key)
        return winner


def _write_entries(out: Spool, pairs: Any) -> int:
    """Reduced pairs as shuffle entries; the reducer yields keys in the order it got them."""
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    n = 0
    batch: list = []
    last_key: Any = _NOTHING
    for k, v in pairs:
        n += 1
        if batch and last_key == k and type(last_key) is type(k):
            batch[-1][1].append(v)
            continue
        if len(batch) >= FRAME_ENTRIES:
            out.write(cctx.compress(packb(batch)))
            batch = []
        batch.append([k, [v]])
        last_key = k
    if batch:
        out.write(cctx.compress(packb(batch)))
    return n


_NOTHING = object()
