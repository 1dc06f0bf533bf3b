"""The job API: function style, counters, setup/teardown, input formats, clear user errors."""
import json
from collections import Counter

import pytest

import smr
from smr.driver import JobFailed, run_job

from helpers import read_output, write


def split_words(line):
    for w in line.split():
        yield w, 1


def total(key, values):
    yield key, sum(values)


def test_map_reduce_function_api(tmp_path, platform_name):
    write(tmp_path / "in" / "a.txt", b"a b a\nc a\n")
    write(tmp_path / "in" / "b.txt", b"b b\n")
    s = smr.map_reduce(split_words, total, inputs=str(tmp_path / "in"),
                       output=str(tmp_path / "out"), combine_fn=total, reducers=2,
                       platform=platform_name)
    assert dict(read_output(tmp_path / "out")) == {"a": 3, "b": 3, "c": 1}
    assert s["status"] == "succeeded" and s["records"]["output"] == 3


def test_lambdas_and_closures_travel_by_value(tmp_path, platform_name):
    write(tmp_path / "in" / "a.txt", b"1\n2\n3\n4\n")
    offset = 100
    smr.map_reduce(lambda line: [(int(line) % 2, int(line) + offset)],
                   lambda k, vs: [(k, sorted(vs))], inputs=str(tmp_path / "in"),
                   output=str(tmp_path / "out"), reducers=2, split_size=3, platform=platform_name)
    assert dict(read_output(tmp_path / "out")) == {0: [102, 104], 1: [101, 103]}


class CountingJob(smr.Job):
    def setup(self):
        self.increment_counter("tasks", "setup")
        self.seen = 0

    def map(self, line):
        self.seen += 1
        if not line:
            self.increment_counter("lines", "empty")
        yield len(line), 1

    def teardown(self):
        self.increment_counter("lines", "seen", self.seen)

    def reduce(self, n, ones):
        self.increment_counter("keys", "reduced")
        yield n, sum(ones)


def test_counters_setup_and_teardown(tmp_path, platform_name):
    write(tmp_path / "in" / "a.txt", b"x\n\nyy\n\nzzz\n" * 50)
    s = run_job(CountingJob(), input=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                reducers=2, split_size=64, platform=platform_name)
    got = dict(read_output(tmp_path / "out"))
    assert got == {0: 100, 1: 50, 2: 50, 3: 50}
    c = s["counters"]
    assert c["lines"] == {"empty": 100, "seen": 250}
    assert c["tasks"]["setup"] == s["tasks"]["map"] + s["tasks"]["reduce"]
    assert c["keys"]["reduced"] == 4


class JsonJob(smr.Job):
    INPUT_FORMAT = "jsonl"

    def map(self, rec):
        yield rec["user"], rec["n"]

    def reduce(self, user, ns):
        yield user, sum(ns)


class CsvJob(smr.Job):
    INPUT_FORMAT = "csv"

    def map(self, fields):
        yield fields[0], len(fields)

    def reduce(self, k, ns):
        yield k, list(ns)


def test_jsonl_and_csv_formats(tmp_path, platform_name):
    recs = [{"user": f"u{i % 3}", "n": i} for i in range(30)]
    body = "\n".join(json.dumps(r) for r in recs) + "\n\n"
    write(tmp_path / "j" / "a.jsonl", body.encode())
    run_job(JsonJob(), input=[str(tmp_path / "j")], output=str(tmp_path / "jo"), reducers=2,
            split_size=100, platform=platform_name)
    expected = Counter()
    for r in recs:
        expected[r["user"]] += r["n"]
    assert dict(read_output(tmp_path / "jo")) == dict(expected)

    write(tmp_path / "c" / "a.csv", b'k1,"a, quoted",x\nk2,b\r\nk1,c,d,e\n')
    run_job(CsvJob(), input=[str(tmp_path / "c")], output=str(tmp_path / "co"), reducers=2,
            platform=platform_name)
    got = dict(read_output(tmp_path / "co"))
    assert {k: sorted(v) for k, v in got.items()} == {"k1": [3, 4], "k2": [2]}


class TupleKeys(smr.Job):
    def map(self, line):
        a, b = line.split()
        yield [a, int(b)], None  # a list key: grouped as a tuple, written as a JSON list
        yield (a, int(b)), None

    def reduce(self, key, values):
        yield key, len(list(values))


def test_list_and_tuple_keys_group_together(tmp_path, platform_name):
    write(tmp_path / "in" / "a.txt", b"x 1\ny 2\nx 1\n")
    run_job(TupleKeys(), input=[str(tmp_path / "in")], output=str(tmp_path / "out"),
            reducers=2, split_size=4, platform=platform_name)
    assert sorted(read_output(tmp_path / "out")) == [(["x", 1], 4), (["y", 2], 2)]


class NotAGenerator(smr.Job):
    def map(self, line):
        return None

    def reduce(self, k, v):
        yield k, 1


class BadPair(smr.Job):
    def map(self, line):
        yield line


class BadKey(smr.Job):
    def map(self, line):
        yield {1, 2}, 1


class Raises(smr.Job):
    def map(self, line):
        if line == "boom":
            raise ValueError("cannot handle boom")
        yield line, 1


@pytest.mark.parametrize("job,needle", [
    (NotAGenerator(), "must yield (key, value) pairs"),
    (BadPair(), "expected a (key, value) pair"),
    (BadKey(), "cannot serialize a set"),
    (Raises(), "at byte 4: Raises.map raised ValueError: cannot handle boom"),
])
def test_user_errors_name_the_cause(tmp_path, job, needle, platform_name):
    write(tmp_path / "in" / "a.txt", b"abc\nboom\nxyz\n")
    with pytest.raises(JobFailed) as e:
        run_job(job, input=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                max_attempts=1, platform=platform_name)
    assert needle in str(e.value)
    assert not (tmp_path / "out" / "_SUCCESS").exists()
