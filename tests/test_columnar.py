"""The columnar fast path (map_batches): outputs equal plain Python's and DuckDB's, byte for byte
in the record API's format, on awkward inputs, with several mappers and reducers."""
import json
import math
import random
from collections import Counter, defaultdict
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import smr
from smr.driver import JobFailed, run_job

from helpers import EXAMPLES, expected_query2a, expected_word_counts, input_files, read_output, text_lines, write
from test_examples import make_uservisits


def part_lines(out: Path) -> list[list[str]]:
    return [p.read_text(encoding="utf-8").splitlines() for p in sorted(out.glob("part-*"))]


def assert_record_format(out: Path, reducers: int) -> None:
    """Part files of json(key) TAB json(value), sorted by key within each part, and _SUCCESS."""
    assert (out / "_SUCCESS").exists()
    parts = part_lines(out)
    assert len(parts) == reducers
    for lines in parts:
        keys = [json.loads(ln.split("\t")[0]) for ln in lines]
        assert keys == sorted(keys)
        for ln in lines:
            k, v = ln.split("\t")
            assert json.dumps(json.loads(k), ensure_ascii=False) == k
            assert json.dumps(json.loads(v), ensure_ascii=False) == v


def test_wordcount_columnar_matches_plain_python_and_record_api(tmp_path, corpus, platform_name):
    s = run_job(str(EXAMPLES / "wordcount_columnar.py"), input=[str(corpus)],
                output=str(tmp_path / "col"), reducers=3, split_size=333, platform=platform_name)
    assert s["tasks"]["map"] >= 2 and s["parts"] == 3
    got = dict(read_output(tmp_path / "col"))
    assert got == dict(expected_word_counts(corpus))
    assert got["k" * 100_000] == 1 and got["hot"] == 20_001 and got["日本語"] > 0
    assert_record_format(tmp_path / "col", 3)
    # The same bytes as the record API's word count, part for part.
    run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output=str(tmp_path / "rec"),
            reducers=3, split_size=333, platform=platform_name)
    assert part_lines(tmp_path / "col") == part_lines(tmp_path / "rec")


def test_wordcount_columnar_on_punctuation_and_bad_utf8(tmp_path, platform_name):
    d = tmp_path / "in"
    write(d / "a.txt", "Hello, world! hello...\tWORLD\r\n_under_score x-y 3.14\n\n  lead".encode())
    write(d / "b.txt", b"ok fine\n\xff\xfe broken line\nafter bad\n")
    with pytest.raises(JobFailed, match=r"b\.txt at byte 8: invalid UTF-8"):
        run_job(str(EXAMPLES / "wordcount_columnar.py"), input=[str(d)],
                output=str(tmp_path / "out"), reducers=2, split_size=16, platform=platform_name,
                max_attempts=1)
    s = run_job(str(EXAMPLES / "wordcount_columnar.py"), input=[str(d)],
                output=str(tmp_path / "out"), reducers=2, split_size=16, platform=platform_name,
                bad_records="skip", overwrite=True)
    assert s["records"]["bad"] == 1
    got = dict(read_output(tmp_path / "out"))
    assert got == {"hello": 2, "world": 2, "_under_score": 1, "x": 1, "y": 1, "3": 1, "14": 1,
                   "lead": 1, "ok": 1, "fine": 1, "after": 1, "bad": 1}


def test_query2a_columnar_matches_plain_python_and_duckdb(tmp_path, platform_name):
    d = make_uservisits(tmp_path / "uv", rows=6000)
    run_job(str(EXAMPLES / "query2a_columnar.py"), input=[str(d)], output=str(tmp_path / "out"),
            reducers=3, split_size=20_000, platform=platform_name)
    assert_record_format(tmp_path / "out", 3)
    got = dict(read_output(tmp_path / "out"))
    plain = expected_query2a(d)
    duck = dict(duckdb.connect().execute(
        "SELECT SUBSTR(column0, 1, 8), SUM(column3) FROM read_csv(?, header=false, auto_detect=false, "
        "columns={'column0':'VARCHAR','column1':'VARCHAR','column2':'VARCHAR','column3':'DOUBLE',"
        "'column4':'VARCHAR','column5':'VARCHAR','column6':'VARCHAR','column7':'VARCHAR',"
        "'column8':'INTEGER'}) GROUP BY 1", [str(d / "*.csv")]).fetchall())
    assert set(got) == set(plain) == set(duck)
    for k in got:
        assert math.isclose(got[k], plain[k], rel_tol=1e-9)
        assert math.isclose(got[k], duck[k], rel_tol=1e-9)


class Stats(smr.Job):
    """Every aggregation at once, over JSON lines; several value columns make a JSON object."""
    INPUT_FORMAT = "jsonl"
    AGGREGATE = {"n": "count", "total": "sum", "lo": "min", "hi": "max", "avg": "mean"}

    def map_batches(self, batch):
        x = batch.column("x")
        return pa.table({"key": batch.column("g"), "n": x, "total": x, "lo": x, "hi": x,
                         "avg": pc.cast(x, pa.float64())})


def _stats_rows(seed: int = 5) -> list[dict]:
    rnd = random.Random(seed)
    groups = ["a", "b", "ç", 'quote"d', "back\\slash", "tab\there"]
    return [{"g": rnd.choice(groups), "x": rnd.randint(-1000, 1000)} for _ in range(3000)]


def _expected_stats(rows: list[dict]) -> dict:
    by: dict = defaultdict(list)
    for r in rows:
        by[r["g"]].append(r["x"])
    return {g: {"n": len(xs), "total": sum(xs), "lo": min(xs), "hi": max(xs),
                "avg": sum(xs) / len(xs)} for g, xs in by.items()}


def test_all_aggregations_over_jsonl(tmp_path, platform_name):
    rows = _stats_rows()
    body = "\n".join(json.dumps(r) if i % 50 else json.dumps(r) + "\n" for i, r in enumerate(rows))
    cut = body.index("\n", len(body) // 2) + 1
    write(tmp_path / "in" / "a.jsonl", body[:cut].encode())
    write(tmp_path / "in" / "b.jsonl", body[cut:].encode())  # no newline at its end
    run_job(Stats(), input=[str(tmp_path / "in")], output=str(tmp_path / "out"), reducers=2,
            split_size=7000, platform=platform_name)
    assert_record_format(tmp_path / "out", 2)
    got = dict(read_output(tmp_path / "out"))
    want = _expected_stats(rows)
    assert set(got) == set(want)
    for g in want:
        assert list(got[g]) == ["n", "total", "lo", "hi", "avg"]
        assert {k: v for k, v in got[g].items() if k != "avg"} == \
            {k: v for k, v in want[g].items() if k != "avg"}
        assert math.isclose(got[g]["avg"], want[g]["avg"], rel_tol=1e-12)


def test_parquet_input_by_row_groups(tmp_path, platform_name):
    rows = _stats_rows(seed=9)
    table = pa.table({"g": [r["g"] for r in rows], "x": [r["x"] for r in rows]})
    d = tmp_path / "pq"
    d.mkdir()
    pq.write_table(table.slice(0, 1000), d / "a.parquet", row_group_size=100)
    pq.write_table(table.slice(1000), d / "b.parquet", row_group_size=300)

    class ParquetStats(Stats):
        INPUT_FORMAT = "parquet"
    s = run_job(ParquetStats(), input=[str(d)], output=str(tmp_path / "out"), reducers=3,
                split_size=2000, platform=platform_name)
    assert s["tasks"]["map"] >= 2
    assert s["records"]["input"] == len(rows)  # every row group read exactly once
    got = dict(read_output(tmp_path / "out"))
    want = _expected_stats(rows)
    assert {g: v["total"] for g, v in got.items()} == {g: v["total"] for g, v in want.items()}
    assert {g: v["n"] for g, v in got.items()} == {g: v["n"] for g, v in want.items()}


class Pairs(smr.Job):
    """No AGGREGATE: every row is written, sorted by key (a stable sort keeps the value order)."""

    def map_batches(self, batch):
        lines = batch.column("line")
        return pa.table({"key": pc.utf8_length(lines), "value": lines})


def test_rows_without_aggregation_sorted_by_integer_key(tmp_path, corpus, platform_name):
    run_job(Pairs(), input=[str(corpus)], output=str(tmp_path / "out"), reducers=2,
            split_size=400, platform=platform_name)
    assert_record_format(tmp_path / "out", 2)
    got = Counter(read_output(tmp_path / "out"))
    want = Counter((len(ln), ln) for p in input_files(corpus) if p.stat().st_size
                   for ln in text_lines(p.read_bytes()))  # an empty file holds no line
    assert got == want


def test_declaration_mistakes_fail_before_running(tmp_path, corpus):
    class BadAgg(smr.Job):
        AGGREGATE = {"count": "median"}

        def map_batches(self, batch):
            return batch

    class NoKey(smr.Job):
        AGGREGATE = {"count": "sum"}

        def map_batches(self, batch):
            return pa.table({"count": pa.array([1] * batch.num_rows)})

    with pytest.raises(JobFailed, match=r"AGGREGATE\['count'\] is 'median'"):
        run_job(BadAgg(), input=[str(corpus)], output=str(tmp_path / "o1"))
    with pytest.raises(JobFailed, match="without the key column 'key'"):
        run_job(NoKey(), input=[str(corpus)], output=str(tmp_path / "o2"), max_attempts=1)


def test_vectorized_json_matches_json_dumps():
    from smr.columnar import json_column
    rnd = random.Random(3)
    alphabet = [chr(c) for c in range(128)] + ["ü", "日", "\u2028", "\U0001f600"]
    strings = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12))) for _ in range(2000)]
    assert json_column(pa.array(strings)).to_pylist() == \
        [json.dumps(s, ensure_ascii=False) for s in strings]
    ints = [rnd.randint(-2**62, 2**62) for _ in range(100)]
    assert json_column(pa.array(ints)).to_pylist() == [json.dumps(i) for i in ints]
    floats = [rnd.uniform(-1e20, 1e20) for _ in range(100)] + [0.1, 1e16, -0.0, float("inf")]
    assert json_column(pa.array(floats)).to_pylist() == [json.dumps(f) for f in floats]


def test_bad_csv_rows_fail_or_are_skipped(tmp_path, platform_name):
    d = make_uservisits(tmp_path / "uv", rows=600)
    good = (d / "uservisits-0.csv").read_text()
    write(d / "uservisits-0.csv", (good + "\n1.2.3.4,only,three\n").encode())
    with pytest.raises(JobFailed, match=r"uservisits-0\.csv at byte \d+: bad CSV"):
        run_job(str(EXAMPLES / "query2a_columnar.py"), input=[str(d)],
                output=str(tmp_path / "out"), reducers=2, split_size=20_000,
                platform=platform_name, max_attempts=1)
    s = run_job(str(EXAMPLES / "query2a_columnar.py"), input=[str(d)],
                output=str(tmp_path / "out"), reducers=2, split_size=20_000,
                platform=platform_name, bad_records="skip", overwrite=True)
    assert s["records"]["bad"] == 1
    plain: dict = defaultdict(float)
    for p in input_files(d):
        for line in text_lines(p.read_bytes()):
            f = line.split(",")
            if len(f) == 9:
                plain[f[0][:8]] += float(f[3])
    got = dict(read_output(tmp_path / "out"))
    assert set(got) == set(plain)
    assert all(math.isclose(got[k], plain[k], rel_tol=1e-9) for k in got)
