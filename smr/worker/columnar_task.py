"""Map and reduce tasks of columnar jobs (map_batches): Arrow in, Arrow IPC through the shuffle.

Same contract as the record tasks: one shuffle object per map task with one segment per reducer,
commit records under attempt ids, part files of ``json(key) TAB json(value)`` sorted by key.
"""
from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from .. import layout
from ..columnar import (FLUSH_ROWS, ColumnarError, Spec, format_lines, hash_partitions, ipc_bytes,
                        iter_batches, range_partitions, read_ipc_segment, sort_by_key,
                        split_by_partition)
from ..partition import decode_boundaries, overrides_partitioner
from ..spool import Spool
from ..storage import join_url
from .task import TaskContext

log = logging.getLogger(__name__)


class _PartitionWriter:
    """Buffers a map task's output tables and writes them, partitioned, as IPC streams."""

    def __init__(self, tc: TaskContext, spec: Spec, event: dict[str, Any]) -> None:
        self.spec = spec
        self.n = event["partitions"]
        self.job = tc.job
        bounds = event.get("boundaries")
        self.boundaries = decode_boundaries(bounds) if bounds is not None else None
        self.pending: list[pa.Table] = []
        self.rows = 0
        budget = tc.buffer_bytes()
        self.spools = [Spool(max(1 << 16, budget // (2 * self.n))) for _ in range(self.n)]
        self.records_out = 0
        self.flushes = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.pending.append(table)
        self.rows += table.num_rows
        if self.rows >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        table = pa.concat_tables(self.pending, promote_options="default")
        self.pending, self.rows = [], 0
        if self.spec.aggregate is not None:
            table = self.spec.partial(table)
        keys = table[self.spec.key]
        if overrides_partitioner(self.job):
            parts = _user_partitions(self.job, keys, self.n)
        elif self.boundaries is not None:
            parts = range_partitions(keys, self.boundaries, self.n)
        else:
            parts = hash_partitions(keys, self.n)
        for p, piece in enumerate(split_by_partition(table, parts, self.n)):
            if piece is not None:
                self.spools[p].write(ipc_bytes(piece))
        self.records_out += table.num_rows
        self.flushes += 1

    def finish(self, out: Spool) -> list[list[int]]:
        self.flush()
        segments = []
        for spool in self.spools:
            start = out.size
            spool.copy_to(out)
            segments.append([start, out.size - start])
        return segments

    def close(self) -> None:
        for s in self.spools:
            s.close()


def _user_partitions(job: Any, keys: pa.ChunkedArray, n: int) -> Any:
    import numpy as np
    out = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys.to_pylist()):
        p = job.partitioner(k, n)
        if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p < n:
            raise ColumnarError(f"{type(job).__name__}.partitioner returned {p!r} for key "
                                f"{k!r:.60}; expected an int in [0, {n})")
        out[i] = p
    return out


def run_map(tc: TaskContext, event: dict[str, Any]) -> dict[str, Any]:
    commit_key = layout.commit_key(tc.job_id, tc.step_index, "map", tc.task)
    if tc.work.head(commit_key) is not None:
        return tc.finish(layout.read_json(tc.work, commit_key))
    spec = Spec.of(tc.job)
    writer = _PartitionWriter(tc, spec, event)
    on_bad = tc.skip_bad if tc.bad_records == "skip" else None
    try:
        tc.job.setup()
        for root, key, start, end in event["splits"]:
            store = tc.store(root)
            tc.job.input_url = store.child_url(key)
            for nbytes, batch in iter_batches(tc.job, store, key, start, end, on_bad):
                tc.metrics["bytes_read"] += nbytes
                tc.metrics["records_in"] += batch.num_rows
                writer.add(spec.check_output(tc.job.map_batches(batch)))
        tc.job.teardown()
        with Spool(tc.buffer_bytes()) as data:
            segments = writer.finish(data)
            size = data.size
            data_key = layout.map_data_key(tc.job_id, tc.step_index, tc.task, tc.attempt,
                                           md5=bool(tc.spec.get("md5_prefixes")))
            data.upload(tc.work, data_key)
    finally:
        writer.close()
    tc.metrics["records_out"] = writer.records_out
    tc.metrics["bytes_shuffled"] = size
    record = tc.commit_record(data_key=data_key, segments=segments)
    winner = layout.commit_once(tc.work, commit_key, record)
    if winner.get("attempt") != tc.attempt:
        tc.work.delete(data_key)
    return tc.finish(winner)


def run_reduce(tc: TaskContext, event: dict[str, Any]) -> dict[str, Any]:
    commit_key = layout.commit_key(tc.job_id, tc.step_index, "reduce", tc.task)
    if tc.work.head(commit_key) is not None:
        return tc.finish(layout.read_json(tc.work, commit_key))
    spec = Spec.of(tc.job)
    tables: list[pa.Table] = []
    rows = 0
    for key, offset, length in event["sources"]:
        if length == 0:
            continue
        tc.metrics["bytes_read"] += length
        data = tc.work.get_range(key, offset, offset + length)
        for t in read_ipc_segment(data):
            tc.metrics["records_in"] += t.num_rows
            tables.append(t)
            rows += t.num_rows
            if spec.aggregate is not None and rows >= FLUSH_ROWS and len(tables) > 1:
                # Merge partials as they come, so memory holds about one partition's groups.
                tables = [spec.merge(pa.concat_tables(tables, promote_options="default"))]
                rows = tables[0].num_rows
    tc.job.setup()
    if tables:
        table = pa.concat_tables(tables, promote_options="default")
        del tables
        if spec.aggregate is not None:
            table = spec.final(spec.merge(table))
        else:
            table = sort_by_key(table, spec.key)
    else:
        table = None
    # Under the attempt's own name in the work store; the driver publishes the committed
    # attempt as part-NNNNN (see reduce_task).
    out_key = layout.part_key(tc.job_id, tc.step_index, tc.task, tc.attempt)
    with Spool(tc.buffer_bytes()) as out:
        n = 0
        if table is not None:
            step = 1 << 20  # format in slices: bounds the text held at once
            for i in range(0, table.num_rows, step):
                out.write(format_lines(table.slice(i, step), spec.key))
            n = table.num_rows
        out.upload(tc.work, out_key)
        tc.metrics["bytes_written"] = out.size
    tc.job.teardown()
    tc.metrics["records_out"] = n
    record = tc.commit_record(output_key=out_key,
                              output_url=join_url(tc.spec["output"], layout.part_name(tc.task)))
    winner = layout.commit_once(tc.work, commit_key, record)
    if winner.get("attempt") != tc.attempt:
        tc.work.delete(out_key)  # another attempt committed first; ours is garbage
    return tc.finish(winner)
