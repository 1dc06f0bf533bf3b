"""Run records are written for attempts that run long, and not for ones that finish at once."""
import time

from smr import jobstate, layout
from smr.storage import open_store
from smr.worker.run_records import RunRecorder


def _event(task: int, attempt: str) -> dict:
    return {"job_id": "j1", "step": 0, "role": "map", "task": task, "attempt": attempt}


def _run_records(work) -> list[str]:
    prefix = layout.attempt_prefix("j1", 0, "map", "run")
    return sorted(info.key[len(prefix):] for info in work.list(prefix))


def test_only_attempts_that_outlive_the_delay_leave_a_run_record(tmp_path):
    work = open_store(str(tmp_path))
    rec = RunRecorder(after_s=0.1)
    quick = rec.started(work, _event(0, "aaa"))
    rec.finished(quick)
    slow = rec.started(work, _event(1, "bbb"))
    deadline = time.time() + 10
    while not _run_records(work) and time.time() < deadline:
        time.sleep(0.02)
    rec.finished(slow)
    time.sleep(0.3)  # past the quick attempt's due time too
    assert _run_records(work) == [f"{jobstate.task_name(_event(1, 'bbb'))}-bbb.json"]
    record = layout.read_json(work, layout.attempt_key("j1", 0, "map", "run",
                                                       jobstate.task_name(_event(1, "bbb")), "bbb"))
    assert record["attempt"] == "bbb" and record["started"] <= time.time()


def test_a_committed_task_gets_no_run_record(tmp_path):
    work = open_store(str(tmp_path))
    ev = _event(2, "ccc")
    layout.write_json(work, jobstate.commit_key_of(ev), {"task": 2, "attempt": "zzz"})
    rec = RunRecorder(after_s=0.01)
    token = rec.started(work, ev)
    time.sleep(0.3)
    rec.finished(token)
    assert _run_records(work) == []
