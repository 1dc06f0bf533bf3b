"""The columnar fast path: Arrow record batches in, vectorized aggregation, Arrow IPC shuffle.

A job that defines ``map_batches(self, batch)`` gets ``pyarrow.RecordBatch`` es of input rows
instead of single records: text as one ``line`` column (Hadoop's line-boundary rule and the CRLF
and UTF-8 handling of smr.formats are kept), CSV, JSON lines and Parquet through pyarrow's own
readers. It returns a table with a ``KEY`` column and value columns. With ``AGGREGATE`` declared
(``{"count": "sum"}``) the values combine by group-by kernels on the map side (partials) and again
on the reduce side (finals); without it every row travels and comes out sorted by key.

The shuffle segment of a partition is a sequence of length-prefixed Arrow IPC streams, each
compressed with zstd. Output is the record API's: part files of ``json(key) TAB json(value)``
sorted by key, then ``_SUCCESS``. A value is the aggregated (or only) value column; with several
value columns it is a JSON object of them, in column order.
"""
from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .formats import RecordError, _decode_skipping, decode_lines, read_blocks
from .shuffle import packb
from .storage.base import Store

COLUMNAR_FORMATS = ("text", "csv", "jsonl", "parquet")
AGGREGATIONS = ("sum", "count", "min", "max", "mean")
#: Map-side rows buffered before a partial aggregation (or, without AGGREGATE, a write).
FLUSH_ROWS = 2_000_000
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")
_LEN = struct.Struct("<Q")
# What json.dumps escapes in a str (ensure_ascii=False): quote, backslash, control characters.
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'


class ColumnarError(ValueError):
    """A columnar job is declared or behaves wrongly; the message names the attribute."""


@dataclass(frozen=True)
class Spec:
    """What a columnar job declared, checked once."""

    name: str
    key: str
    aggregate: dict[str, str] | None
    input_format: str

    @classmethod
    def of(cls, job: Any) -> "Spec":
        name = type(job).__name__
        agg = job.AGGREGATE
        if agg is not None:
            if not isinstance(agg, dict) or not agg:
                raise ColumnarError(f"{name}.AGGREGATE must be a non-empty dict "
                                    "{column: 'sum'|'count'|'min'|'max'|'mean'} or None")
            for col, fn in agg.items():
                if fn not in AGGREGATIONS:
                    raise ColumnarError(f"{name}.AGGREGATE[{col!r}] is {fn!r}; use one of "
                                        f"{', '.join(AGGREGATIONS)}")
            if job.KEY in agg:
                raise ColumnarError(f"{name}.AGGREGATE names the key column {job.KEY!r}")
        fmt = job.INPUT_FORMAT
        if fmt not in COLUMNAR_FORMATS:
            raise ColumnarError(f"{name}.INPUT_FORMAT is {fmt!r}; a columnar job reads "
                                f"{', '.join(COLUMNAR_FORMATS)}")
        if type(job).steps is not _job_steps() or _overrides_any(job, "map", "reduce", "combine"):
            raise ColumnarError(f"{name} defines map_batches and also map/combine/reduce/steps; "
                                "a columnar job is one step of map_batches (+ AGGREGATE)")
        return cls(name, job.KEY, dict(agg) if agg else None, fmt)

    # -- the map side -------------------------------------------------------------------------
    def check_output(self, out: Any) -> pa.Table:
        if isinstance(out, pa.RecordBatch):
            out = pa.Table.from_batches([out])
        if not isinstance(out, pa.Table):
            raise ColumnarError(f"{self.name}.map_batches must return a pyarrow Table or "
                                f"RecordBatch, not {type(out).__name__}")
        names = out.column_names
        if self.key not in names:
            raise ColumnarError(f"{self.name}.map_batches returned columns {names}, without "
                                f"the key column {self.key!r} (set KEY to name another)")
        if self.aggregate is not None:
            missing = [c for c in self.aggregate if c not in names]
            if missing:
                raise ColumnarError(f"{self.name}.map_batches returned columns {names}, without "
                                    f"the AGGREGATE column(s) {missing}")
            return out.select([self.key, *self.aggregate])
        if len(names) < 2:
            raise ColumnarError(f"{self.name}.map_batches returned only the key column; "
                                "return value columns too, or declare AGGREGATE")
        return out.select([self.key, *[c for c in names if c != self.key]])

    def partial(self, table: pa.Table) -> pa.Table:
        """Map-side aggregation; the result's columns are partials the reduce side combines."""
        assert self.aggregate is not None
        aggs = []
        for col, fn in self.aggregate.items():
            if fn == "mean":
                aggs += [(col, "sum"), (col, "count")]
            else:
                aggs.append((col, fn))
        return _group(table, self.key, aggs, self._partial_names())

    def _partial_names(self) -> list[str]:
        names = []
        for col, fn in (self.aggregate or {}).items():
            names += [f"{col}.sum", f"{col}.count"] if fn == "mean" else [f"{col}.{fn}"]
        return names

    # -- the reduce side ----------------------------------------------------------------------
    def merge(self, table: pa.Table) -> pa.Table:
        """Combine partials (from any number of map tasks) into partials."""
        aggs = []
        for name in self._partial_names():
            fn = name.rsplit(".", 1)[1]
            aggs.append((name, "sum" if fn in ("sum", "count") else fn))
        return _group(table, self.key, aggs, self._partial_names())

    def final(self, table: pa.Table) -> pa.Table:
        """Partials to the declared columns, sorted by key."""
        cols = {self.key: table[self.key]}
        for col, fn in (self.aggregate or {}).items():
            if fn == "mean":
                s, n = table[f"{col}.sum"], table[f"{col}.count"]
                cols[col] = pc.divide(pc.cast(s, pa.float64()), pc.cast(n, pa.float64()))
            else:
                cols[col] = table[f"{col}.{fn}"]
        return sort_by_key(pa.table(cols), self.key)


def _job_steps() -> Callable:
    from .api import Job
    return Job.steps


def _overrides_any(job: Any, *names: str) -> bool:
    from .api import Job
    return any(getattr(type(job), n) is not getattr(Job, n) for n in names)


def _group(table: pa.Table, key: str, aggs: list[tuple[str, str]], names: list[str]) -> pa.Table:
    if table.num_rows == 0:
        out = {key: table[key]}
        for (col, fn), name in zip(aggs, names):
            typ = pa.int64() if fn == "count" else table[col].type
            out[name] = pa.chunked_array([], type=typ)
        return pa.table(out)
    res = table.group_by(key, use_threads=False).aggregate(aggs)
    # group_by names results "<col>_<fn>"; rename to our partial names, key first.
    res = res.select([f"{c}_{f}" for c, f in aggs] + [key])
    return pa.table({key: res[key], **{n: res.column(i) for i, n in enumerate(names)}})


def sort_by_key(table: pa.Table, key: str) -> pa.Table:
    """Rows in key order; the order of smr.shuffle.order_key for one key type (nulls first)."""
    if table.num_rows < 2:
        return table
    if table[key].null_count == 0:
        idx = pc.sort_indices(table, sort_keys=[(key, "ascending")])
    else:
        # Nulls first, like order_key's None; how to ask for that changed in pyarrow 25.
        try:
            idx = pc.sort_indices(table, sort_keys=[(key, "ascending", "at_start")])
        except (TypeError, ValueError):
            idx = pc.sort_indices(table, sort_keys=[(key, "ascending")], null_placement="at_start")
    return table.take(idx)


# -- partitioning ----------------------------------------------------------------------------
def hash_partitions(keys: pa.ChunkedArray | pa.Array, n: int) -> np.ndarray:
    """smr.shuffle.hash_partition for every key: Python hashes each distinct key once only."""
    if n == 1:
        return np.zeros(len(keys), dtype=np.int64)
    enc = pc.dictionary_encode(keys)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks() if enc.num_chunks != 1 else enc.chunk(0)
        if isinstance(enc, pa.ChunkedArray):  # pragma: no cover - defensive
            enc = enc.chunk(0)
    dictionary = enc.dictionary.to_pylist()
    parts = np.fromiter((zlib.crc32(packb(k)) % n for k in dictionary), dtype=np.int64,
                        count=len(dictionary))
    indices = enc.indices
    if indices.null_count:
        null_part = zlib.crc32(packb(None)) % n
        parts = np.append(parts, null_part)
        indices = pc.fill_null(indices, len(dictionary))
    return parts[indices.to_numpy(zero_copy_only=False)]


def range_partitions(keys: pa.ChunkedArray | pa.Array, boundaries: list[Any], n: int) -> np.ndarray:
    """smr.partition.range_partitioner for every key: the count of boundaries <= key."""
    out = np.zeros(len(keys), dtype=np.int64)
    for b in boundaries:
        ge = pc.greater_equal(keys, pa.scalar(b, type=keys.type))
        out += pc.fill_null(ge, False).to_numpy(zero_copy_only=False)
    return np.minimum(out, n - 1)


def split_by_partition(table: pa.Table, parts: np.ndarray, n: int) -> list[pa.Table | None]:
    order = np.argsort(parts, kind="stable")
    counts = np.bincount(parts, minlength=n)
    ordered = table.take(pa.array(order))
    out: list[pa.Table | None] = []
    pos = 0
    for p in range(n):
        c = int(counts[p])
        out.append(ordered.slice(pos, c) if c else None)
        pos += c
    return out


# -- the wire format -------------------------------------------------------------------------
def ipc_bytes(table: pa.Table) -> bytes:
    """One length-prefixed, zstd-compressed Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=IPC_OPTIONS) as w:
        w.write_table(table)
    body = sink.getvalue()
    return _LEN.pack(body.size) + body.to_pybytes()


def read_ipc_segment(data: bytes) -> Iterator[pa.Table]:
    pos = 0
    while pos < len(data):
        (size,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        with pa.ipc.open_stream(pa.py_buffer(data[pos:pos + size])) as r:
            yield r.read_all()
        pos += size


# -- input -----------------------------------------------------------------------------------
def lines_array(raw: bytes) -> pa.Array | None:
    """The lines of a block (as smr.formats.decode_lines), vectorized; None if not UTF-8."""
    try:
        text = pa.array([raw], type=pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return None
    lines = pc.split_pattern(text, "\n").flatten()
    if raw.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)
    if b"\r" in raw:
        lines = pc.if_else(pc.ends_with(lines, "\r"), pc.utf8_slice_codeunits(lines, 0, -1), lines)
    return lines


def iter_text_batches(store: Store, key: str, start: int, end: int,
                      on_bad: Callable[[RecordError, bytes], None] | None) -> Iterator[tuple[int, pa.RecordBatch]]:
    url = store.child_url(key)
    for offset, raw in read_blocks(store, key, start, end):
        lines = lines_array(raw)
        if lines is None:  # invalid UTF-8 somewhere: the record path finds and reports it
            try:
                decoded = decode_lines(raw)
            except UnicodeDecodeError as e:
                if on_bad is None:
                    raise RecordError(url, offset + e.start, f"invalid UTF-8 ({e.reason})") from None
                decoded, _ = _decode_skipping(raw, offset, url, on_bad)
            lines = pa.array(decoded, type=pa.string())
        yield len(raw), pa.RecordBatch.from_arrays([lines], names=["line"])


def _types(job: Any) -> dict[str, pa.DataType]:
    out = {}
    for col, t in (job.COLUMN_TYPES or {}).items():
        out[col] = t if isinstance(t, pa.DataType) else pa.type_for_alias(str(t))
    return out


def _skip_rows(url: str, offset: int, on_bad: Callable[[RecordError, bytes], None]) -> Callable:
    def handler(row: Any) -> str:
        on_bad(RecordError(url, offset, f"bad CSV row: {row.text!r:.200}"), (row.text or "").encode())
        return "skip"
    return handler


def iter_csv_batches(job: Any, store: Store, key: str, start: int, end: int,
                     on_bad: Callable[[RecordError, bytes], None] | None) -> Iterator[tuple[int, pa.RecordBatch]]:
    import pyarrow.csv as pcsv
    url = store.child_url(key)
    names = job.COLUMNS
    for offset, raw in read_blocks(store, key, start, end):
        handler = _skip_rows(url, offset, on_bad) if on_bad is not None else None
        read = pcsv.ReadOptions(column_names=names, autogenerate_column_names=names is None,
                                block_size=len(raw) + 1, use_threads=False)
        parse = pcsv.ParseOptions(invalid_row_handler=handler)
        convert = pcsv.ConvertOptions(column_types=_types(job), include_columns=job.SELECT)
        try:
            table = pcsv.read_csv(pa.py_buffer(raw), read_options=read, parse_options=parse,
                                  convert_options=convert)
        except pa.ArrowInvalid as e:
            raise RecordError(url, offset, f"bad CSV in the block at this offset: {e}") from None
        for batch in table.to_batches():
            yield len(raw), batch
            raw = b""


def iter_jsonl_batches(job: Any, store: Store, key: str, start: int, end: int,
                       on_bad: Callable[[RecordError, bytes], None] | None) -> Iterator[tuple[int, pa.RecordBatch]]:
    import pyarrow.json as pjson
    url = store.child_url(key)
    types = _types(job)
    schema = pa.schema(list(types.items())) if types else None
    for offset, raw in read_blocks(store, key, start, end):
        nbytes = len(raw)
        # pyarrow's reader rejects blank lines; the record API skips them, and so does this.
        lines = [ln for ln in raw.split(b"\n") if ln.strip()]
        body = b"\n".join(lines) + b"\n"
        try:
            table = _read_json(pjson, body, schema)
        except pa.ArrowInvalid as e:
            if on_bad is None:
                raise RecordError(url, offset, f"bad JSON in the block at this offset: {e}") from None
            good = []
            for ln in lines:
                try:
                    _read_json(pjson, ln + b"\n", schema)
                    good.append(ln)
                except pa.ArrowInvalid as e1:
                    on_bad(RecordError(url, offset, f"bad JSON line: {e1}"), ln)
            table = _read_json(pjson, b"\n".join(good) + b"\n", schema) if good else None
        if table is None:
            continue
        if job.SELECT:
            table = table.select(job.SELECT)
        for batch in table.to_batches():
            yield nbytes, batch
            nbytes = 0


def _read_json(pjson: Any, body: bytes, schema: pa.Schema | None) -> pa.Table:
    return pjson.read_json(pa.py_buffer(body),
                           read_options=pjson.ReadOptions(block_size=len(body) + 1, use_threads=False),
                           parse_options=pjson.ParseOptions(explicit_schema=schema))


class _StoreFile(io.RawIOBase):
    """A seekable read-only file over ranged gets, for Parquet footers and row groups."""

    def __init__(self, store: Store, key: str, size: int) -> None:
        self.store, self.key, self.size, self.pos = store, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.size - self.pos)
        if n <= 0:
            return 0
        data = self.store.get_range(self.key, self.pos, self.pos + n)
        b[:len(data)] = data
        self.pos += len(data)
        return len(data)


def iter_parquet_batches(job: Any, store: Store, key: str, start: int, end: int,
                         on_bad: Any) -> Iterator[tuple[int, pa.RecordBatch]]:
    """The row groups that start in [start, end): Hadoop's rule, with row groups as records."""
    import pyarrow.parquet as pq
    info = store.head(key)
    if info is None:
        raise RecordError(store.child_url(key), 0, "object vanished")
    try:
        pf = pq.ParquetFile(_StoreFile(store, key, info.size))
    except (pa.ArrowInvalid, OSError) as e:
        raise RecordError(store.child_url(key), 0, f"not a Parquet file: {e}") from None
    md = pf.metadata
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        col = rg.column(0)
        first = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
        if first is None:
            first = col.data_page_offset
        if not start <= first < end:
            continue
        table = pf.read_row_group(i, columns=job.SELECT)
        nbytes = rg.total_byte_size
        for batch in table.to_batches():
            yield nbytes, batch
            nbytes = 0


def iter_batches(job: Any, store: Store, key: str, start: int, end: int,
                 on_bad: Callable[[RecordError, bytes], None] | None) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(input bytes consumed, batch) for a split, in the job's INPUT_FORMAT."""
    fmt = job.INPUT_FORMAT
    if fmt == "text":
        return iter_text_batches(store, key, start, end, on_bad)
    if fmt == "csv":
        return iter_csv_batches(job, store, key, start, end, on_bad)
    if fmt == "jsonl":
        return iter_jsonl_batches(job, store, key, start, end, on_bad)
    if fmt == "parquet":
        return iter_parquet_batches(job, store, key, start, end, on_bad)
    raise ColumnarError(f"unknown columnar input format {fmt!r}")


# -- output ----------------------------------------------------------------------------------
def json_column(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Each value as json.dumps(value, ensure_ascii=False) would write it."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if arr.null_count == 0:
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return pc.binary_join_element_wise('"', _json_escape(arr), '"', "")
        if pa.types.is_integer(t):
            return pc.cast(arr, pa.string())
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    return pa.array([dumps(v) for v in arr.to_pylist()], type=pa.string())


# json's escapes, in the order that keeps them apart: the backslash first.
_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t",
                  "\b": "\\b", "\f": "\\f"}


def _json_escape(arr: pa.Array) -> pa.Array:
    """json.dumps's escaping of str contents, by vectorized replaces of what occurs."""
    if not pc.any(pc.match_substring_regex(arr, _NEEDS_ESCAPE)).as_py():
        return arr
    for ch, rep in _SHORT_ESCAPES.items():
        if pc.any(pc.match_substring(arr, ch)).as_py():
            arr = pc.replace_substring(arr, ch, rep)
    if pc.any(pc.match_substring_regex(arr, r"[\x00-\x1f]")).as_py():
        for code in range(32):
            ch = chr(code)
            if ch not in _SHORT_ESCAPES and pc.any(pc.match_substring(arr, ch)).as_py():
                arr = pc.replace_substring(arr, ch, f"\\u{code:04x}")
    return arr


def format_lines(table: pa.Table, key: str) -> bytes:
    """``json(key) TAB json(value)`` lines; several value columns make a JSON object."""
    if table.num_rows == 0:
        return b""
    values = [c for c in table.column_names if c != key]
    k = json_column(table[key])
    if len(values) == 1:
        v = json_column(table[values[0]])
    else:
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        cols = [table[c].to_pylist() for c in values]
        v = pa.array([dumps(dict(zip(values, row))) for row in zip(*cols)], type=pa.string())
    lines = pc.binary_join_element_wise(k, v, "\t")
    lines = pc.binary_join_element_wise(lines, "", "\n")  # each line + "\n" + ""
    return _data(lines)


def _data(arr: pa.Array) -> bytes:
    """The concatenated bytes of a string array's values (its data buffer, sliced)."""
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32)[arr.offset:arr.offset + len(arr) + 1]
    if bufs[2] is None:
        return b""
    return bufs[2].to_pybytes()[int(offsets[0]):int(offsets[-1])]
