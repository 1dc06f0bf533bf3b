"""Bad input through the `smr` command: one clear error line naming the cause, a non-zero exit,
and nothing half-written that looks finished; `bad_records: skip` counts and keeps bad records."""
import json
import subprocess
import sys

import pytest

from helpers import EXAMPLES, write

WORDCOUNT = EXAMPLES / "wordcount.py"


def smr(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "smr", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def error_line(r) -> str:
    assert r.returncode != 0, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("smr: error:")]
    assert len(errors) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return errors[0]


def assert_nothing_finished(out):
    assert not (out / "_SUCCESS").exists()
    assert not list(out.glob("part-*")) if out.exists() else True


JOBS = {
    "not_generator.py": "import smr\nclass J(smr.Job):\n    def map(self, line):\n"
                        "        return None\n",
    "bad_key.py": "import smr\nclass J(smr.Job):\n    def map(self, line):\n"
                  "        yield object(), 1\n",
    "raises.py": "import smr\nclass J(smr.Job):\n    def map(self, line):\n"
                 "        if 'boom' in line:\n            raise ValueError('no booms')\n"
                 "        yield line, 1\n    def reduce(self, k, vs):\n        yield k, sum(vs)\n",
    "two_jobs.py": "import smr\nclass A(smr.Job):\n    pass\nclass B(smr.Job):\n    pass\n",
    "syntax.py": "import smr\nclass J(smr.Job)\n    pass\n",
    "bad_reduce.py": "import smr\nclass J(smr.Job):\n    def map(self, line):\n"
                     "        yield line, 1\n    def reduce(self, k, vs):\n        yield k\n",
}


@pytest.fixture
def jobs(tmp_path):
    d = tmp_path / "jobs"
    for name, code in JOBS.items():
        write(d / name, code.encode())
    return d


@pytest.fixture
def data(tmp_path):
    write(tmp_path / "in" / "a.txt", b"fine line\nboom here\nanother fine\n")
    write(tmp_path / "in" / "b.txt", b"more text\n")
    return tmp_path / "in"


@pytest.mark.parametrize("job,needle", [
    ("not_generator.py", "J.map must yield (key, value) pairs (be a generator), but returned NoneType"),
    ("bad_key.py", "J.map yielded a pair that cannot be shuffled: cannot serialize"),
    ("raises.py", "a.txt at byte 10: J.map raised ValueError: no booms"),
    ("bad_reduce.py", "expected a (key, value) pair"),
])
def test_job_errors_name_the_cause(tmp_path, jobs, data, job, needle):
    out = tmp_path / "out"
    line = error_line(smr("run", jobs / job, "-i", data, "-o", out, "--max-attempts", 1,
                          "--split-size", 12))
    assert needle in line
    assert_nothing_finished(out)


@pytest.mark.parametrize("ref,needle", [
    ("two_jobs.py", "defines several jobs (A, B); name one as"),
    ("two_jobs.py:C", "no 'C' in"),
    ("syntax.py", "failed to import: SyntaxError"),
    ("missing.py", "job file not found"),
    ("no.such.module:Job", "cannot import module 'no.such.module'"),
    ("os:path", "not a subclass of smr.Job"),
])
def test_unknown_job_references(tmp_path, jobs, data, ref, needle):
    target = f"{jobs / ref}" if ".py" in ref else ref
    line = error_line(smr("run", target, "-i", data, "-o", tmp_path / "out"))
    assert needle in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name,config,needle", [
    ("bad.json", '{"job": "x.py", "reducers": 2,', "not valid JSON"),
    ("list.yaml", "- job: x.py\n", "must hold a mapping of settings, not list"),
    ("faults.yaml", "job: x.py\ninject_faults: 'kill=3'\n",
     "field 'inject_faults': Value error, fault kill=3: the rate must be between 0 and 1"),
    ("spec.yaml", "job: x.py\nspeculative_after: -1\n", "field 'speculative_after'"),
    ("policy.yaml", "job: x.py\nbad_records: ignore\n", "field 'bad_records'"),
])
def test_malformed_config(tmp_path, data, name, config, needle):
    cfg = tmp_path / name
    cfg.write_text(config)
    line = error_line(smr("run", cfg, "-i", data, "-o", tmp_path / "out"))
    assert needle in line


def test_bad_fault_flag(tmp_path, data):
    line = error_line(smr("run", WORDCOUNT, "-i", data, "-o", tmp_path / "out",
                          "--inject-faults", "explode=0.5"))
    assert "unknown fault 'explode'" in line


@pytest.mark.parametrize("inputs,output,needle", [
    (["{tmp}/missing"], "{tmp}/out", "input not found: {tmp}/missing"),
    (["{tmp}/in/*.csv"], "{tmp}/out", "no input matches {tmp}/in/*.csv"),
    (["{tmp}/in"], "{tmp}/in/out", "overlaps input"),
    (["{tmp}/in/a.txt"], "{tmp}", "overlaps input"),
])
def test_missing_inputs_and_overlapping_output(tmp_path, data, inputs, output, needle):
    args = []
    for i in inputs:
        args += ["-i", i.format(tmp=tmp_path)]
    line = error_line(smr("run", WORDCOUNT, *args, "-o", output.format(tmp=tmp_path)))
    assert needle.format(tmp=tmp_path) in line
    assert not (tmp_path / "out").exists()


def undecodable(tmp_path):
    body = b"good words\nbad \xff\xfe bytes\nmore good\n"
    write(tmp_path / "in" / "u.txt", body)
    return tmp_path / "in", body.index(b"bad")


def test_undecodable_bytes_fail_with_file_and_offset(tmp_path):
    d, offset = undecodable(tmp_path)
    line = error_line(smr("run", WORDCOUNT, "-i", d, "-o", tmp_path / "out", "--max-attempts", 1))
    assert f"{d / 'u.txt'} at byte {offset + 4}: invalid UTF-8" in line
    assert_nothing_finished(tmp_path / "out")


def test_bad_records_skip_counts_them_and_writes_bad_records(tmp_path, jobs):
    write(tmp_path / "in" / "a.txt", b"ok one\nboom 1\nok two\n\xff\xfe\nboom 2\nok three\n")
    write(tmp_path / "in" / "b.txt", b"ok four\n" * 10 + b"boom 3\n")
    out = tmp_path / "out"
    r = smr("run", jobs / "raises.py", "-i", tmp_path / "in", "-o", out, "--bad-records", "skip",
            "--split-size", 16, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["records"]["bad"] == 4 and s["tasks"]["map"] >= 2
    bad = [json.loads(ln) for ln in (out / "_bad_records").read_text().splitlines()]
    a, b = (tmp_path / "in" / "a.txt").read_bytes(), (tmp_path / "in" / "b.txt").read_bytes()
    want = [(str(tmp_path / "in" / "a.txt"), a.index(b"boom 1"), "boom 1"),
            (str(tmp_path / "in" / "a.txt"), a.index(b"\xff"), "\ufffd\ufffd"),
            (str(tmp_path / "in" / "a.txt"), a.index(b"boom 2"), "boom 2"),
            (str(tmp_path / "in" / "b.txt"), b.index(b"boom 3"), "boom 3")]
    assert sorted((x["url"], x["offset"], x["record"]) for x in bad) == sorted(want)
    errors = {x["record"]: x["error"] for x in bad}
    assert errors["boom 1"] == "J.map raised ValueError: no booms"
    assert errors["\ufffd\ufffd"].startswith("invalid UTF-8")
    got = {}
    for p in sorted(out.glob("part-*")):
        for ln in p.read_text().splitlines():
            k, v = ln.split("\t")
            got[json.loads(k)] = json.loads(v)
    assert got == {"ok one": 1, "ok two": 1, "ok three": 1, "ok four": 10}
    assert (out / "_SUCCESS").exists()
