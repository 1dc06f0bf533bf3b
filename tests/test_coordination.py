"""Fan-out and reduce strategies, the store-driven coordinator, status and resume.

Outputs are checked against plain Python; the coordinator is checked under duplicated and
reordered events by delivering every event it sees twice, in random order.
"""
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from smr import jobstate, layout
from smr.cli import main
from smr.config import make_settings
from smr.coordinated import create_job, resume_job
from smr.driver import JobFailed, run_job
from smr.jobload import load_job
from smr.storage import open_store
from smr.worker.fanout import tree_children
from smr.worker.handler import handler

from helpers import EXAMPLES, expected_query2a, expected_word_counts, read_output
from test_examples import make_uservisits

COMBOS = [("direct", "shuffle"), ("tree", "shuffle"), ("direct", "tree"), ("tree", "tree")]


@pytest.mark.parametrize("fanout,reduce", COMBOS)
def test_wordcount_every_strategy_matches_plain_python(tmp_path, corpus, platform_name,
                                                       fanout, reduce):
    s = run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output=str(tmp_path / "out"),
                work_dir=str(tmp_path / "work"), reducers=2, split_size=3000, concurrency=2,
                fanout=fanout, reduce=reduce, reduce_fan_in=2, platform=platform_name)
    got = read_output(tmp_path / "out")
    expected = expected_word_counts(corpus)
    assert dict(got) == dict(expected)
    assert len(got) == len(expected), "a key appeared twice"
    assert s["tasks"]["map"] >= 8
    levels = jobstate.tree_levels(s["tasks"]["map"], 2)
    assert len(levels) >= 2, "the tree reduction should take several rounds here"
    per_part = 1 + sum(len(lv) for lv in levels) if reduce == "tree" else 1
    assert s["tasks"]["reduce"] == 2 * per_part
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == ["part-00000", "part-00001"]
    # Intermediates are gone; the commit metrics say when each task started.
    work = open_store(str(tmp_path / "work"))
    assert not list(work.list(layout.step_prefix(s["job_id"], 0) + "out/"))
    commit = layout.read_json(work, layout.commit_key(s["job_id"], 0, "map", 0))
    assert commit["metrics"]["since_job_start_s"] >= 0


@pytest.mark.parametrize("fanout,reduce", COMBOS)
def test_query2a_every_strategy_matches_plain_python(tmp_path, platform_name, fanout, reduce):
    d = make_uservisits(tmp_path / "uv")
    run_job(str(EXAMPLES / "query2a.py"), input=[str(d)], output=str(tmp_path / "out"),
            work_dir=str(tmp_path / "work"), reducers=2, split_size=20_000, concurrency=2,
            fanout=fanout, reduce=reduce, reduce_fan_in=2, platform=platform_name)
    got = dict(read_output(tmp_path / "out"))
    plain = expected_query2a(d)
    assert set(got) == set(plain)
    for k in got:
        assert math.isclose(got[k], plain[k], rel_tol=1e-9)


def test_tree_reduce_refuses_a_job_not_declared_associative(tmp_path, corpus):
    job = tmp_path / "plain.py"
    job.write_text(textwrap.dedent("""
        import smr
        class Count(smr.Job):
            def map(self, line):
                yield "lines", 1
            def reduce(self, key, values):
                yield key, sum(values)
    """))
    with pytest.raises(JobFailed, match="ASSOCIATIVE = True"):
        run_job(str(job), input=[str(corpus)], output=str(tmp_path / "out"), reduce="tree")
    assert not (tmp_path / "out").exists()
    r = CliRunner().invoke(main, ["run", str(job), "-i", str(corpus), "-o", str(tmp_path / "o2"),
                                  "--reduce", "tree"])
    assert r.exit_code == 1
    assert "ASSOCIATIVE = True" in r.output and len(r.output.strip().splitlines()) == 1


def test_tree_fanout_reaches_every_mapper_once_in_log_depth():
    for size in (1, 2, 3, 7, 8, 1000):
        parent = {}
        for n in range(size):
            for c in tree_children(n, size):
                assert c not in parent, f"mapper {c} started twice"
                parent[c] = n
        assert sorted(parent) == list(range(1, size))
        depth = 0
        for n in range(size):
            d, m = 0, n
            while m:
                m, d = parent[m], d + 1
            depth = max(depth, d)
        assert depth <= max(1, math.ceil(math.log2(size)))
        assert len(tree_children(0, size)) <= max(1, math.ceil(math.log2(size)))


def test_tree_levels_cover_inputs_in_batches_of_at_least_two():
    for n in range(1, 200):
        for fan_in in (2, 3, 4, 10):
            width = n
            for level in jobstate.tree_levels(n, fan_in):
                covered = [i for b in level for i in b]
                assert covered == list(range(width))
                assert all(len(b) >= 2 for b in level)
                width = len(level)
            assert width <= fan_in


RETRY_JOB = """
import os, smr
class FlakyCount(smr.Job):
    ASSOCIATIVE = True
    def map(self, line):
        # The first attempt of the task that reads the line 'boom' fails; later ones succeed.
        if line == "boom":
            marker = os.path.join({marker!r}, "failed-once")
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("injected failure")
        for w in line.split():
            yield w, 1
    def reduce(self, key, values):
        yield key, sum(values)
"""


@pytest.mark.parametrize("fanout,reduce", [("tree", "shuffle"), ("direct", "tree")])
def test_a_failed_task_is_retried_by_the_coordinator(tmp_path, fanout, reduce):
    job = tmp_path / "flaky.py"
    job.write_text(RETRY_JOB.format(marker=str(tmp_path)))
    lines = [f"w{i % 5} x" for i in range(200)]
    lines[150] = "boom"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("\n".join(lines) + "\n")
    s = run_job(str(job), input=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                work_dir=str(tmp_path / "work"), split_size=300, concurrency=2,
                fanout=fanout, reduce=reduce, reduce_fan_in=2)
    expected = defaultdict(int)
    for ln in lines:
        for w in ln.split():
            expected[w] += 1
    assert dict(read_output(tmp_path / "out")) == dict(expected)
    assert s["retries"] == 1
    st = jobstate.status(open_store(str(tmp_path / "work")), s["job_id"])
    assert st["phase"] == "succeeded" and st["tasks"]["map"]["failed"] == 1
    # The timeline has every committed task once, plus the failed attempt.
    from smr.timeline import attempts
    rows = attempts(open_store(str(tmp_path / "work")), s["job_id"])
    committed = [r for r in rows if r["outcome"] == "committed"]
    assert len(committed) == s["tasks"]["map"] + s["tasks"]["reduce"]
    assert [r["outcome"] for r in rows if r["outcome"] != "committed"] == ["error"]
    assert all(0 <= r["start"] <= r["end"] for r in rows)
    png = tmp_path / "timeline.png"
    r = CliRunner().invoke(main, ["timeline", s["job_id"], "--work-dir", str(tmp_path / "work"),
                                  "-o", str(png)])
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- duplicated and reordered events --------------------------------------------------------------

class _Pool:
    """Events waiting for delivery; the test delivers them in random order, each one twice."""

    def __init__(self, seed):
        self.events, self.rnd, self.launched = [], random.Random(seed), defaultdict(int)
        self.descriptor = {"kind": "inline", "function": "test"}

    def launch(self, events):
        for e in events:
            if e.get("role") in jobstate.ROLE_PHASE:
                self.launched[(e["step"], e["role"], jobstate.task_name(e))] += 1
        self.events.extend(events)

    def context(self):
        return SimpleNamespace(smr_invoke=self.launch, smr_kind="inline", memory_limit_in_mb=512,
                               cold_start=False, function_name="test", aws_request_id="t")


@pytest.mark.parametrize("fanout,reduce,seed", [("direct", "shuffle", 1), ("tree", "tree", 2),
                                                ("tree", "shuffle", 3), ("direct", "tree", 4)])
def test_duplicate_and_reordered_events_change_nothing(tmp_path, corpus, fanout, reduce, seed):
    work_url = str(tmp_path / "work")
    work = open_store(work_url)
    settings = make_settings(split_size=4000, reducers=2, fanout=fanout, reduce=reduce,
                             reduce_fan_in=2, work_dir=work_url, platform="inline")
    job = load_job(str(EXAMPLES / "wordcount.py"))
    out = str(tmp_path / "out")
    create_job(work, job_id="dup-test", job=job, code=None, settings=settings,
               inputs=[str(corpus)], output_url=out, work_url=work_url, start="event")
    pool = _Pool(seed)
    jobstate.advance(work, "dup-test", pool, notify=True)
    delivered = 0
    while pool.events:
        event = pool.events.pop(pool.rnd.randrange(len(pool.events)))
        for _ in range(2):  # at-least-once delivery: every event arrives twice
            handler(json.loads(json.dumps(event)), pool.context())
            delivered += 1
        assert delivered < 10_000
    assert work.head(layout.summary_key("dup-test")) is not None
    assert dict(read_output(tmp_path / "out")) == dict(expected_word_counts(corpus))
    # Every task was launched exactly once by the coordinators (the tree's root invokes the
    # other mappers, which the pool counts as launches too), despite every event arriving twice.
    st = jobstate.JobState(work, "dup-test")
    n_maps = st.map_count(0)
    assert n_maps >= 4
    maps = {k: v for k, v in pool.launched.items() if k[1] == "map"}
    if fanout == "direct":
        assert maps == {(0, "map", f"{t:05d}"): 1 for t in range(n_maps)}
    else:
        # Node n's duplicate delivery finds its create-once marker and does not re-invoke.
        assert maps == {(0, "map", f"{t:05d}"): 1 for t in range(n_maps)}
    reduces = {k: v for k, v in pool.launched.items() if k[1] != "map"}
    assert set(reduces.values()) == {1}
    expected_reduces = 2 * (1 + (sum(len(lv) for lv in jobstate.tree_levels(n_maps, 2))
                                 if reduce == "tree" else 0))
    assert len(reduces) == expected_reduces


def test_reduce_rounds_use_exact_task_names(tmp_path):
    # Eleven map tasks: task 1 must never be taken for task 10 (or 11), done or not.
    work = open_store(str(tmp_path / "w"))
    names = jobstate._names
    for t in (10, 11):
        work.put(f"jobs/j/s0/map-done/{t:05d}.json", b"{}")
    assert names(work, "jobs/j/s0/map-done/") == ["00010", "00011"]
    assert "00001" not in set(names(work, "jobs/j/s0/map-done/"))


# -- status, jobs, wait ---------------------------------------------------------------------------

def test_status_jobs_and_wait_from_the_store(tmp_path, corpus):
    work = str(tmp_path / "work")
    runner = CliRunner()
    s = run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output=str(tmp_path / "out"),
                work_dir=work, split_size=5000, reducers=2, fanout="tree")
    r = runner.invoke(main, ["status", s["job_id"], "--work-dir", work, "--json"])
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert st["phase"] == "succeeded"
    assert st["tasks"]["map"]["done"] == st["tasks"]["map"]["total"] == s["tasks"]["map"]
    assert st["tasks"]["reduce"]["done"] == 2 and st["tasks"]["map"]["running"] == 0
    assert st["bytes"]["input"] == s["input"]["bytes"] == st["bytes"]["read"]
    assert st["cost_usd"] == s["cost_usd"] > 0
    r = runner.invoke(main, ["status", s["job_id"], "--work-dir", work])
    assert r.exit_code == 0 and "succeeded" in r.output and "map" in r.output
    s2 = run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)],
                 output=str(tmp_path / "out2"), work_dir=work, split_size=5000)
    r = runner.invoke(main, ["jobs", "--work-dir", work])
    assert r.exit_code == 0
    assert r.output.index(s["job_id"]) < r.output.index(s2["job_id"])
    r = runner.invoke(main, ["wait", s2["job_id"], "--work-dir", work])
    assert r.exit_code == 0 and "succeeded" in r.output
    r = runner.invoke(main, ["status", "no-such-job", "--work-dir", work])
    assert r.exit_code == 1 and "no-such-job" in r.output


def test_status_of_a_failed_client_run_job(tmp_path):
    job = tmp_path / "bad.py"
    job.write_text("import smr\nclass Bad(smr.Job):\n    def map(self, line):\n"
                   "        raise ValueError('bad line')\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x\ny\n")
    work = str(tmp_path / "work")
    with pytest.raises(JobFailed) as info:
        run_job(str(job), input=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                work_dir=work, max_attempts=2)
    st = jobstate.status(open_store(work), info.value.job_id)
    assert st["phase"] == "failed" and "bad line" in st["error"]
    # The task that failed its last attempt failed twice; the other one may have failed too.
    assert st["tasks"]["map"]["failed"] >= 2 and "after 2 attempts" in st["error"]
    r = CliRunner().invoke(main, ["wait", info.value.job_id, "--work-dir", work])
    assert r.exit_code == 1 and "bad line" in r.output


# -- resume ---------------------------------------------------------------------------------------

SLOW_JOB = """
import time, smr
class SlowCount(smr.Job):
    ASSOCIATIVE = True
    def map(self, line):
        time.sleep(0.008)  # about 0.8 s a task: long enough to leave run records
        for w in line.split():
            yield w, 1
    def reduce(self, key, values):
        yield key, sum(values)
"""


@pytest.mark.parametrize("fanout", ["direct", "tree"])
def test_resume_after_a_killed_client_redoes_no_committed_task(tmp_path, fanout):
    job = tmp_path / "slow.py"
    job.write_text(SLOW_JOB)
    rnd = random.Random(5)
    lines = [" ".join(rnd.choice("abcdefg") for _ in range(4)) for _ in range(1600)]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("\n".join(lines) + "\n")
    work_dir = tmp_path / "work"
    cmd = [sys.executable, "-m", "smr", "run", str(job), "-i", str(tmp_path / "in"),
           "-o", str(tmp_path / "out"), "--work-dir", str(work_dir), "--split-size", "800",
           "-c", "2", "--fanout", fanout]
    client = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 60
        done = []
        while time.time() < deadline:
            done = list(work_dir.glob("jobs/*/s0/map-done/*.json"))
            if len(done) >= 3:
                break
            time.sleep(0.02)
        os.killpg(client.pid, signal.SIGKILL)  # the client and its function host die at once
    finally:
        client.wait()
    assert len(done) >= 3, "the client never committed a map task"
    (job_dir,) = (work_dir / "jobs").iterdir()
    job_id = job_dir.name
    before = {p.name: json.loads(p.read_text())["attempt"]
              for p in job_dir.glob("s0/map-done/*.json")}
    n_tasks = len(json.loads((job_dir / "plan.json").read_text())["tasks"])
    assert 3 <= len(before) < n_tasks, "the client should have died mid-way through the maps"
    assert not (tmp_path / "out" / "_SUCCESS").exists()

    r = CliRunner().invoke(main, ["resume", job_id, "--work-dir", str(work_dir)])
    assert r.exit_code == 0, r.output
    after = {p.name: json.loads(p.read_text())["attempt"]
             for p in job_dir.glob("s0/map-done/*.json")}
    assert len(after) == n_tasks
    assert {k: after[k] for k in before} == before, "a committed task was redone"
    runs = defaultdict(set)
    for p in job_dir.glob("s0/map-run/*.json"):
        name, attempt = p.stem.rsplit("-", 1)
        runs[name].add(attempt)
    for name in before:
        assert runs[name[:-5]] == {before[name]}, f"task {name} ran again after it committed"
    expected = defaultdict(int)
    for ln in lines:
        for w in ln.split():
            expected[w] += 1
    assert dict(read_output(tmp_path / "out")) == dict(expected)
    # Resuming a finished job does nothing and succeeds.
    assert resume_job(job_id, str(work_dir))["job_id"] == job_id


def test_a_failing_coordinator_is_retried_then_fails_the_job(tmp_path, corpus):
    from smr.platforms.base import InvocationError, destination_record
    from smr.worker.fanout import commit_event
    work_url = str(tmp_path / "work")
    work = open_store(work_url)
    settings = make_settings(split_size=4000, work_dir=work_url, platform="inline")
    create_job(work, job_id="coord-fails", job=load_job(str(EXAMPLES / "wordcount.py")),
               code=None, settings=settings, inputs=[str(corpus)],
               output_url=str(tmp_path / "out"), work_url=work_url, start="event")
    key = layout.commit_key("coord-fails", 0, "map", 0)
    event = commit_event({"work": work_url}, key)
    pool = _Pool(0)
    handler(destination_record(event, InvocationError("timeout", "took too long")),
            pool.context())
    assert [e.get("delivery") for e in pool.events] == [2]  # delivered again, not dropped
    assert jobstate.status(work, "coord-fails")["phase"] != "failed"
    last = {**event, "delivery": 3}
    handler(destination_record(last, InvocationError("timeout", "took too long")), pool.context())
    st = jobstate.status(work, "coord-fails")
    assert st["phase"] == "failed" and "coordinator failed 3 times" in st["error"]


def test_strategies_from_the_config_file_and_the_command_line(tmp_path, corpus):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"job: {EXAMPLES / 'wordcount.py'}\ninput: [{corpus}]\n"
                   f"output: {tmp_path / 'out'}\nwork_dir: {tmp_path / 'work'}\n"
                   "fanout: tree\nsplit_size: 3000\nreducers: 2\n")
    r = CliRunner().invoke(main, ["run", str(cfg), "--reduce", "tree", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert (s["fanout"], s["reduce"]) == ("tree", "tree")
    assert dict(read_output(tmp_path / "out")) == dict(expected_word_counts(corpus))
    bad = tmp_path / "bad.yaml"
    bad.write_text(cfg.read_text().replace("fanout: tree", "fanout: sideways"))
    r = CliRunner().invoke(main, ["run", str(bad)])
    assert r.exit_code == 1 and "field 'fanout'" in r.output


def test_a_two_step_job_under_the_coordinator(tmp_path, corpus):
    import heapq
    s = run_job(str(EXAMPLES / "top_words.py"), input=[str(corpus)], output=str(tmp_path / "out"),
                work_dir=str(tmp_path / "work"), reducers=3, split_size=3000, fanout="tree")
    counts = expected_word_counts(corpus)
    assert read_output(tmp_path / "out") == heapq.nsmallest(
        10, counts.items(), key=lambda wc: (-wc[1], wc[0]))
    assert s["tasks"]["reduce"] == 3 + 1 and len(s["steps"]) == 2
    st = jobstate.status(open_store(str(tmp_path / "work")), s["job_id"])
    assert st["tasks"]["step 2 map"]["done"] == 3 and st["tasks"]["step 2 reduce"]["done"] == 1


def test_an_event_job_whose_task_always_fails_ends_failed(tmp_path):
    from smr.platforms.base import InvocationError, destination_record
    job = tmp_path / "broken.py"
    job.write_text("import smr\nclass Broken(smr.Job):\n    def map(self, line):\n"
                   "        if line == 'poison':\n            raise ValueError('poisoned line')\n"
                   "        yield line, 1\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("ok\n" * 50 + "poison\n" + "ok\n" * 50)
    work_url = str(tmp_path / "work")
    work = open_store(work_url)
    settings = make_settings(split_size=100, work_dir=work_url, max_attempts=3, platform="inline")
    create_job(work, job_id="broken", job=load_job(str(job)), code=None, settings=settings,
               inputs=[str(tmp_path / "in")], output_url=str(tmp_path / "out"),
               work_url=work_url, start="event")
    pool = _Pool(7)
    jobstate.advance(work, "broken", pool, notify=True)
    while pool.events:
        event = pool.events.pop(pool.rnd.randrange(len(pool.events)))
        try:
            handler(json.loads(json.dumps(event)), pool.context())
        except Exception as e:  # what the host does with a failed asynchronous invocation
            handler(destination_record(event, InvocationError("error", str(e))), pool.context())
    st = jobstate.status(work, "broken")
    assert st["phase"] == "failed"
    assert "failed after 3 attempts" in st["error"] and "poisoned line" in st["error"]
    poisoned = [k for k, n in pool.launched.items() if n > 1]
    assert len(poisoned) == 1 and pool.launched[poisoned[0]] == 3
    assert not (tmp_path / "out" / "_SUCCESS").exists()
