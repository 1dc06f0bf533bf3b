"""A task runs with rarer garbage collections and gives the process its own settings back."""
import gc

import smr
from smr.driver import run_job
from smr.worker.runtime import TASK_GC_THRESHOLDS

from helpers import read_output


class ThresholdsSeen(smr.Job):
    def map(self, line):
        yield "thresholds", list(gc.get_threshold())

    def reduce(self, key, values):
        seen = [tuple(v) for v in values]
        yield key, sorted(set(seen + [gc.get_threshold()]))


def test_tasks_raise_gc_thresholds_and_restore_them(tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"{i}.txt").write_text("a\nb\n")
    before = gc.get_threshold()
    s = run_job(ThresholdsSeen(), input=[str(tmp_path / "in")], output=str(tmp_path / "out"),
                reducers=2, split_size=4, platform="inline")
    assert s["tasks"]["map"] >= 2
    assert gc.get_threshold() == before  # the inline platform runs tasks in this process
    assert dict(read_output(tmp_path / "out")) == {"thresholds": [list(TASK_GC_THRESHOLDS)]}
