"""A reduce task: fetch its partition from every committed map output, group, reduce, write."""
from __future__ import annotations

import base64
import io
import json
from typing import Any, Iterator

import zstandard

from .. import layout
from ..api import is_columnar
from ..shuffle import FRAME_ENTRIES, ZSTD_LEVEL, Grouper, iter_frames, iter_pairs, packb
from ..spool import Spool
from ..storage import join_url
from .task import TaskContext


def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with TaskContext(event, context, "reduce") as tc:
        if is_columnar(tc.job):
            from . import columnar_task  # imports pyarrow, which record jobs never need
            return columnar_task.run_reduce(tc, event)
        commit_key = layout.commit_key(tc.job_id, tc.step_index, "reduce", tc.task)
        if tc.work.head(commit_key) is not None:
            return tc.finish(layout.read_json(tc.work, commit_key))
        grouper = Grouper(tc.buffer_bytes())
        try:
            read_sources(tc, event["sources"], grouper)
            tc.job.setup()
            pairs = _reduce_groups(tc, grouper.groups())
            with Spool(tc.buffer_bytes()) as out:
                if tc.final_step:
                    # Written under the attempt's own name in the work store, like every other
                    # task output; the driver publishes the committed attempt's bytes as
                    # part-NNNNN, so a losing, duplicate or late attempt never touches the output.
                    n = _write_text(out, pairs)
                    out_key = layout.part_key(tc.job_id, tc.step_index, tc.task, tc.attempt)
                    out.upload(tc.work, out_key)
                    out_url = join_url(tc.spec["output"], layout.part_name(tc.task))
                else:
                    n = _write_frames(out, pairs)
                    out_key = layout.step_output_key(tc.job_id, tc.step_index, tc.task, tc.attempt,
                                                     md5=bool(tc.spec.get("md5_prefixes")))
                    out.upload(tc.work, out_key)
                    out_url = None
                tc.metrics["bytes_written"] = out.size
            tc.job.teardown()
            tc.metrics["records_out"] = n
        finally:
            grouper.close()
        record = tc.commit_record(output_key=out_key, output_url=out_url)
        winner = layout.commit_once(tc.work, commit_key, record)
        if winner.get("attempt") != tc.attempt:
            tc.work.delete(out_key)  # another attempt committed first; ours is garbage
        return tc.finish(winner)


def read_sources(tc: TaskContext, sources: list, grouper: Grouper) -> None:
    """Group every segment of shuffle data (see ``layout.shuffle_source``; one ranged read each,
    none for segments carried in the event)."""
    for source in sources:
        key, offset, length = source[:3]
        if length == 0:
            continue
        tc.metrics["bytes_read"] += length
        if key is None:
            raw: Any = io.BytesIO(base64.b64decode(source[3]))
        else:
            raw = tc.work.open_range(key, offset, offset + length)
        for frame in iter_frames(io.BufferedReader(raw, buffer_size=1 << 20)):
            tc.metrics["records_in"] += sum(len(e[1]) for e in frame)
            grouper.add_entries(frame)
    tc.metrics["spills"] = len(grouper.runs)


def _reduce_groups(tc: TaskContext, groups: Iterator[tuple[Any, list]]) -> Iterator[tuple[Any, Any]]:
    reduce_fn = tc.step.reduce
    if reduce_fn is None:
        yield from iter_pairs(groups)
        return
    name = getattr(reduce_fn, "__qualname__", "reduce")
    for key, values in groups:
        result = reduce_fn(key, iter(values))
        if result is None:
            raise TypeError(f"{name} must yield (key, value) pairs (be a generator), "
                            f"but returned None for key {key!r:.80}")
        for item in result:
            if not (isinstance(item, tuple) and len(item) == 2):
                if not (isinstance(item, list) and len(item) == 2):
                    raise TypeError(f"{name} yielded {item!r:.80} for key {key!r:.80}; "
                                    "expected a (key, value) pair")
            yield item[0], item[1]


def _write_text(out: Spool, pairs: Iterator[tuple[Any, Any]]) -> int:
    """mrjob's JSONProtocol: json(key) TAB json(value), one record a line."""
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    n = 0
    lines = []
    for k, v in pairs:
        lines.append(f"{dumps(k)}\t{dumps(v)}\n")
        if len(lines) >= 4096:
            out.write("".join(lines).encode())
            n += len(lines)
            lines = []
    out.write("".join(lines).encode())
    return n + len(lines)


def _write_frames(out: Spool, pairs: Iterator[tuple[Any, Any]]) -> int:
    """Binary [key, value] frames for the next step (keeps tuples, bytes and ints exact)."""
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    n = 0
    batch: list = []
    for k, v in pairs:
        batch.append([k, v])
        if len(batch) >= FRAME_ENTRIES:
            out.write(cctx.compress(packb(batch)))
            n += len(batch)
            batch = []
    if batch:
        out.write(cctx.compress(packb(batch)))
        n += len(batch)
    return n
