"""Word count end to end on the embedded runtime, checked against plain Python."""
import json

import pytest

from smr.driver import run_job

from helpers import EXAMPLES, expected_word_counts, input_files, read_output


@pytest.mark.parametrize("split_size,reducers", [(1024, 2), (97, 3), (None, 2)])
def test_wordcount_matches_plain_python(tmp_path, corpus, platform_name, split_size, reducers):
    summary = run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)],
                      output=str(tmp_path / "out"), work_dir=str(tmp_path / "work"),
                      reducers=reducers, split_size=split_size, concurrency=2,
                      platform=platform_name)
    got = read_output(tmp_path / "out")
    expected = expected_word_counts(corpus)
    assert dict(got) == dict(expected)
    assert len(got) == len(expected), "a key appeared in more than one part"
    assert summary["tasks"]["reduce"] == reducers
    assert summary["tasks"]["map"] >= 2
    assert summary["records"]["output"] == len(expected)
    n_lines = sum(len(p.read_bytes().decode().split("\n")) - p.read_bytes().endswith(b"\n")
                  for p in input_files(corpus) if p.stat().st_size)
    assert summary["records"]["input"] == n_lines
    assert summary["input"]["bytes"] == sum(p.stat().st_size for p in input_files(corpus))
    parts = sorted(p.name for p in (tmp_path / "out").glob("part-*"))
    assert parts == [f"part-{i:05d}" for i in range(reducers)]
    assert json.loads((tmp_path / "out" / "_SUCCESS").read_text())["job_id"] == summary["job_id"]


def test_each_part_is_sorted_by_key_and_keys_are_partitioned(tmp_path, corpus, platform_name):
    run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output=str(tmp_path / "out"),
            reducers=4, split_size=2048, platform=platform_name)
    seen = set()
    for part in sorted((tmp_path / "out").glob("part-*")):
        keys = [json.loads(line.split("\t")[0]) for line in part.read_text().splitlines()]
        assert keys == sorted(keys)
        assert not seen & set(keys)
        seen |= set(keys)


def test_intermediates_are_cleaned_but_state_is_kept(tmp_path, corpus, platform_name):
    s = run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output=str(tmp_path / "out"),
                work_dir=str(tmp_path / "work"), split_size=4096, platform=platform_name)
    job_dir = tmp_path / "work" / "jobs" / s["job_id"]
    assert (job_dir / "job.json").exists() and (job_dir / "summary.json").exists()
    assert not list(job_dir.rglob("*.bin")), "shuffle data left behind"
    assert len(list((job_dir / "s0" / "map-done").glob("*.json"))) == s["tasks"]["map"]
