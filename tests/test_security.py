"""Keys never leave a store's root; secrets never reach specs, summaries, failure records or
error messages; workers load job code only from the job's own directory in the work store."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

import smr
from smr.driver import JobFailed, run_job
from smr.secrets import REDACTED, scrub, scrub_text
from smr.storage import open_store
from smr.storage.base import InvalidKey, copy_object
from smr.storage.faulty import FaultyStore
from smr.worker.handler import handler

from helpers import EXAMPLES, write

ESCAPES = ["../outside", "a/../../outside", "/etc/passwd", "\\\\server\\share", "C:secret",
           "a/./b", "..", ".", "a/..", "a\\..\\..\\outside", "", "a\x00b", "dir/"]


def stores(tmp_path):
    local = open_store(str(tmp_path / "root"))
    yield local
    yield open_store("file://" + str(tmp_path / "root2"))
    yield FaultyStore(open_store(str(tmp_path / "root3")), rate=0.0, seed="s")


@pytest.mark.parametrize("key", ESCAPES)
def test_no_key_escapes_the_store_root(tmp_path, key):
    write(tmp_path / "outside", b"precious")
    src = tmp_path / "upload.bin"
    src.write_bytes(b"payload")
    for store in stores(tmp_path):
        calls = [lambda: store.get(key), lambda: store.get_range(key, 0, 2),
                 lambda: store.put(key, b"x"), lambda: store.put_file(key, str(src)),
                 lambda: store.put_if_absent(key, b"x"), lambda: store.head(key),
                 lambda: store.exists(key), lambda: store.delete(key),
                 lambda: store.open_range(key).read(),
                 lambda: copy_object(store, key, store, "fine"),
                 lambda: copy_object(store, "fine", store, key)]
        store.put("fine", b"ok")
        for call in calls:
            with pytest.raises(InvalidKey):
                call()
    assert (tmp_path / "outside").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "root", "root2", "root3",
                                                          "upload.bin"]


@pytest.mark.parametrize("prefix", ["../", "a/../../", "/abs", "a/\x00"])
def test_no_listing_escapes_the_store_root(tmp_path, prefix):
    for store in stores(tmp_path):
        with pytest.raises(InvalidKey):
            list(store.list(prefix))
        with pytest.raises(InvalidKey):
            store.delete_prefix(prefix)


def test_user_paths_with_dot_dot_are_keys_that_are_refused(tmp_path):
    # What a copy command does with a user's destination: a root URL plus a relative key.
    store = open_store(str(tmp_path / "bucket"))
    for user_key in ["../../etc/cron.d/x", "ok/../../../x", "./x"]:
        with pytest.raises(InvalidKey, match="not allowed|relative"):
            store.put(user_key, b"x")
    store.put("ok/name with spaces & ünïcode", b"x")
    assert [o.key for o in store.list("")] == ["ok/name with spaces & ünïcode"]


def test_workers_load_code_only_from_the_jobs_own_directory(tmp_path):
    ctx = SimpleNamespace(memory_limit_in_mb=256, cold_start=False)
    for job_id in ["../evil", "a/b", "/abs", "", ".hidden", "x" * 200]:
        event = {"work": str(tmp_path / "work"), "store_options": {}, "job_id": job_id,
                 "step": 0, "role": "map", "task": 0, "attempt": "a", "partitions": 1,
                 "splits": []}
        with pytest.raises(ValueError, match="invalid job id"):
            handler(event, ctx)


def test_scrub_redacts_secret_fields_and_secrets_in_text():
    spec = {"s3_endpoint": "https://AKIAABCDEFGHIJKLMNOP:wJalrXUtnFEMI@s3.example.com/",
            "store_options": {"aws_secret_access_key": "wJalrXUtnFEMI", "aws_session_token": "T0K",
                              "region": "us-east-1", "password": "hunter2"},
            "reducers": 4, "inputs": ["s3://bucket/in"], "memory": 1024}
    clean = scrub(spec)
    text = json.dumps(clean)
    for secret in ("wJalrXUtnFEMI", "T0K", "hunter2", "AKIAABCDEFGHIJKLMNOP"):
        assert secret not in text
    assert clean["store_options"]["region"] == "us-east-1" and clean["reducers"] == 4
    assert clean["inputs"] == ["s3://bucket/in"]
    assert clean["s3_endpoint"] == f"https://{REDACTED}@s3.example.com/"
    msg = scrub_text("connect failed: password=hunter2 token: abc key id AKIAABCDEFGHIJKLMNOP")
    assert "hunter2" not in msg and "abc" not in msg and "AKIA" not in msg
    assert msg.startswith("connect failed: password=***")


class LeaksInError(smr.Job):
    def map(self, line):
        raise RuntimeError("could not log in with password=hunter2 and api_key=sk-123456")
        yield line, 1


def test_no_credentials_in_spec_summary_or_failure_record(tmp_path):
    write(tmp_path / "in" / "a.txt", b"a b\n")
    endpoint = "http://smruser:s3cr3tpass@127.0.0.1:1"
    s = run_job(str(EXAMPLES / "wordcount.py"), input=[str(tmp_path / "in")],
                output=str(tmp_path / "out"), work_dir=str(tmp_path / "work"),
                s3_endpoint=endpoint, platform="inline")
    spec = (tmp_path / "work" / "jobs" / s["job_id"] / "job.json").read_text()
    success = (tmp_path / "out" / "_SUCCESS").read_text()
    summary = (tmp_path / "work" / "jobs" / s["job_id"] / "summary.json").read_text()
    for text in (spec, success, summary):
        assert "s3cr3tpass" not in text
    assert json.loads(spec)["settings"]["s3_endpoint"] == f"http://{REDACTED}@127.0.0.1:1"
    with pytest.raises(JobFailed) as e:
        run_job(LeaksInError(), input=[str(tmp_path / "in")], output=str(tmp_path / "out2"),
                work_dir=str(tmp_path / "work"), max_attempts=1, platform="inline")
    failed = (tmp_path / "work" / "jobs" / e.value.job_id / "failed.json").read_text()
    assert "hunter2" not in failed and "sk-123456" not in failed
    assert "password=***" in failed


def test_cli_errors_and_tracebacks_hide_credentials(tmp_path):
    job = tmp_path / "leak.py"
    job.write_text("import smr\nclass Leak(smr.Job):\n    def map(self, line):\n"
                   "        raise RuntimeError('token=abcdef123 secret_key: zzz999')\n"
                   "        yield line, 1\n")
    write(tmp_path / "in" / "a.txt", b"x\n")
    r = subprocess.run([sys.executable, "-m", "smr", "-v", "run", str(job), "-i",
                        str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--max-attempts", "1"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "AWS_SECRET_ACCESS_KEY": "envsecret42"})
    assert r.returncode == 1
    assert "smr: error:" in r.stderr and "Traceback" in r.stderr
    for secret in ("abcdef123", "zzz999", "envsecret42"):
        assert secret not in r.stderr and secret not in r.stdout
