"""The job summary: counts agree with the data, the cost follows the price table, progress shows."""
import io
import json
import math

from rich.console import Console

from smr.driver import run_job
from smr.metrics import PRICES
from smr.progress import RichProgress

from helpers import EXAMPLES, input_files


def test_cost_is_recomputable_from_the_commit_records(tmp_path, corpus, platform_name):
    s = run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output=str(tmp_path / "out"),
                work_dir=str(tmp_path / "work"), reducers=3, split_size=4096, memory=512,
                platform=platform_name)
    job = tmp_path / "work" / "jobs" / s["job_id"]
    commits = [json.loads(p.read_text()) for p in sorted(job.rglob("*-done/*.json"))]
    assert len(commits) == s["tasks"]["map"] + s["tasks"]["reduce"]
    # Lambda bills whole milliseconds times configured memory.
    gbs = sum(math.ceil(c["metrics"]["duration_ms"]) / 1000 * 512 / 1024 for c in commits)
    assert abs(s["cost"]["lambda_gb_seconds"] - gbs) < 1e-3
    req = s["cost"]["s3_requests"]
    # Every task writes its commit record, and its output unless that is small enough to travel
    # inside the commit record; the driver writes spec and code first.
    outputs = sum(1 for c in commits if c.get("data_key") or c.get("output_key"))
    assert outputs >= s["tasks"]["reduce"]
    assert req["put"] >= len(commits) + outputs + 2
    assert req["get"] >= s["tasks"]["reduce"] + s["tasks"]["map"]
    expected = (gbs * PRICES["lambda_gb_second"] + s["invocations"] * PRICES["lambda_request"]
                + (req["put"] + req["list"]) * PRICES["s3_write_request"]
                + (req["get"] + req["head"]) * PRICES["s3_read_request"])
    assert abs(s["cost_usd"] - expected) < 2e-6
    assert s["invocations"] >= len(commits)
    assert s["bytes"]["read"] == sum(p.stat().st_size for p in input_files(corpus))
    written = sum(p.stat().st_size for p in (tmp_path / "out").glob("part-*"))
    assert s["bytes"]["written"] == written
    assert set(s["phases"]) >= {"plan", "map", "reduce", "finalize"}


def test_rich_progress_draws_a_bar_per_phase(tmp_path, corpus):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with RichProgress(console=console) as progress:
        run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output=str(tmp_path / "out"),
                split_size=4096, progress=progress, platform="inline")
    text = buf.getvalue()
    assert "map" in text and "reduce" in text and "MB/s" in text
    assert "\x1b[" in text  # drawn with terminal control codes, not plain lines
