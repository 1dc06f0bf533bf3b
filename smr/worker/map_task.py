"""A map task: read its splits, map, combine, partition, write one shuffle object, commit."""
from __future__ import annotations

import base64
import io
import logging
from operator import length_hint
from typing import Any, Callable, Iterable, Iterator

from .. import layout
from ..api import is_columnar
from ..formats import Block, RecordError, iter_blocks, record_parser
from ..shuffle import CHECK_EVERY, MapOutput, SerializationError, freeze, iter_frames
from ..partition import make_partitioner
from ..spool import Spool
from .task import TaskContext, describe_bad_output

log = logging.getLogger(__name__)


def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    with TaskContext(event, context, "map") as tc:
        if is_columnar(tc.job):
            from . import columnar_task  # imports pyarrow, which record jobs never need
            return columnar_task.run_map(tc, event)
        step = tc.step
        commit_key = layout.commit_key(tc.job_id, tc.step_index, "map", tc.task)
        done = tc.work.head(commit_key)
        if done is not None:  # a duplicate invocation of a committed task: nothing to do
            return tc.finish(layout.read_json(tc.work, commit_key))
        out = MapOutput(event["partitions"], step.combine, tc.buffer_bytes(),
                        partitioner=make_partitioner(tc.job, event))
        try:
            mapper = _wrap_mapper(step.map, tc.job.INPUT_FORMAT if tc.step_index == 0 else None)
            tc.job.setup()
            if tc.step_index == 0:
                for split in event["splits"]:
                    _map_split(tc, split, mapper, out)
            else:
                for key in event["sources"]:
                    _map_pairs(tc, key, mapper, out)
            tc.job.teardown()
            with Spool(tc.buffer_bytes()) as data:
                try:
                    segments = out.finish(data)
                except SerializationError as e:
                    name = getattr(step.map, "__qualname__", "map")
                    raise SerializationError(f"{name} yielded a pair that cannot be shuffled: "
                                             f"{e}") from e
                size = data.size
                inline = data.small_value(layout.INLINE_SHUFFLE_BYTES)
                if inline is not None:
                    # Small enough to travel in the commit record: one object fewer per task.
                    data_key = None
                else:
                    data_key = layout.map_data_key(tc.job_id, tc.step_index, tc.task, tc.attempt,
                                                   md5=bool(tc.spec.get("md5_prefixes")))
                    data.upload(tc.work, data_key)
        finally:
            out.close()
        tc.metrics["records_out"] = out.records_out
        tc.metrics["bytes_shuffled"] = size
        tc.metrics["spills"] = out.spills
        bad_key = tc.upload_bad_records()
        record = tc.commit_record(data_key=data_key, segments=segments, bad_key=bad_key)
        if inline is not None:
            record["inline"] = base64.b64encode(inline).decode()
        winner = layout.commit_once(tc.work, commit_key, record)
        if winner.get("attempt") != tc.attempt:
            # Another attempt committed first; ours is garbage.
            if data_key is not None:
                tc.work.delete(data_key)
            if bad_key:
                tc.work.delete(bad_key)
        return tc.finish(winner)


def _wrap_mapper(map_fn: Callable | None, input_format: str | None) -> Callable[[Any], Iterable]:
    if map_fn is None:
        return _identity_map
    parse = record_parser(input_format) if input_format else None
    if parse is None:
        return map_fn

    def parse_then_map(line: str) -> Iterable:
        if not line.strip():
            return ()
        return map_fn(parse(line))
    return parse_then_map


def _identity_map(record: Any) -> Iterator[tuple[Any, Any]]:
    try:
        key, value = record
    except (TypeError, ValueError):
        raise TypeError(f"a step without map needs (key, value) records, got {record!r:.80}") from None
    yield key, value


def _map_split(tc: TaskContext, split: list, mapper: Callable, out: MapOutput) -> None:
    root, key, start, end = split
    store = tc.store(root)
    skip = tc.bad_records == "skip"
    on_bad = tc.skip_bad if skip else None
    tc.job.input_url = store.child_url(key)
    for block in iter_blocks(store, key, start, end, on_bad=on_bad):
        tc.metrics["bytes_read"] += len(block.raw)
        tc.metrics["records_in"] += len(block.lines)
        _map_block(tc, store.child_url(key), block, mapper, out, skip)
        out.check_memory()


def _map_block(tc: TaskContext, url: str, block: Block, mapper: Callable, out: MapOutput,
               skip: bool) -> None:
    lines = block.lines
    it = iter(lines)
    while True:
        try:
            _map_records(it, mapper, out)
            return
        except Exception as e:  # a record's map failed: say which record, then fail or skip
            index = len(lines) - length_hint(it) - 1
            err = RecordError(url, block.line_offset(index), describe_bad_output(mapper, lines[index], e))
            if not skip:
                raise err from e
            tc.skip_bad(err, lines[index].encode())


def _map_records(records: Iterator, mapper: Callable, out: MapOutput) -> None:
    # The hot loop: every input record passes through here, so it avoids attribute lookups
    # and function calls beyond the user's own map.
    if out.summing:
        _sum_records(records, mapper, out)
        return
    buffer = out.buffer
    n = 0
    for record in records:
        for k, v in mapper(record):
            try:
                buffer[k].append(v)
            except TypeError:
                buffer[freeze(k)].append(v)
        n += 1
        if n >= CHECK_EVERY:
            n = 0
            out.check_memory()
            buffer = out.buffer


def _sum_records(records: Iterator, mapper: Callable, out: MapOutput) -> None:
    # The hot loop of COMBINE = "sum": one running sum per key instead of a list of values.
    buffer = out.buffer
    get = buffer.get
    n = 0
    for record in records:
        for k, v in mapper(record):
            try:
                buffer[k] = get(k, 0) + v
            except TypeError:
                out.add_to_sum(k, v)
        n += 1
        if n >= CHECK_EVERY:
            n = 0
            out.check_memory()
            buffer = out.buffer
            get = buffer.get


def _map_pairs(tc: TaskContext, key: str, mapper: Callable, out: MapOutput) -> None:
    """Map the (key, value) pairs a previous step's reducer wrote."""
    tc.job.input_url = tc.work.child_url(key)
    info = tc.work.head(key)
    size = info.size if info else 0
    tc.metrics["bytes_read"] += size
    stream = io.BufferedReader(tc.work.open_range(key, 0, None), buffer_size=1 << 20)
    for frame in iter_frames(stream):
        records = [tuple(pair) for pair in frame]
        tc.metrics["records_in"] += len(records)
        it = iter(records)
        try:
            _map_records(it, mapper, out)
        except Exception as e:
            index = len(records) - length_hint(it) - 1
            raise RecordError(tc.work.child_url(key), index,
                              describe_bad_output(mapper, records[index], e)) from e
