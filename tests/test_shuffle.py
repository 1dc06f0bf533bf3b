"""Shuffle internals: stable partitioning, key order, and spilling past the memory budget."""
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

import smr
from smr.driver import run_job
from smr.shuffle import Grouper, MapOutput, SerializationError, freeze, hash_partition, order_key
from smr.spool import Spool

from helpers import EXAMPLES, expected_word_counts, read_output


def test_partition_is_stable_across_processes():
    keys = ["a", "naïve", 42, ["x", 1], None, 3.5, b"raw"]
    here = [hash_partition(freeze(k), 7) for k in keys]
    code = ("from smr.shuffle import hash_partition, freeze; "
            f"print([hash_partition(freeze(k), 7) for k in {keys!r}])")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": "123"}, check=True).stdout
    assert other.strip() == str(here)
    assert len(set(here)) > 1


def test_order_key_is_total_over_mixed_types():
    keys = ["b", 2, None, True, 1.5, ("a", 1), b"x", "a", -3]
    ordered = sorted(keys, key=order_key)
    assert ordered == [None, True, -3, 1.5, 2, "a", "b", b"x", ("a", 1)]


def test_unhashable_keys_get_a_clear_error():
    with pytest.raises(SerializationError, match="dict cannot be a key"):
        freeze({"a": 1})


def test_grouper_spills_sorted_runs_and_merges(tmp_path):
    g = Grouper(budget_bytes=1)  # every check spills
    expected = {}
    for i in range(20):
        entries = [[f"k{(i * 7 + j) % 500}", [i]] for j in range(3000)]
        for k, v in entries:
            expected.setdefault(k, []).extend(v)
        g.add_entries(entries)
    assert len(g.runs) >= 2
    groups = list(g.groups())
    g.close()
    assert [k for k, _ in groups] == sorted(expected)
    assert {k: sorted(v) for k, v in groups} == {k: sorted(v) for k, v in expected.items()}


def test_map_output_segments_round_trip():
    from smr.shuffle import iter_frames
    import io
    out = MapOutput(3, None, budget_bytes=1)
    pairs = [(f"w{i % 50}", i) for i in range(5000)]
    for k, v in pairs:
        out.add(k, v)
        if v % 1000 == 0:
            out.spill()
    with Spool(1 << 30) as data:
        segments = out.finish(data)
        blob = io.BytesIO()
        data.copy_to(blob)
    raw = blob.getvalue()
    got = {}
    for p, (off, length) in enumerate(segments):
        for frame in iter_frames(io.BytesIO(raw[off:off + length])):
            for k, vals in frame:
                assert hash_partition(k, 3) == p
                got.setdefault(k, []).extend(vals)
    expected = {}
    for k, v in pairs:
        expected.setdefault(k, []).append(v)
    assert {k: sorted(v) for k, v in got.items()} == expected


def test_job_result_is_the_same_when_every_task_spills(tmp_path, corpus, platform_name):
    s = run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output=str(tmp_path / "out"),
                reducers=2, split_size=50_000, buffer_mb=0.001, platform=platform_name)
    assert s["spills"] > 0
    assert dict(read_output(tmp_path / "out")) == dict(expected_word_counts(corpus))


class Identity(smr.Job):
    """No combiner, no reducer: every pair is shuffled and written as is."""

    def map(self, line):
        for w in line.split():
            yield w, len(w)


def test_map_only_style_job_keeps_every_pair(tmp_path, corpus, platform_name):
    run_job(Identity(), input=[str(corpus)], output=str(tmp_path / "out"), reducers=2,
            split_size=1000, buffer_mb=0.001, platform=platform_name)
    got = read_output(tmp_path / "out")
    from helpers import input_files, text_lines
    expected = [(w, len(w)) for p in input_files(corpus) for ln in text_lines(p.read_bytes())
                for w in ln.split()]
    assert sorted(got) == sorted(expected)


@pytest.mark.parametrize("make_key", [
    lambda i: f"k{i % 500}",                 # all str: merged in the keys' own order
    lambda i: i % 500 - 250,                 # all int, negatives too
    lambda i: [f"k{i % 5}", i % 100] if i % 3 else i % 100,   # lists and ints: order_key
    lambda i: f"s{i % 50}" if i % 2 else (i % 50 if i % 4 == 1 else b"b%d" % (i % 50)),
], ids=["str", "int", "list-int", "mixed"])
def test_grouper_merges_spilled_runs_in_key_order(make_key):
    from smr.shuffle import freeze, order_key
    g = Grouper(budget_bytes=1)
    expected: dict = {}
    for i in range(12):
        entries = [[make_key(i * 331 + j), [j]] for j in range(800)]
        for k, v in entries:
            expected.setdefault(freeze(k), []).extend(v)
        g.add_entries(entries)
    g.add_entries([[make_key(7), [-1]]])  # one more key left in memory, not spilled
    expected[freeze(make_key(7))].append(-1)
    assert len(g.runs) >= 2
    groups = [(freeze(k), v) for k, v in g.groups()]
    g.close()
    assert [k for k, _ in groups] == sorted(expected, key=order_key)
    assert {k: sorted(v) for k, v in groups} == {k: sorted(v) for k, v in expected.items()}


@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False)
                    | st.text() | st.binary(), lambda inner: st.lists(inner, max_size=3),
                    max_leaves=6),
       st.integers(1, 64))
def test_hash_partition_is_crc32_of_packb(key, n):
    import zlib
    from smr.shuffle import hash_partition, packb
    assert hash_partition(key, n) == zlib.crc32(packb(key)) % n


def test_hash_partition_recovers_after_a_key_it_cannot_pack():
    import zlib
    from smr.shuffle import SerializationError, hash_partition, packb
    with pytest.raises(SerializationError):
        hash_partition(["ok", {1, 2}], 4)
    assert hash_partition("after", 97) == zlib.crc32(packb("after")) % 97
