"""The shuffle: partitioning, serialization, map-side buffering, reduce-side grouping.

Wire format. A map task writes one object holding R segments (one per reducer) back to back; the
commit record carries each segment's offset and length, so a reducer fetches exactly its bytes
with one ranged read per map task. A segment is a sequence of zstd frames; each frame is one
msgpack array of ``[key, [values...]]`` entries, already grouped (and combined) by key.

Keys are grouped by Python equality; lists in keys are frozen to tuples so they can be grouped.
Partitions come from a stable hash (CRC-32) of the msgpack encoding of the key, never from
Python's per-process salted ``hash``.
"""
from __future__ import annotations

import functools
import heapq
import os
import tempfile
import threading
import zlib
from collections import defaultdict
from operator import itemgetter
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import msgpack
import psutil
import zstandard

from .api import GroupFn
from .spool import Spool, function_tmp

#: Entries per frame: bounds the memory a reader needs to unpack one frame.
FRAME_ENTRIES = 16384
ZSTD_LEVEL = 1
#: Memory is checked every this many input records.
CHECK_EVERY = 2048
#: Rough resident bytes of one grouped entry and of one value in it (CPython objects).
ENTRY_COST = 160
VALUE_COST = 40


class SerializationError(TypeError):
    pass


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        raise SerializationError(f"cannot serialize a {type(obj).__name__} ({obj!r:.60}); "
                                 "use a list or tuple")
    raise SerializationError(f"cannot serialize a value of type {type(obj).__name__} "
                             f"({obj!r:.60}); keys and values must be JSON-like "
                             "(None, bool, int, float, str, bytes, list, tuple, dict)")


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def freeze(key: Any) -> Any:
    """A hashable stand-in for a key: lists become tuples (JSON output is unchanged)."""
    if isinstance(key, (list, tuple)):
        return tuple(freeze(k) for k in key)
    if isinstance(key, dict):
        raise SerializationError(f"a dict cannot be a key ({key!r:.60}); use a list of pairs")
    try:
        hash(key)
    except TypeError:
        raise SerializationError(f"cannot serialize a {type(key).__name__} key ({key!r:.60}); "
                                 "keys must be JSON-like (str, int, float, bool, None, bytes, "
                                 "or lists/tuples of these)") from None
    return key


_packers = threading.local()


def hash_partition(key: Any, partitions: int) -> int:
    # One msgpack Packer per thread: making one per call (what msgpack.packb does) cost more
    # than the rest of partitioning a key. The bytes, and so the partition, are packb's.
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(default=_default, use_bin_type=True)
    try:
        data = packer.pack(key)
    except BaseException:
        packer.reset()
        raise
    return zlib.crc32(data) % partitions


_RANKS = {type(None): 0, bool: 1, int: 2, float: 2, str: 3, bytes: 4}


def order_key(key: Any) -> tuple:
    """A total order over every key type: natural order within a type, types in a fixed rank."""
    rank = _RANKS.get(type(key))
    if rank is not None:
        return (rank, key)
    if isinstance(key, (tuple, list)):
        return (5, tuple(order_key(k) for k in key))
    return (6, repr(key))


_NATURAL = (str, bytes, int)


def sorted_keys(keys: Iterable[Any]) -> list[Any]:
    """Keys in order_key order; keys all of one of str, bytes or int sort natively (faster)."""
    keys = list(keys)
    if keys:
        t = type(keys[0])
        if t in _NATURAL and all(type(k) is t for k in keys):
            return sorted(keys)
    return sorted(keys, key=order_key)


@functools.lru_cache(maxsize=4)
def _process(pid: int) -> psutil.Process:
    return psutil.Process(pid)


def _this_process() -> psutil.Process:
    # Made once per process (keyed by pid, so never shared across a fork): a tiny task would
    # otherwise spend more on psutil's /proc reads than on its data.
    return _process(os.getpid())


class MemoryGauge:
    """Decides when buffered data must leave memory, by the process's resident size.

    Python rarely returns freed memory to the OS, so after a flush the threshold rises to the
    resident size then: new data first refills what the flush freed.
    """

    def __init__(self, budget_bytes: int) -> None:
        self._proc = _this_process()
        self.base = self.rss()
        self.limit = self.base + max(budget_bytes, 1)

    def rss(self) -> int:
        return self._proc.memory_info().rss

    def over(self) -> bool:
        return self.rss() > self.limit

    def flushed(self) -> None:
        self.limit = max(self.limit, self.rss() + (self.limit - self.base) // 8)


def iter_frames(stream: BinaryIO) -> Iterator[list]:
    """Each frame's entry list from a stream of concatenated zstd frames."""
    reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
    unpacker = msgpack.Unpacker(reader, raw=False, strict_map_key=False,
                                max_buffer_size=1 << 31)
    yield from unpacker


def write_frames(out: BinaryIO, entries: list, cctx: zstandard.ZstdCompressor) -> int:
    """Append entries as frames; returns bytes written."""
    n = 0
    for i in range(0, len(entries), FRAME_ENTRIES):
        data = cctx.compress(packb(entries[i:i + FRAME_ENTRIES]))
        out.write(data)
        n += len(data)
    return n


class MapOutput:
    """Buffers a map task's pairs grouped by key, combines them, and spills per partition.

    Spilled frames collect per partition in spools: in memory while small, on local disk past
    ``budget_bytes`` in all.
    """

    def __init__(self, partitions: int, combine: GroupFn | str | None, budget_bytes: int,
                 partitioner: Callable[[Any, int], int] = hash_partition):
        self.partitions = partitions
        # combine="sum": the buffer maps each key to the running sum of its values.
        self.summing = combine == "sum"
        self.combine: GroupFn | None = None if self.summing else combine  # type: ignore[assignment]
        self.partitioner = partitioner
        self.buffer: Any = self._empty_buffer()
        self.gauge = MemoryGauge(budget_bytes)
        self.cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self._spool_size = max(1 << 16, budget_bytes // (2 * partitions))
        self._files: dict[int, Spool] = {}
        self._combined = False
        self.spills = 0
        self.records_out = 0

    def _empty_buffer(self) -> Any:
        return {} if self.summing else defaultdict(list)

    def add(self, key: Any, value: Any) -> None:
        if self.summing:
            self.add_to_sum(key, value)
            return
        try:
            self.buffer[key].append(value)
        except TypeError:
            self.buffer[freeze(key)].append(value)

    def add_to_sum(self, key: Any, value: Any) -> None:
        """The careful path of a summing buffer: keys that need freezing, values that are not
        numbers (which get an error that says so)."""
        try:
            hash(key)
        except TypeError:
            key = freeze(key)
        try:
            self.buffer[key] = self.buffer.get(key, 0) + value
        except TypeError:
            raise TypeError(f"COMBINE = 'sum' adds up values, but key {key!r:.60} got "
                            f"{value!r:.60} ({type(value).__name__})") from None

    def check_memory(self) -> None:
        if not self.gauge.over():
            return
        if self.combine is not None and not self._combined:
            # Combining often shrinks the buffer enough to carry on without touching disk.
            self._apply_combiner()
            self._combined = True
            self.gauge.flushed()
            return
        self.spill()

    def _apply_combiner(self) -> None:
        combined: defaultdict[Any, list] = defaultdict(list)
        combine = self.combine
        assert combine is not None
        for key, values in self.buffer.items():
            if len(values) == 1:
                combined[key].append(values[0])
                continue
            for k, v in combine(key, iter(values)):
                try:
                    combined[k].append(v)
                except TypeError:
                    combined[freeze(k)].append(v)
        self.buffer = combined

    def spill(self) -> None:
        """Move the buffer out to the partition spools (memory pressure)."""
        if self.buffer:
            self._write_buffer()
            self.spills += 1
        self._combined = False
        self.gauge.flushed()

    def _write_buffer(self) -> None:
        if self.combine is not None:
            self._apply_combiner()
        by_part: list[list] = [[] for _ in range(self.partitions)]
        part = self.partitioner
        n = self.partitions
        if self.summing:
            for key, total in self.buffer.items():
                by_part[part(key, n) if n > 1 else 0].append([key, [total]])
            self.records_out += len(self.buffer)
        else:
            for key, values in self.buffer.items():
                by_part[part(key, n) if n > 1 else 0].append([key, values])
                self.records_out += len(values)
        self.buffer = self._empty_buffer()
        for p, entries in enumerate(by_part):
            if entries:
                f = self._files.get(p)
                if f is None:
                    f = self._files[p] = Spool(self._spool_size)
                write_frames(f, entries, self.cctx)

    def finish(self, out: Spool) -> list[list[int]]:
        """Write the task's output object to ``out``; returns [offset, length] per partition."""
        if self.buffer:
            self._write_buffer()
        segments = []
        for p in range(self.partitions):
            start = out.size
            f = self._files.pop(p, None)
            if f is not None:
                f.copy_to(out)
                f.close()
            segments.append([start, out.size - start])
        return segments

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}


class Grouper:
    """Groups a partition's entries by key within a memory budget.

    Past the budget, the buffer is sorted and spilled as a run to local disk; at the end the runs
    and what remains in memory are merged, so each key comes out once, in key order.
    """

    def __init__(self, budget_bytes: int) -> None:
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.buffer: dict[Any, list] = {}
        self.gauge = MemoryGauge(budget_bytes)
        self.cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.runs: list[str] = []
        self.budget = max(budget_bytes, 1)
        # Resident size alone misses growth into memory that a spill freed but Python kept, so
        # the grouper also keeps a rough count of what it holds and spills on either signal.
        self.estimate = 0
        #: The one natural type (str, bytes, int) of every spilled key; False once they mix.
        self.natural_type: Any = None

    def add_entries(self, entries: list) -> None:
        buf = self.buffer
        self.estimate += ENTRY_COST * len(entries)
        for key, values in entries:
            if type(key) is list:
                key = freeze(key)
            got = buf.get(key)
            if got is None:
                buf[key] = values
            else:
                got.extend(values)
            self.estimate += VALUE_COST * len(values)
        if self.estimate > self.budget or self.gauge.over():
            self._spill()

    def _note_key_types(self) -> None:
        # Runs merge in the keys' own order when every key spilled so far is of one of str,
        # bytes or int (sorted_keys' fast path), and through order_key otherwise.
        types = {type(k) for k in self.buffer}
        if len(types) == 1 and next(iter(types)) in _NATURAL:
            t = next(iter(types))
            if self.natural_type is not False and self.natural_type in (None, t):
                self.natural_type = t
                return
        if types:
            self.natural_type = False

    def _spill(self) -> None:
        if self._tmp is None:
            self._tmp = make_tmpdir("smr-runs-")
        self._note_key_types()
        path = os.path.join(self._tmp.name, f"run-{len(self.runs)}")
        entries = [[k, self.buffer[k]] for k in sorted_keys(self.buffer)]
        with open(path, "wb") as f:
            write_frames(f, entries, self.cctx)
        self.runs.append(path)
        self.buffer = {}
        self.estimate = 0
        self.gauge.flushed()

    def groups(self) -> Iterator[tuple[Any, list]]:
        """(key, values) for every key, in key order."""
        if not self.runs:
            buf = self.buffer
            for k in sorted_keys(buf):
                yield k, buf[k]
            return
        # Merge entries tagged with what they sort by: the key itself when every key is of one
        # natural type (compared in C), else its order_key.
        self._note_key_types()
        natural = bool(self.natural_type)
        buf = self.buffer
        mem = ((k if natural else order_key(k), k, buf[k]) for k in sorted_keys(buf))
        streams = [self._read_run(p, natural) for p in self.runs] + [mem]
        current_ok, current_key, current_vals = None, None, None
        for ok, key, values in heapq.merge(*streams, key=itemgetter(0)):
            if current_vals is not None and ok == current_ok and key == current_key:
                current_vals.extend(values)
                continue
            if current_vals is not None:
                yield current_key, current_vals
            current_ok, current_key, current_vals = ok, key, list(values)
        if current_vals is not None:
            yield current_key, current_vals

    def _read_run(self, path: str, natural: bool) -> Iterator[tuple[Any, Any, list]]:
        with open(path, "rb") as f:
            for frame in iter_frames(f):
                for key, values in frame:
                    if natural:
                        yield key, key, values
                    else:
                        key = freeze(key)
                        yield order_key(key), key, values

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def make_tmpdir(prefix: str) -> tempfile.TemporaryDirectory:
    """A scratch directory on the function's local disk (Lambda's /tmp)."""
    return tempfile.TemporaryDirectory(prefix=prefix, dir=function_tmp())


def iter_pairs(groups: Iterable[tuple[Any, list]]) -> Iterator[tuple[Any, Any]]:
    for key, values in groups:
        for v in values:
            yield key, v
