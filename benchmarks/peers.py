"""The peers: each workload written for each other system, as a user of it would write it.

Run one as ``python -m benchmarks.peers SYSTEM WORKLOAD INPUT_DIR OUTPUT_DIR``. Every program
writes its result as smr does (part files of ``json(key) TAB json(value)``), so one checker
compares them all. Each uses 2 processes (this machine's cores). A system that cannot run a
workload raises Unsupported with the reason; the harness shows it in the table.

Word semantics everywhere: ``re.findall(r"\\w+", line.lower())``; query 2a: the first 8
characters of the first field, summed 4th field; TeraSort: the first 10 characters of a line
are its key, the rest its value, output globally sorted by key.
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter, defaultdict
from typing import Any, Callable, Iterator

WORKERS = 2
WORD = re.compile(r"\w+")
CHUNK = 64 * 2**20


class Unsupported(Exception):
    pass


# -- shared by the hand-written script and Lithops ------------------------------------------
def input_files(d: str) -> list[str]:
    return sorted(os.path.join(d, f) for f in os.listdir(d) if not f.startswith((".", "_")))


def byte_ranges(files: list[str], chunk: int = CHUNK) -> list[tuple[str, int, int]]:
    out = []
    for f in files:
        size = os.path.getsize(f)
        out += [(f, s, min(size, s + chunk)) for s in range(0, size, chunk)]
    return out


def read_lines(path: str, start: int, end: int) -> Iterator[str]:
    """Lines whose first byte lies in [start, end) (Hadoop's rule), decoded, without endings."""
    with open(path, "rb") as f:
        if start:
            f.seek(start - 1)
            f.readline()  # the rest of the line the previous range owns
        pos = f.tell()
        while pos < end:
            raw = f.readline()
            if not raw:
                break
            pos += len(raw)
            yield raw.decode("utf-8").rstrip("\n").removesuffix("\r")


def count_words(r: tuple[str, int, int]) -> Counter:
    c: Counter = Counter()
    for line in read_lines(*r):
        c.update(WORD.findall(line.lower()))
    return c


def sum_revenue(r: tuple[str, int, int]) -> dict:
    sums: dict = defaultdict(float)
    for line in read_lines(*r):
        if line:
            f = line.split(",")
            sums[f[0][:8]] += float(f[3])
    return sums


def write_pairs(out: str, pairs, part: int = 0) -> None:
    os.makedirs(out, exist_ok=True)
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    with open(os.path.join(out, f"part-{part:05d}"), "w", encoding="utf-8") as f:
        f.writelines(f"{dumps(k)}\t{dumps(v)}\n" for k, v in pairs)


def sample_boundaries(files: list[str], n: int) -> list[str]:
    keys = []
    for path in files:
        with open(path, "rb") as f:
            for _ in range(2000):
                line = f.readline()
                if not line:
                    break
                keys.append(line[:10].decode())
    keys.sort()
    return [keys[i * len(keys) // n] for i in range(1, n)]


def _range_part(args: tuple) -> list[list[str]]:
    (path, start, end), bounds = args
    import bisect
    parts: list[list[str]] = [[] for _ in range(len(bounds) + 1)]
    for line in read_lines(path, start, end):
        parts[bisect.bisect_right(bounds, line[:10])].append(line)
    return parts


def _sort_write(args: tuple) -> None:
    lines, out, p = args
    lines.sort(key=lambda ln: ln[:10])
    write_pairs(out, ((ln[:10], ln[10:]) for ln in lines), p)


# -- the hand-written script: multiprocessing + collections.Counter, no framework ---------
def plain_wordcount(inp: str, out: str) -> None:
    from multiprocessing import Pool
    total: Counter = Counter()
    with Pool(WORKERS) as pool:
        for c in pool.imap_unordered(count_words, byte_ranges(input_files(inp))):
            total.update(c)
    write_pairs(out, sorted(total.items()))


def plain_query2a(inp: str, out: str) -> None:
    from multiprocessing import Pool
    total: dict = defaultdict(float)
    with Pool(WORKERS) as pool:
        for d in pool.imap_unordered(sum_revenue, byte_ranges(input_files(inp))):
            for k, v in d.items():
                total[k] += v
    write_pairs(out, sorted(total.items()))


def plain_terasort(inp: str, out: str) -> None:
    from multiprocessing import Pool
    files = input_files(inp)
    parts = 8
    bounds = sample_boundaries(files, parts)
    buckets: list[list[str]] = [[] for _ in range(parts)]
    with Pool(WORKERS) as pool:
        for got in pool.imap_unordered(_range_part, [(r, bounds) for r in byte_ranges(files)]):
            for p, lines in enumerate(got):
                buckets[p].extend(lines)
        pool.map(_sort_write, [(b, out, p) for p, b in enumerate(buckets)], chunksize=1)


def _tiny_count(path: str) -> Counter:
    return count_words((path, 0, os.path.getsize(path)))


def plain_tiny(inp: str, out: str) -> None:
    from multiprocessing import Pool
    total: Counter = Counter()
    with Pool(WORKERS) as pool:
        for c in pool.imap_unordered(_tiny_count, input_files(inp), chunksize=1):
            total.update(c)
    write_pairs(out, sorted(total.items()))


# -- Lithops, localhost backend -----------------------------------------------------------
def _lithops() -> Any:
    import lithops
    config = {"lithops": {"backend": "localhost", "storage": "localhost", "log_level": "WARNING"},
              "localhost": {"worker_processes": WORKERS, "runtime": sys.executable}}
    return lithops.FunctionExecutor(config=config)


def _kw(ranges: list) -> list[dict]:
    # Lithops spreads a tuple item over positional parameters; a dict item names them.
    return [{"r": r} for r in ranges]


def _merge_counters(results: list) -> Counter:
    total: Counter = Counter()
    for c in results:
        total.update(c)
    return total


def _merge_sums(results: list) -> dict:
    total: dict = defaultdict(float)
    for d in results:
        for k, v in d.items():
            total[k] += v
    return dict(total)


def lithops_wordcount(inp: str, out: str) -> None:
    fexec = _lithops()
    fexec.map_reduce(count_words, _kw(byte_ranges(input_files(inp))), _merge_counters)
    write_pairs(out, sorted(fexec.get_result().items()))


def lithops_query2a(inp: str, out: str) -> None:
    fexec = _lithops()
    fexec.map_reduce(sum_revenue, _kw(byte_ranges(input_files(inp))), _merge_sums)
    write_pairs(out, sorted(fexec.get_result().items()))


def lithops_terasort(inp: str, out: str) -> None:
    raise Unsupported("Lithops has map and map_reduce but no shuffle: a global sort needs a "
                      "hand-written shuffle through storage")


def lithops_tiny(inp: str, out: str) -> None:
    fexec = _lithops()
    fexec.map_reduce(_tiny_count, input_files(inp), _merge_counters)
    write_pairs(out, sorted(fexec.get_result().items()))


# -- Dask bag, multiprocessing scheduler ------------------------------------------------
def _dask_counts(lines: list[str]) -> list[Counter]:
    c: Counter = Counter()
    for line in lines:
        c.update(WORD.findall(line.lower()))
    return [c]


def _dask_sums(lines: list[str]) -> list[dict]:
    sums: dict = defaultdict(float)
    for line in lines:
        f = line.split(",")
        if len(f) > 3:
            sums[f[0][:8]] += float(f[3])
    return [dict(sums)]


def _dask_compute(x: Any) -> Any:
    import dask
    with dask.config.set(scheduler="processes", num_workers=WORKERS):
        return x.compute()


def dask_wordcount(inp: str, out: str) -> None:
    import dask.bag as db
    b = db.read_text(input_files(inp), blocksize=CHUNK)
    total = _dask_compute(b.map_partitions(_dask_counts).fold(_add_counter, _add_counter, Counter()))
    write_pairs(out, sorted(total.items()))


def _add_counter(a: Counter, b: Counter) -> Counter:
    a = Counter(a)
    a.update(b)
    return a


def _add_sums(a: dict, b: dict) -> dict:
    a = defaultdict(float, a)
    for k, v in b.items():
        a[k] += v
    return dict(a)


def dask_query2a(inp: str, out: str) -> None:
    import dask.bag as db
    b = db.read_text(input_files(inp), blocksize=CHUNK)
    total = _dask_compute(b.map_partitions(_dask_sums).fold(_add_sums, _add_sums, {}))
    write_pairs(out, sorted(total.items()))


def dask_terasort(inp: str, out: str) -> None:
    raise Unsupported("dask.bag has no global sort (only dask.dataframe has sort_values)")


def dask_tiny(inp: str, out: str) -> None:
    import dask.bag as db
    files = input_files(inp)
    b = db.from_sequence(files, npartitions=len(files))
    total = _dask_compute(b.map(_tiny_count).fold(_add_counter, _add_counter, Counter()))
    write_pairs(out, sorted(total.items()))


# -- PySpark, local[2] -------------------------------------------------------------------------
def _spark() -> Any:
    from pyspark.sql import SparkSession
    return (SparkSession.builder.master(f"local[{WORKERS}]").appName("smr-bench")
            .config("spark.driver.memory", "4g").config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", str(WORKERS * 2))
            .getOrCreate())


def _spark_counts(lines: Iterator[str]) -> Iterator[tuple[str, int]]:
    c: Counter = Counter()
    for line in lines:
        c.update(WORD.findall(line.lower()))
    return iter(c.items())


def spark_wordcount(inp: str, out: str) -> None:
    spark = _spark()
    rdd = spark.sparkContext.textFile(",".join(input_files(inp)))
    total = rdd.mapPartitions(_spark_counts).reduceByKey(lambda a, b: a + b).collect()
    write_pairs(out, sorted(total))
    spark.stop()


def spark_query2a(inp: str, out: str) -> None:
    from pyspark.sql import functions as F
    spark = _spark()
    df = spark.read.csv(input_files(inp), schema="sourceIP STRING, destURL STRING, "
                        "visitDate STRING, adRevenue DOUBLE, userAgent STRING, "
                        "countryCode STRING, languageCode STRING, searchWord STRING, "
                        "duration INT")
    rows = df.groupBy(F.substring("sourceIP", 1, 8).alias("k")).agg(F.sum("adRevenue")).collect()
    write_pairs(out, sorted((r[0], r[1]) for r in rows))
    spark.stop()


def spark_terasort(inp: str, out: str) -> None:
    spark = _spark()
    rdd = spark.sparkContext.textFile(",".join(input_files(inp)))
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    pairs = rdd.map(lambda ln: (ln[:10], ln[10:])).sortByKey(numPartitions=8)
    pairs.map(lambda kv: f"{dumps(kv[0])}\t{dumps(kv[1])}").saveAsTextFile(out)
    spark.stop()


def spark_tiny(inp: str, out: str) -> None:
    spark = _spark()
    files = input_files(inp)
    counts = spark.sparkContext.parallelize(files, len(files)).map(_tiny_count)
    total = counts.reduce(_add_counter)
    write_pairs(out, sorted(total.items()))
    spark.stop()


# -- DuckDB (query 2a only) ----------------------------------------------------------------
def duckdb_query2a(inp: str, out: str) -> None:
    import duckdb
    con = duckdb.connect()
    con.execute(f"SET threads = {WORKERS}")
    rows = con.execute(
        "SELECT SUBSTR(sourceIP, 1, 8), SUM(adRevenue) FROM read_csv(?, header=false, "
        "auto_detect=false, columns={'sourceIP':'VARCHAR','destURL':'VARCHAR',"
        "'visitDate':'VARCHAR','adRevenue':'DOUBLE','userAgent':'VARCHAR',"
        "'countryCode':'VARCHAR','languageCode':'VARCHAR','searchWord':'VARCHAR',"
        "'duration':'INTEGER'}) GROUP BY 1", [input_files(inp)]).fetchall()
    write_pairs(out, sorted(rows))


def duckdb_wordcount(inp: str, out: str) -> None:
    raise Unsupported("not run: DuckDB is the SQL baseline for query 2a only")


duckdb_terasort = duckdb_tiny = duckdb_wordcount

PROGRAMS: dict[str, Callable[[str, str], None]] = {
    name: fn for name, fn in globals().items()
    if callable(fn) and name.split("_")[0] in ("plain", "lithops", "dask", "spark", "duckdb")
    and name.split("_", 1)[-1] in ("wordcount", "query2a", "terasort", "tiny")
}


def main(argv: list[str]) -> int:
    system, workload, inp, out = argv
    try:
        PROGRAMS[f"{system}_{workload}"](inp, out)
    except Unsupported as e:
        print(f"UNSUPPORTED: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
