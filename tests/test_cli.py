"""The `smr` command: exit codes, one-line errors, config files, --json."""
import json
import subprocess
import sys

import pytest

from helpers import EXAMPLES, expected_word_counts, read_output, write


def smr(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "smr", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_run_json_summary(tmp_path, corpus):
    r = smr("run", EXAMPLES / "wordcount.py", "--input", corpus, "--output", tmp_path / "out",
            "--reducers", 2, "--split-size", "4KB", "--json", "--work-dir", tmp_path / "w")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    for field in ("job_id", "status", "output", "tasks", "retries", "cost_usd"):
        assert field in s
    assert s["status"] == "succeeded" and s["tasks"]["reduce"] == 2 and s["tasks"]["map"] >= 2
    assert dict(read_output(tmp_path / "out")) == dict(expected_word_counts(corpus))
    assert json.loads((tmp_path / "out" / "_SUCCESS").read_text())["job_id"] == s["job_id"]


def test_config_file_with_flag_override(tmp_path, corpus):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"job: {EXAMPLES / 'wordcount.py'}:WordCount\ninput: [{corpus}]\n"
                   f"output: out\nreducers: 5\nsplit_size: 2KB\nmemory: 256\n")
    r = smr("run", cfg, "--reducers", 3, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["tasks"]["reduce"] == 3  # the flag beats the file
    assert s["memory_mb"] == 256
    assert s["output"] == str(tmp_path / "out")  # relative to the config file
    assert dict(read_output(tmp_path / "out")) == dict(expected_word_counts(corpus))


@pytest.mark.parametrize("config,needle", [
    ("job: x.py\nreducers: two\n", "field 'reducers': Input should be a valid integer"),
    ("job: x.py\nreducer: 2\n", "field 'reducer': unknown field"),
    ("job: x.py\nmemory: 64\n", "field 'memory': Input should be greater than or equal to 128"),
    ("job: x.py\nsplit_size: lots\n", "field 'split_size'"),
    ("reducers: 2\n", "field 'job': missing"),
    ("job: [unclosed\n", "not valid YAML"),
])
def test_bad_config_names_the_field(tmp_path, config, needle):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(config)
    r = smr("run", cfg, "--input", tmp_path, "--output", tmp_path / "o")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smr: error:"), r.stderr
    assert needle in lines[0]


def test_errors_are_one_line_and_name_the_cause(tmp_path, corpus):
    cases = [
        (["run", tmp_path / "nope.py", "-i", corpus, "-o", tmp_path / "o"], "job file not found"),
        (["run", EXAMPLES / "wordcount.py", "-i", tmp_path / "missing", "-o", tmp_path / "o"],
         f"input not found: {tmp_path / 'missing'}"),
        (["run", EXAMPLES / "wordcount.py", "-i", corpus, "-o", corpus / "sub"], "overlaps input"),
        (["run", "os.path:join", "-i", corpus, "-o", tmp_path / "o"], "not a subclass of smr.Job"),
        (["run", EXAMPLES / "wordcount.py", "-i", corpus, "-o", tmp_path / "o", "--work-dir",
          tmp_path / "o" / "w"], "overlaps the work dir"),
        (["run", "no_such_mod:Job", "-i", corpus, "-o", tmp_path / "o"], "cannot import module"),
    ]
    for args, needle in cases:
        r = smr(*args)
        assert r.returncode == 1, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, r.stderr)


def test_existing_output_is_refused_without_overwrite(tmp_path, corpus):
    out = tmp_path / "out"
    args = ["run", EXAMPLES / "wordcount.py", "-i", corpus, "-o", out]
    assert smr(*args).returncode == 0
    write(out / "stale-extra", b"old")
    r = smr(*args)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert smr(*args, "--overwrite").returncode == 0
    assert not (out / "stale-extra").exists()
    assert dict(read_output(out)) == dict(expected_word_counts(corpus))


def test_failed_job_leaves_no_success_marker(tmp_path):
    job = tmp_path / "boom.py"
    job.write_text("import smr\nclass Boom(smr.Job):\n    def map(self, line):\n"
                   "        raise RuntimeError('kaboom')\n")
    write(tmp_path / "in" / "a.txt", b"x\n")
    r = smr("run", job, "-i", tmp_path / "in", "-o", tmp_path / "out", "--max-attempts", 2)
    assert r.returncode == 1
    assert "failed after 2 attempts" in r.stderr and "kaboom" in r.stderr
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_plain_progress_lines_when_not_a_tty(tmp_path, corpus):
    r = smr("run", EXAMPLES / "wordcount.py", "-i", corpus, "-o", tmp_path / "out")
    assert r.returncode == 0
    assert "[smr] map:" in r.stderr and "[smr] reduce: done" in r.stderr
    assert r.stdout.startswith("job ") and "succeeded" in r.stdout
