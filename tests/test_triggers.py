"""Event-triggered jobs: an upload into a watched prefix runs a job with no client process.

`smr serve` (the local function host) runs in a subprocess; the test only registers the trigger
and writes objects, then reads the store.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from smr import jobstate
from smr.cli import main
from smr.driver import run_job
from smr.storage import open_store

from helpers import EXAMPLES, input_files, read_output

WAIT_S = 90


def _object_from_corpus(corpus):
    """One text object holding every awkward file of the corpus (CRLF, unicode, huge key...)."""
    return b"\n".join(p.read_bytes() for p in input_files(corpus)) + b"\n"


def _expected(data: bytes) -> Counter:
    import re
    word = re.compile(r"\w+")
    c = Counter()
    for line in data.decode().split("\n"):
        c.update(word.findall(line.rstrip("\r").lower()))
    return c


@pytest.fixture
def serve(tmp_path):
    procs = []

    def start(work):
        p = subprocess.Popen([sys.executable, "-m", "smr", "serve", "--work-dir", str(work),
                              "-c", "2", "--poll-interval", "0.2"],
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "ab"),
                             env=dict(os.environ), start_new_session=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _deploy(*args):
    r = CliRunner().invoke(main, ["deploy", *map(str, args)])
    assert r.exit_code == 0, r.output
    return r.output


def _wait_jobs(work, n, serve_log=None):
    store = open_store(str(work))
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        jobs = jobstate.list_jobs(store)
        if len(jobs) >= n and all(j["state"] != "running" for j in jobs):
            return jobs
        time.sleep(0.1)
    log = serve_log.read_text() if serve_log and serve_log.exists() else ""
    raise AssertionError(f"jobs did not finish: {jobstate.list_jobs(store)}\n{log[-3000:]}")


@pytest.mark.parametrize("strategy", [[], ["--fanout", "tree", "--reduce", "tree"]])
def test_an_upload_runs_a_job_with_no_client(tmp_path, corpus, serve, strategy):
    work, watch, out = tmp_path / "work", tmp_path / "incoming", tmp_path / "results"
    _deploy(EXAMPLES / "wordcount.py", "--watch", watch, "--output", out, "--work-dir", work,
            "--split-size", "4000", "-r", "2", *strategy)
    serve(work)
    data = _object_from_corpus(corpus)
    open_store(str(watch)).put("2024/day one.txt", data)
    (job,) = _wait_jobs(work, 1, tmp_path / "serve.log")
    assert job["state"] == "succeeded" and job["start"] == "event"
    got = read_output(out / job["job_id"])
    assert dict(got) == dict(_expected(data))
    # The same object run by a client gives the same output.
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "day one.txt").write_bytes(data)
    run_job(str(EXAMPLES / "wordcount.py"), input=[str(tmp_path / "copy")],
            output=str(tmp_path / "client-out"), work_dir=str(tmp_path / "client-work"),
            split_size=4000, reducers=2)
    assert sorted(got) == sorted(read_output(tmp_path / "client-out"))
    st = jobstate.status(open_store(str(work)), job["job_id"])
    assert st["phase"] == "succeeded" and st["tasks"]["map"]["done"] >= 2
    assert st["fanout"] == ("tree" if strategy else "direct")


def test_duplicated_and_reordered_notifications_start_one_job(tmp_path, corpus, serve):
    work, watch, out = tmp_path / "work", tmp_path / "incoming", tmp_path / "results"
    _deploy(EXAMPLES / "wordcount.py", "--watch", watch, "--output", out, "--work-dir", work,
            "--split-size", "3000", "--fanout", "tree")
    data = _object_from_corpus(corpus)
    store = open_store(str(watch))
    store.put("a.txt", data)
    store.put("b.txt", b"beta beta\ngamma\n")
    store.put("_ignored.txt", b"hidden objects start nothing")
    # The server is not running yet, so the events wait in the queue: deliver each one twice,
    # the copies before the originals.
    from smr.storage import local_events
    queue = local_events.queue_dir(open_store(str(work)).url)
    names = sorted(n for n in os.listdir(queue) if n.endswith(".json"))
    assert len(names) == 3
    for i, n in enumerate(names):
        shutil.copy(os.path.join(queue, n), os.path.join(queue, f"{0:020d}-dup{i}.json"))
    serve(work)
    jobs = _wait_jobs(work, 2, tmp_path / "serve.log")
    assert len(jobs) == 2 and {j["state"] for j in jobs} == {"succeeded"}
    outputs = sorted((dict(read_output(out / j["job_id"])) for j in jobs), key=len)
    assert outputs == [{"beta": 2, "gamma": 1}, dict(_expected(data))]
    deadline = time.time() + WAIT_S
    while os.listdir(queue) and time.time() < deadline:
        time.sleep(0.05)
    assert os.listdir(queue) == [], "delivered events stay queued"


def test_a_window_batches_objects_into_one_job(tmp_path, serve):
    work, watch, out = tmp_path / "work", tmp_path / "incoming", tmp_path / "results"
    width = 4.0
    _deploy(EXAMPLES / "wordcount.py", "--watch", watch, "--output", out, "--work-dir", work,
            "--window", width, "--split-size", "100", "--name", "batched")
    store = open_store(str(watch))
    # Windows are aligned periods of the clock; write both objects early in one of them.
    time.sleep(width - time.time() % width + 0.05)
    store.put("x/1.txt", b"one two\n" * 30)
    store.put("x/2.txt", b"two three\n" * 30)
    serve(work)
    (job,) = _wait_jobs(work, 1, tmp_path / "serve.log")
    assert job["job_id"].startswith("batched-w")
    assert dict(read_output(out / job["job_id"])) == {"one": 30, "two": 60, "three": 30}


def test_a_polling_watcher_sees_plain_file_writes(tmp_path, corpus, serve):
    work, watch, out = tmp_path / "work", tmp_path / "incoming", tmp_path / "results"
    watch.mkdir()
    (watch / "old.txt").write_bytes(b"there before the deploy: not new\n")
    _deploy(EXAMPLES / "wordcount.py", "--watch", watch, "--output", out, "--work-dir", work,
            "--poll", "--split-size", "2000")
    data = _object_from_corpus(corpus)
    (watch / "new.txt").write_bytes(data)   # not through smr: only the watcher can see it
    serve(work)   # started after the write: the watcher compares with the deploy's listing
    (job,) = _wait_jobs(work, 1, tmp_path / "serve.log")
    assert "new-txt" in job["job_id"]
    assert dict(read_output(out / job["job_id"])) == dict(_expected(data))


def test_undeploy_stops_new_jobs(tmp_path):
    work, watch, out = tmp_path / "work", tmp_path / "incoming", tmp_path / "results"
    _deploy(EXAMPLES / "wordcount.py", "--watch", watch, "--output", out, "--work-dir", work)
    r = CliRunner().invoke(main, ["triggers", "--work-dir", str(work)])
    assert "wordcount" in r.output
    r = CliRunner().invoke(main, ["undeploy", "wordcount", "--work-dir", str(work)])
    assert r.exit_code == 0, r.output
    open_store(str(watch)).put("late.txt", b"late\n")
    from smr.storage import local_events
    queue = local_events.queue_dir(open_store(str(work)).url)
    assert [n for n in os.listdir(queue) if n.endswith(".json")] == []
    assert not open_store(str(work)).exists("triggers/wordcount.json")
    r = CliRunner().invoke(main, ["undeploy", "wordcount", "--work-dir", str(work)])
    assert r.exit_code == 1 and "no trigger 'wordcount'" in r.output


@pytest.mark.parametrize("args,message", [
    (["--output", "{watch}/out"], "overlaps the watched prefix"),
    (["--output", "{tmp}/o", "--reduce", "tree", "--name", "Bad Name"], "trigger name"),
    (["--output", "{tmp}/o", "--platform", "lambda"], "is not an s3:// URL"),
    (["--output", "{tmp}/o", "--window", "-1"], "window"),
])
def test_deploy_errors_are_one_line(tmp_path, args, message):
    watch = tmp_path / "in"
    args = [a.format(watch=watch, tmp=tmp_path) for a in args]
    r = CliRunner().invoke(main, ["deploy", str(EXAMPLES / "wordcount.py"), "--watch", str(watch),
                                  "--work-dir", str(tmp_path / "work"), *args])
    assert r.exit_code == 1, r.output
    assert message in r.output and len(r.output.strip().splitlines()) == 1


def test_deploy_refuses_tree_reduce_for_a_non_associative_job(tmp_path):
    job = tmp_path / "plain.py"
    job.write_text("import smr\nclass C(smr.Job):\n    def map(self, line):\n"
                   "        yield line, 1\n    def reduce(self, k, vs):\n        yield k, sum(vs)\n")
    r = CliRunner().invoke(main, ["deploy", str(job), "--watch", str(tmp_path / "in"),
                                  "--output", str(tmp_path / "out"), "--reduce", "tree",
                                  "--work-dir", str(tmp_path / "work")])
    assert r.exit_code == 1 and "ASSOCIATIVE = True" in r.output


def test_event_shape_matches_s3(tmp_path):
    from smr import triggers
    rec = {"eventSource": "aws:s3",
           "s3": {"bucket": {"name": "bkt"}, "object": {"key": "in/my+file%281%29.txt"}}}
    assert triggers.object_url(rec) == "s3://bkt/in/my file(1).txt"
    from smr.storage import local_events
    local = json.loads(json.dumps(local_events.make_record("/d", "a b/c.txt", 3, "e", "t",
                                                           "smr:local")))
    assert local["Records"][0]["s3"]["object"]["key"] == "a+b/c.txt"  # encoded as S3 does
    assert triggers.object_url(local["Records"][0]) == os.path.join("/d", "a b", "c.txt")


def test_a_restarted_server_finishes_the_jobs_of_the_one_that_died(tmp_path, serve):
    from test_coordination import SLOW_JOB
    job = tmp_path / "slow.py"
    job.write_text(SLOW_JOB)
    work, watch, out = tmp_path / "work", tmp_path / "incoming", tmp_path / "results"
    _deploy(job, "--watch", watch, "--output", out, "--work-dir", work, "--split-size", "800")
    lines = [f"w{i % 7} v{i % 3}" for i in range(1600)]
    first = serve(work)
    open_store(str(watch)).put("big.txt", ("\n".join(lines) + "\n").encode())
    deadline = time.time() + WAIT_S
    done = []
    while time.time() < deadline:
        done = list(work.glob("jobs/*/s0/map-done/*.json"))
        if len(done) >= 3:
            break
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the server and every function it ran die at once
    first.wait()
    (job_dir,) = (work / "jobs").iterdir()
    before = {p.name: json.loads(p.read_text())["attempt"]
              for p in job_dir.glob("s0/map-done/*.json")}
    n_tasks = len(json.loads((job_dir / "plan.json").read_text())["tasks"])
    assert 3 <= len(before) < n_tasks
    serve(work)
    (info,) = _wait_jobs(work, 1, tmp_path / "serve.log")
    assert info["state"] == "succeeded"
    after = {p.name: json.loads(p.read_text())["attempt"]
             for p in job_dir.glob("s0/map-done/*.json")}
    assert {k: after[k] for k in before} == before, "a committed task was redone"
    expected = Counter(w for ln in lines for w in ln.split())
    assert dict(read_output(out / info["job_id"])) == dict(expected)
