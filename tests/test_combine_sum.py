"""COMBINE = "sum": the map buffer keeps a running sum per key instead of a list of values."""
import io
import re
from collections import Counter

import pytest

import smr
from smr.driver import JobFailed, run_job
from smr.shuffle import MapOutput, iter_frames
from smr.spool import Spool

from helpers import EXAMPLES, expected_word_counts, read_output

WORD = re.compile(r"\w+")


class SumWordCount(smr.Job):
    COMBINE = "sum"

    def map(self, line):
        for word in WORD.findall(line.lower()):
            yield word, 1

    def reduce(self, word, counts):
        yield word, sum(counts)


class MethodWordCount(SumWordCount):
    COMBINE = None

    def combine(self, word, counts):
        yield word, sum(counts)


def test_summed_word_count_equals_plain_python_and_the_combine_method(tmp_path, corpus,
                                                                      platform_name):
    summed = run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)],
                     output=str(tmp_path / "sum"), reducers=2, split_size=3000,
                     platform=platform_name)
    assert summed["tasks"]["map"] >= 2
    assert dict(read_output(tmp_path / "sum")) == dict(expected_word_counts(corpus))
    # The same job with a combine method writes byte-identical parts.
    run_job(MethodWordCount(), input=[str(corpus)], output=str(tmp_path / "method"),
            reducers=2, split_size=3000, platform=platform_name)
    parts = sorted(p.name for p in (tmp_path / "sum").glob("part-*"))
    assert parts == sorted(p.name for p in (tmp_path / "method").glob("part-*"))
    for name in parts:
        assert (tmp_path / "sum" / name).read_bytes() == (tmp_path / "method" / name).read_bytes()


def test_sums_survive_spills_and_freeze_list_keys():
    out = MapOutput(2, "sum", 1 << 20)
    expected = Counter()
    for i in range(3000):
        key = ["pair", i % 7] if i % 2 else f"k{i % 11}"
        value = 0.5 if i % 3 == 0 else 2
        out.add(key, value)
        expected[tuple(key) if isinstance(key, list) else key] += value
        if i % 1000 == 999:
            out.spill()  # as memory pressure would
    assert out.spills == 3
    with Spool(1 << 20) as spool:
        segments = out.finish(spool)
        data = spool.small_value(1 << 20)
    got = Counter()
    for offset, length in segments:
        for frame in iter_frames(io.BytesIO(data[offset:offset + length])):
            for key, values in frame:
                assert len(values) == 1  # one running sum per key and spill
                got[tuple(key) if isinstance(key, list) else key] += values[0]
    assert got == expected


class SumsStrings(smr.Job):
    COMBINE = "sum"

    def map(self, line):
        yield "k", line

    def reduce(self, key, values):
        yield key, sum(values)


def test_a_value_that_cannot_be_added_fails_with_a_clear_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("one\ntwo\n")
    with pytest.raises(JobFailed, match=r"COMBINE = 'sum' adds up values, but key 'k' got '(one|two)' \(str\)"):
        run_job(SumsStrings(), input=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                work_dir=str(tmp_path / "work"), reducers=2, platform="inline", max_attempts=1)
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_a_bad_combine_declaration_names_the_attribute():
    class Max(SumWordCount):
        COMBINE = "max"

    class Both(SumWordCount):
        def combine(self, key, values):
            yield key, sum(values)

    with pytest.raises(ValueError, match=r"Max.COMBINE is 'max'; the only declared combiner is 'sum'"):
        Max().steps()
    with pytest.raises(ValueError, match=r"Both declares COMBINE = 'sum' and defines combine\(\)"):
        Both().steps()
