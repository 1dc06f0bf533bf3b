"""The benchmark harness runs end to end at a tiny size (smr + the hand-written script only), so
it cannot rot: every workload runs, every output is checked, and the report is written."""
import subprocess
import sys

from helpers import ROOT


def test_harness_runs_and_checks_every_workload(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    p = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--scale", "0.0005", "--systems", "smr,plain",
         "--tiny-tasks", "6", "--data", str(tmp_path / "data"), "--report", str(report),
         "--chart", str(tmp_path / "chart.png"), "--timeout", "300"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    text = report.read_text()
    for title in ("## Word count", "## BDB query 2a", "## TeraSort", "## Tiny map tasks",
                  "## Scaling: word count", "## Targets"):
        assert title in text
    assert "WRONG" not in text and "FAILED" not in text
    # smr's rows (record and columnar) were each checked against the script's output.
    assert text.count("agrees with hand-written multiprocessing + Counter") == 2 + 2 + 1
    assert text.count("globally sorted, same records as the input") == 3
    scaling = text.split("## Scaling: word count")[1].split("## Targets")[0]
    assert scaling.count("| yes |") == 8  # 4 sizes x 2 APIs, every task within its memory
