"""The commit protocol: attempts write under their own ids, the first commit wins, losers leave
nothing, re-running a committed task changes nothing, and an output is finished only with
_SUCCESS and then holds exactly the committed parts."""
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

import smr
from smr import layout
from smr.driver import JobFailed, run_job
from smr.planner import list_inputs, plan_map_tasks
from smr.storage import open_store
from smr.storage.local import LocalStore
from smr.worker.handler import handler

from helpers import EXAMPLES, expected_word_counts, read_output, write

CTX = SimpleNamespace(memory_limit_in_mb=512, cold_start=False)
SPLIT = 64


def files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(params=["inline", "object"])
def finished_job(request, tmp_path, monkeypatch):
    """A finished word count with its intermediates kept, and how to address its tasks; its tiny
    map outputs travel in the commit records ("inline") or as objects of their own ("object")."""
    if request.param == "object":
        monkeypatch.setattr(layout, "INLINE_SHUFFLE_BYTES", -1)
    write(tmp_path / "in" / "a.txt", b"a b c\nb c d\nc d e\nd e f\n" * 20)
    s = run_job(str(EXAMPLES / "wordcount.py"), input=[str(tmp_path / "in")],
                output=str(tmp_path / "out"), work_dir=str(tmp_path / "work"), reducers=2,
                split_size=SPLIT, keep_intermediates=True, platform="inline")
    assert s["tasks"]["map"] >= 2
    tasks = plan_map_tasks(list_inputs([str(tmp_path / "in")], open_store), SPLIT)
    base = {"work": str(tmp_path / "work"), "store_options": {}, "job_id": s["job_id"], "step": 0}
    return SimpleNamespace(summary=s, tasks=tasks, base=base, work=tmp_path / "work",
                           out=tmp_path / "out", job_id=s["job_id"], input=tmp_path / "in")


def map_event(job, task, attempt):
    return {**job.base, "role": "map", "task": task, "partitions": 2, "attempt": attempt,
            "splits": job.tasks[task]["splits"]}


def reduce_event(job, part, attempt):
    store = LocalStore(str(job.work))
    sources = []
    for t in range(len(job.tasks)):
        c = layout.read_json(store, layout.commit_key(job.job_id, 0, "map", t))
        sources.append(layout.shuffle_source(c, part))
    return {**job.base, "role": "reduce", "task": part, "attempt": attempt, "sources": sources}


def test_rerunning_committed_tasks_changes_nothing(finished_job):
    job = finished_job
    before_work, before_out = files(job.work), files(job.out)
    for t in range(len(job.tasks)):
        r = handler(map_event(job, t, "late-attempt"), CTX)
        assert r["attempt"] != "late-attempt"
    for p in range(2):
        r = handler(reduce_event(job, p, "late-attempt"), CTX)
        assert r["attempt"] != "late-attempt"
    assert files(job.work) == before_work
    assert files(job.out) == before_out


def test_racing_attempts_leave_exactly_the_winner(finished_job):
    job = finished_job
    store = LocalStore(str(job.work))
    commit = layout.commit_key(job.job_id, 0, "map", 0)
    old = layout.read_json(store, commit)
    store.delete(commit)
    if old["data_key"] is not None:
        store.delete(old["data_key"])
    results = {}

    def attempt(name):
        results[name] = handler(map_event(job, 0, name), CTX)

    threads = [threading.Thread(target=attempt, args=(f"racer{i}",)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    winner = layout.read_json(store, commit)
    assert winner["attempt"].startswith("racer")
    # Every racer was told the same winner, and only the winner's data is left.
    assert {r["attempt"] for r in results.values()} == {winner["attempt"]}
    left = [o.key for o in store.list(f"jobs/{job.job_id}/s0/map/00000-")]
    assert left == ([] if "inline" in winner else [winner["data_key"]])
    assert ("inline" in winner) == (layout.INLINE_SHUFFLE_BYTES > 0)


def test_a_final_reduce_attempt_never_writes_the_output(finished_job):
    job = finished_job
    store = LocalStore(str(job.work))
    commit = layout.commit_key(job.job_id, 0, "reduce", 1)
    old = layout.read_json(store, commit)
    published = (job.out / "part-00001").read_bytes()
    store.delete(commit)
    before_out = files(job.out)
    r = handler(reduce_event(job, 1, "second"), CTX)
    assert r["attempt"] == "second" and r["output_key"] != old["output_key"]
    assert files(job.out) == before_out  # only the driver publishes parts
    assert store.get(r["output_key"]) == published  # and the new attempt's bytes are the same


class FailsOnOnePartition(smr.Job):
    def map(self, line):
        for w in line.split():
            yield w, 1

    def reduce(self, word, ones):
        if word == "poison":
            raise RuntimeError("reduce failed on purpose")
        yield word, sum(ones)


def test_a_failed_job_leaves_no_part_and_no_success(tmp_path):
    write(tmp_path / "in" / "a.txt", b"".join(f"w{i} poison\n".encode() for i in range(200)))
    with pytest.raises(JobFailed, match="reduce failed on purpose"):
        run_job(FailsOnOnePartition(), input=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                reducers=4, split_size=500, max_attempts=2)
    # Three of four partitions succeeded, yet nothing of them is visible as output.
    assert not (tmp_path / "out").exists() or files(tmp_path / "out") == {}


def test_failure_record_names_task_kind_message_and_traceback(tmp_path):
    write(tmp_path / "in" / "a.txt", b"".join(f"w{i} poison\n".encode() for i in range(50)))
    with pytest.raises(JobFailed) as e:
        run_job(FailsOnOnePartition(), input=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                work_dir=str(tmp_path / "work"), reducers=2, split_size=200, max_attempts=2)
    rec = json.loads((tmp_path / "work" / "jobs" / e.value.job_id / "failed.json").read_text())
    assert rec["status"] == "failed" and rec["phase"] == "reduce" and rec["kind"] == "error"
    assert rec["task"] in (0, 1) and rec["attempts"] == 2 and len(rec["errors"]) == 2
    assert "reduce failed on purpose" in rec["message"]
    assert "Traceback" in rec["traceback"] and "RuntimeError" in rec["traceback"]
    assert rec["retries"] == 1


def test_overwrite_never_keeps_an_old_part(tmp_path, monkeypatch, corpus):
    out = tmp_path / "out"
    args = dict(input=[str(corpus)], output=str(out), split_size=20_000, platform="inline")
    run_job(str(EXAMPLES / "wordcount.py"), reducers=5, **args)
    assert (out / "part-00004").exists()
    # A store that fails to delete part-00004 while the old output is cleared (S3 may list a
    # deleted key for a while, a delete may be lost): the new _SUCCESS must still not appear
    # next to it.
    real_delete, missed = LocalStore._delete_many, []

    def lossy(self, keys):
        if not missed and "part-00004" in keys:
            missed.append(True)
            keys = [k for k in keys if k != "part-00004"]
        real_delete(self, keys)
    monkeypatch.setattr(LocalStore, "_delete_many", lossy)
    run_job(str(EXAMPLES / "wordcount.py"), reducers=2, overwrite=True, **args)
    assert missed
    assert sorted(files(out)) == ["_SUCCESS", "part-00000", "part-00001"]
    assert dict(read_output(out)) == dict(expected_word_counts(corpus))
