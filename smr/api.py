"""What users import: the Job base class, Step for multi-step jobs, and map_reduce()."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

Pair = tuple[Any, Any]
MapFn = Callable[[Any], Iterable[Pair]]
GroupFn = Callable[[Any, Iterator[Any]], Iterable[Pair]]

#: Record formats a job can read; see smr.formats. Columnar jobs (map_batches) also read
#: "parquet"; see smr.columnar.
INPUT_FORMATS = ("text", "jsonl", "csv")


@dataclass
class Step:
    """One map -> (combine) -> shuffle -> reduce pass.

    In the first step a record is one input record (a line of text by default). In later steps a
    record is one ``(key, value)`` pair that the previous step's reducer yielded. A step without
    ``map`` passes records through (they must then be pairs); a step without ``reduce`` writes
    every shuffled pair unchanged.
    """

    map: MapFn | None = None
    #: A combine function, or "sum": a key's values may be added up (see ``Job.COMBINE``).
    combine: GroupFn | str | None = None
    reduce: GroupFn | None = None
    #: Reducer count for this step; None uses the job's setting.
    reducers: int | None = None


class Job:
    """Base class for MapReduce jobs, in the style of mrjob::

        class WordCount(smr.Job):
            def map(self, line):
                for word in line.split():
                    yield word, 1

            COMBINE = "sum"  # or a combine(self, key, values) method

            def reduce(self, word, counts):
                yield word, sum(counts)

    ``setup()`` and ``teardown()`` run once per task, around its records. Call
    ``self.increment_counter(group, name)`` anywhere in a task; the job summary adds them up.
    """

    #: How input bytes become records: "text" (a str per line, line ending removed),
    #: "jsonl" (one JSON value per non-blank line), "csv" (a list of fields per line).
    INPUT_FORMAT: str = "text"
    #: Declare True when reduce is associative and commutative and yields the key it was given,
    #: so it can also run as a combiner and in a tree reduction.
    ASSOCIATIVE: bool = False
    #: Declare "sum" instead of writing a combine method when a key's values may simply be added
    #: up (counts, totals): the map task then keeps one running sum per key, which took about
    #: two thirds of the time of buffering every value for a combine method (word count).
    COMBINE: str | None = None
    #: While a map task runs: the URL of the input object the current record came from.
    input_url: str = ""
    #: Which reducer gets a key: "hash" (a stable hash) or "range" (boundaries sampled from the
    #: input, so the part files are globally sorted, as in TeraSort). See smr.partition.
    PARTITIONER: str = "hash"

    # -- the columnar fast path (smr.columnar): define map_batches instead of map ----------
    #: The key column of what map_batches returns.
    KEY: str = "key"
    #: How value columns combine, vectorized on both sides of the shuffle:
    #: {column: "sum" | "count" | "min" | "max" | "mean"}. None writes every row, sorted by key.
    AGGREGATE: dict[str, str] | None = None
    #: CSV inputs (no header line): the column names, types for some ({"col": "float64"}) and
    #: the columns to read at all (None reads every column).
    COLUMNS: list[str] | None = None
    COLUMN_TYPES: dict[str, str] | None = None
    SELECT: list[str] | None = None

    def map_batches(self, batch: Any) -> Any:
        """Columnar map: a ``pyarrow.RecordBatch`` of input rows in, a table or batch with the
        ``KEY`` column and value columns out. Text input is one column, ``line``."""
        raise NotImplementedError

    def partitioner(self, key: Any, n: int) -> int:
        """Override to choose the reducer (0 <= p < n) of a key yourself."""
        from .shuffle import hash_partition
        return hash_partition(key, n)

    def map(self, record: Any) -> Iterable[Pair]:
        raise NotImplementedError(f"{type(self).__name__} must define map(self, record)")

    def combine(self, key: Any, values: Iterator[Any]) -> Iterable[Pair]:
        raise NotImplementedError

    def reduce(self, key: Any, values: Iterator[Any]) -> Iterable[Pair]:
        raise NotImplementedError

    def setup(self) -> None:
        """Runs once per task before its first record."""

    def teardown(self) -> None:
        """Runs once per task after its last record."""

    def steps(self) -> list[Step]:
        """Override to chain several steps; the default is the one step map/combine/reduce."""
        combine: GroupFn | str | None = self.combine if _overrides(self, "combine") else None
        if self.COMBINE is not None:
            if self.COMBINE != "sum":
                raise ValueError(f"{type(self).__name__}.COMBINE is {self.COMBINE!r}; "
                                 "the only declared combiner is 'sum'")
            if combine is not None:
                raise ValueError(f"{type(self).__name__} declares COMBINE = 'sum' and defines "
                                 "combine(); keep one of them")
            combine = "sum"
        return [Step(
            map=self.map if _overrides(self, "map") else None,
            combine=combine,
            reduce=self.reduce if _overrides(self, "reduce") else None,
        )]

    def increment_counter(self, group: str, name: str, amount: int = 1) -> None:
        counters = self.__dict__.setdefault("_smr_counters", defaultdict(int))
        counters[(str(group), str(name))] += amount

    def _take_counters(self) -> dict[str, dict[str, int]]:
        counters = self.__dict__.pop("_smr_counters", {})
        out: dict[str, dict[str, int]] = {}
        for (group, name), n in counters.items():
            out.setdefault(group, {})[name] = n
        return out


def is_columnar(job: Job) -> bool:
    """Whether a job takes the columnar fast path (defines map_batches)."""
    return _overrides(job, "map_batches")


def _overrides(job: Job, name: str) -> bool:
    return getattr(type(job), name) is not getattr(Job, name)


class FunctionJob(Job):
    """A job built from plain functions by map_reduce(); travels to workers with cloudpickle."""

    def __init__(self, map_fn: MapFn, reduce_fn: GroupFn | None = None,
                 combine_fn: GroupFn | None = None, input_format: str = "text",
                 associative: bool = False) -> None:
        self.map_fn, self.reduce_fn, self.combine_fn = map_fn, reduce_fn, combine_fn
        self.INPUT_FORMAT = input_format
        self.ASSOCIATIVE = associative

    def steps(self) -> list[Step]:
        return [Step(map=self.map_fn, combine=self.combine_fn, reduce=self.reduce_fn)]


def map_reduce(map_fn: MapFn, reduce_fn: GroupFn | None = None, *, inputs: str | list[str],
               output: str, combine_fn: GroupFn | None = None, input_format: str = "text",
               associative: bool = False, **settings: Any) -> dict[str, Any]:
    """Run a one-step job built from functions and return its summary (as in ``_SUCCESS``).

    ``map_fn(record)`` and ``reduce_fn(key, values)`` are generators of ``(key, value)`` pairs.
    ``settings`` are the job settings of a config file (``reducers``, ``memory``, ``work_dir``, ...).
    """
    from .driver import run_job
    job = FunctionJob(map_fn, reduce_fn, combine_fn, input_format, associative)
    if isinstance(inputs, str):
        inputs = [inputs]
    return run_job(job, input=list(inputs), output=output, **settings)
