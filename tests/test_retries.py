"""Retries of crashed, hung and out-of-memory tasks; re-splitting; speculative backups; how a
task that fails every attempt is reported."""
import os
import subprocess
import sys
import time
from collections import Counter

import smr
from smr import layout
from smr.driver import run_job
from smr.finalize import finalize
from smr.jobstate import JobState
from smr.storage import open_store
from smr.runner import split_in_two

from helpers import read_output, write


class FirstTimeOnly(smr.Job):
    """Misbehaves on the first attempt of the task holding the line "bad", then works.

    Which attempt is the first is decided by an exclusive file create, which only one process
    can win, so the job needs no knowledge of smr's attempts.
    """

    def __init__(self, marker_dir: str, how: str) -> None:
        self.marker_dir = marker_dir
        self.how = how

    def map(self, line):
        if line == "bad":
            try:
                os.close(os.open(os.path.join(self.marker_dir, "first"), os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                if self.how == "crash":
                    os._exit(7)
                time.sleep(60)  # "hang" (past the timeout) and "straggle" (speculation)
        for w in line.split():
            yield w, 1

    def reduce(self, word, ones):
        yield word, sum(ones)


def lines_input(tmp_path):
    body = ["alpha beta"] * 30 + ["bad"] + ["beta gamma"] * 30
    write(tmp_path / "in" / "a.txt", ("\n".join(body[:31]) + "\n").encode())
    write(tmp_path / "in" / "b.txt", ("\n".join(body[31:]) + "\n").encode())
    return {"alpha": 30, "beta": 60, "gamma": 30, "bad": 1}


def test_a_crashed_task_is_retried(tmp_path):
    expected = lines_input(tmp_path)
    (tmp_path / "m").mkdir()
    s = run_job(FirstTimeOnly(str(tmp_path / "m"), "crash"), input=[str(tmp_path / "in")],
                output=str(tmp_path / "out"), reducers=2, split_size=200)
    assert dict(read_output(tmp_path / "out")) == expected
    assert s["retries"] == 1 and s["failures"] == {"crash": 1}


def test_a_timed_out_task_is_retried(tmp_path):
    expected = lines_input(tmp_path)
    (tmp_path / "m").mkdir()
    s = run_job(FirstTimeOnly(str(tmp_path / "m"), "hang"), input=[str(tmp_path / "in")],
                output=str(tmp_path / "out"), reducers=2, split_size=200, timeout=2)
    assert dict(read_output(tmp_path / "out")) == expected
    assert s["retries"] == 1 and s["failures"] == {"timeout": 1}


def test_a_straggler_gets_a_backup_attempt_that_wins(tmp_path):
    expected = lines_input(tmp_path)
    (tmp_path / "m").mkdir()
    s = run_job(FirstTimeOnly(str(tmp_path / "m"), "straggle"), input=[str(tmp_path / "in")],
                output=str(tmp_path / "out"), reducers=2, split_size=200, timeout=120,
                concurrency=3, speculative=True, speculative_after=2.0,
                speculative_min_seconds=0.5)
    assert dict(read_output(tmp_path / "out")) == expected
    assert s["speculative"] == {"launched": 1, "won": 1}
    assert s["retries"] == 0 and s["failures"] == {}


class Hoarder(smr.Job):
    """Holds about 1600 bytes of memory per input byte until its task ends."""

    def setup(self):
        self.held = []

    def map(self, line):
        self.held.append(b"x" * (len(line) * 1600))
        yield len(line) % 7, 1

    def reduce(self, key, ones):
        yield key, sum(ones)


def test_a_map_task_out_of_memory_is_re_split(tmp_path):
    # Two tasks of ~210 KB each need ~340 MB on top of the interpreter: over a 256 MB
    # function. Halves of them fit. The answer must count every line exactly once.
    expected = Counter()
    for f in range(2):
        lines = [("y" * (20 + (i * 7 + f) % 60)) for i in range(4200)]
        write(tmp_path / "in" / f"{f}.txt", ("\n".join(lines) + "\n").encode())
        expected.update(len(x) % 7 for x in lines)
    s = run_job(Hoarder(), input=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                work_dir=str(tmp_path / "work"), reducers=2, memory=256, split_size=220_000,
                concurrency=2, max_attempts=4, keep_intermediates=True)
    assert dict(read_output(tmp_path / "out")) == dict(expected)
    assert s["failures"].get("oom", 0) >= 2 and s["resplits"] >= 2
    assert s["tasks"]["map"] >= 4  # the halves ran as tasks of their own

    # A process that has only the store (resume, a coordinator) follows the parents' split
    # records to their sub-tasks, and finalizing from the store publishes the same output.
    work = open_store(str(tmp_path / "work"))
    st = JobState(work, s["job_id"])
    parents = [layout.read_json(work, layout.commit_key(s["job_id"], 0, "map", t))
               for t in range(st.map_count(0))]
    assert all(layout.is_split(c) for c in parents)
    sources = st.map_sources(0, 0)
    assert len(sources) == s["tasks"]["map"]
    leaves, todo = [], [c for c in parents]
    while todo:
        c = todo.pop(0)
        if layout.is_split(c):
            todo[:0] = [layout.read_json(work, layout.commit_key(s["job_id"], 0, "map", j))
                        for j in c["split_into"]]
        else:
            leaves.append(c)
    assert sorted(map(str, sources)) == sorted(str(layout.shuffle_source(c, 0)) for c in leaves)
    assert len({c["attempt"] for c in leaves}) == len(sources)
    parts = {p.name: p.read_bytes() for p in (tmp_path / "out").glob("part-*")}
    (tmp_path / "out" / "_SUCCESS").unlink()
    again = finalize(JobState(work, s["job_id"]))
    assert again["tasks"]["map"] == s["tasks"]["map"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").glob("part-*")} == parts


def test_split_in_two_covers_the_input_exactly():
    one = [["r", "k", 100, 10_100]]
    a, b = split_in_two(one)
    assert a == [["r", "k", 100, 5100]] and b == [["r", "k", 5100, 10_100]]
    many = [["r", f"k{i}", 0, 1000 + i] for i in range(5)]
    a, b = split_in_two(many)
    assert a + b == many and a and b
    assert split_in_two([["r", "k", 0, 100]]) is None  # too small to help


def smr_cli(*args):
    return subprocess.run([sys.executable, "-m", "smr", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_cli_shows_one_line_error_and_the_traceback_with_verbose(tmp_path):
    job = tmp_path / "boom.py"
    job.write_text("import smr\nclass Boom(smr.Job):\n    def map(self, line):\n"
                   "        raise KeyError('kaboom')\n        yield line, 1\n")
    write(tmp_path / "in" / "a.txt", b"x\n")
    args = ["run", job, "-i", tmp_path / "in", "-o", tmp_path / "out", "--max-attempts", 2,
            "--work-dir", tmp_path / "w"]
    r = smr_cli(*args)
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("smr: error:")]
    assert len(errors) == 1 and "failed after 2 attempts" in errors[0] and "kaboom" in errors[0]
    assert "at byte 0" in errors[0] and "a.txt" in errors[0]
    assert "Traceback" not in r.stderr
    r = smr_cli("-v", *args)
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr
    assert "KeyError: 'kaboom'" in r.stderr
