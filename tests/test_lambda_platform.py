"""The lambda platform through real boto3 against `smr local-lambda` (the Invoke API on loopback).

Work dirs and outputs are local directories here (the stand-in's workers share this filesystem);
tests/test_lambda_seaweed.py runs the same path with SeaweedFS as the store.
"""
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from smr.driver import JobFailed, run_job
from smr.platforms.aws_lambda import LambdaPlatform, classify_function_error

from aws_helpers import fake_aws_env, local_lambda
from helpers import EXAMPLES, expected_word_counts, read_output, write


@pytest.fixture(autouse=True)
def _aws(monkeypatch, tmp_path):
    fake_aws_env(monkeypatch, tmp_path)


def parts(out):
    return {p.name: p.read_bytes() for p in sorted(out.glob("part-*"))}


def lambda_run(tmp_path, server, job, inputs, name, **kw):
    kw.setdefault("reducers", 2)
    return run_job(str(job), input=[str(i) for i in inputs], output=str(tmp_path / name),
                   work_dir=str(tmp_path / "work"), platform="lambda",
                   lambda_endpoint=server.url, memory=server.memory_mb,
                   timeout=server.timeout_s, **kw)


@pytest.mark.parametrize("mode", ["sync", "event"])
def test_wordcount_through_boto3_equals_embedded_run(tmp_path, corpus, mode):
    embedded = run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)],
                       output=str(tmp_path / "embedded"), reducers=3, split_size=3000,
                       memory=512)
    with local_lambda() as server:
        s = lambda_run(tmp_path, server, EXAMPLES / "wordcount.py", [corpus], "lambda",
                       reducers=3, split_size=3000, lambda_invocation=mode, concurrency=2)
        served = server.invocations
        started = server._platform("smr-worker").stats.cold_starts
    assert s["tasks"]["map"] >= 2 and s["tasks"]["reduce"] == 3
    if mode == "sync":  # cold starts are learned from the tasks' own reports
        assert s["cold_starts"] == started >= 1
    assert dict(read_output(tmp_path / "lambda")) == dict(expected_word_counts(corpus))
    assert parts(tmp_path / "lambda") == parts(tmp_path / "embedded")
    assert s["records"] == embedded["records"]
    # Every task went through the HTTP API, none around it.
    assert served == s["tasks"]["map"] + s["tasks"]["reduce"] + s["retries"]
    assert s["invocations"] == served


def test_throttled_calls_back_off_and_finish(tmp_path, corpus):
    # The stand-in runs one invocation at a time and answers 429 to a second synchronous call,
    # as Lambda does past a function's reserved concurrency; the client runs 4 threads.
    with local_lambda(concurrency=1) as server:
        s = lambda_run(tmp_path, server, EXAMPLES / "wordcount.py", [corpus], "out",
                       split_size=2000, concurrency=4)
        throttled = server.throttled
    assert throttled > 0
    assert s["retries"] == 0  # throttling is retried inside the platform, not as task failures
    assert dict(read_output(tmp_path / "out")) == dict(expected_word_counts(corpus))


FAILING_JOB = '''
import smr

class Failing(smr.Job):
    def map(self, line):
        if "alpha" in line:
            raise RuntimeError("no alphas allowed: " + line[:10])
        yield line, 1

    def reduce(self, key, values):
        yield key, sum(values)
'''

SLOW_JOB = '''
import time
import smr

class Slow(smr.Job):
    def map(self, line):
        time.sleep(30)
        yield line, 1
'''


@pytest.mark.parametrize("mode", ["sync", "event"])
def test_handler_error_is_reported_with_its_message(tmp_path, corpus, mode):
    job = write(tmp_path / "failing.py", FAILING_JOB.encode())
    with local_lambda() as server:
        with pytest.raises(JobFailed) as e:
            lambda_run(tmp_path, server, job, [corpus], "out", split_size=4000,
                       lambda_invocation=mode, max_attempts=2)
    msg = str(e.value)
    assert "RuntimeError" in msg and "no alphas allowed" in msg and "after 2 attempts" in msg
    assert "Failing.map" in e.value.traceback or "raise RuntimeError" in e.value.traceback
    assert not (tmp_path / "out" / "_SUCCESS").exists()


@pytest.mark.parametrize("mode", ["sync", "event"])
def test_timed_out_invocation_fails_as_timeout(tmp_path, mode):
    job = write(tmp_path / "slow.py", SLOW_JOB.encode())
    inp = write(tmp_path / "in" / "a.txt", b"one\ntwo\nthree\nfour\n" * 50)
    with local_lambda(timeout_s=1) as server:
        plat = LambdaPlatform(memory_mb=512, timeout_s=1, concurrency=2, function="smr-worker",
                              endpoint=server.url, mode=mode, outcome_margin_s=0.5)
        plat.check()
        t = time.monotonic()
        with pytest.raises(JobFailed) as e:
            run_job(str(job), input=[str(inp)], output=str(tmp_path / "out"), split_size=200,
                    work_dir=str(tmp_path / "w"), max_attempts=1, platform=plat, reducers=2)
        plat.close()
    assert "timed out" in str(e.value) or "no commit record" in str(e.value)
    assert time.monotonic() - t < 25  # it did not wait for the 30 s sleep
    if mode == "sync":
        assert plat.stats.failures.get("timeout", 0) >= 1


def test_missing_function_is_a_clear_error(tmp_path, corpus):
    with local_lambda(functions=["other"]) as server:
        with pytest.raises(JobFailed, match=r"Lambda function 'smr-worker' not found.*lambda-deploy"):
            lambda_run(tmp_path, server, EXAMPLES / "wordcount.py", [corpus], "out")


def test_local_paths_refused_for_real_lambda(tmp_path, corpus):
    with pytest.raises(JobFailed, match=r"--work-dir: .* is a local path.*s3://"):
        run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output="s3://b/out",
                work_dir=str(tmp_path / "w"), platform="lambda")


def test_classify_lambda_error_payloads():
    def kind(payload):
        return classify_function_error(json.dumps(payload).encode())

    e = kind({"errorMessage": "bad thing", "errorType": "ValueError",
              "stackTrace": ["  File \"x.py\", line 1, in f\n", "    raise ValueError\n"]})
    assert (e.kind, e.message) == ("error", "ValueError: bad thing") and "x.py" in e.traceback
    assert kind({"errorMessage": "2024-01-01T00:00:00.000Z abc Task timed out after 3.00 seconds"}
                ).kind == "timeout"
    assert kind({"errorType": "Sandbox.Timedout", "errorMessage": "RequestId: x Error: Task "
                 "timed out after 900.00 seconds"}).kind == "timeout"
    assert kind({"errorType": "Runtime.ExitError", "errorMessage": "RequestId: x Error: Runtime "
                 "exited with error: signal: killed"}).kind == "oom"
    assert kind({"errorType": "Runtime.OutOfMemory", "errorMessage": "..."}).kind == "oom"
    assert kind({"errorType": "Runtime.ImportModuleError", "errorMessage": "No module named "
                 "'msgpack'"}).kind == "crash"
    assert classify_function_error(b"not json").message == "not json"


def _http(url, body=b"{}", headers=None, method="POST"):
    req = urllib.request.Request(url, data=body if method == "POST" else None,
                                 headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_stand_in_speaks_lambdas_status_codes():
    with local_lambda(functions=["smr-worker"]) as server:
        url = f"{server.url}/2015-03-31/functions/smr-worker/invocations"
        status, _, body = _http(url, json.dumps({"role": "ping"}).encode())
        assert (status, json.loads(body)) == (200, {"pong": True})
        status, headers, body = _http(url, json.dumps({"role": "nope"}).encode())
        assert status == 200 and headers["X-Amz-Function-Error"] == "Unhandled"
        err = json.loads(body)
        assert err["errorType"] == "ValueError" and "unknown role 'nope'" in err["errorMessage"]
        assert _http(url, b"{}", {"X-Amz-Invocation-Type": "Event"})[0] == 202
        assert _http(url, b"{}", {"X-Amz-Invocation-Type": "DryRun"})[0] == 204
        status, headers, _ = _http(url, b"{}", {"X-Amz-Invocation-Type": "Bogus"})
        assert status == 400
        status, headers, _ = _http(url, b"{" + b" " * (300 * 1024) + b"}",
                                   {"X-Amz-Invocation-Type": "Event"})
        assert (status, headers["x-amzn-ErrorType"]) == (413, "RequestEntityTooLargeException")
        assert _http(url, b"{not json")[0] == 400
        status, headers, _ = _http(f"{server.url}/2015-03-31/functions/other/invocations")
        assert (status, headers["x-amzn-ErrorType"]) == (404, "ResourceNotFoundException")
        status, _, body = _http(f"{server.url}/2015-03-31/functions/smr-worker/configuration",
                                method="GET")
        assert status == 200 and json.loads(body)["MemorySize"] == 512


def test_cli_run_against_local_lambda_command(tmp_path, corpus):
    server = subprocess.Popen([sys.executable, "-m", "smr", "local-lambda", "--port", "0",
                               "--memory", "512", "--timeout", "60"],
                              stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert m, line
        r = subprocess.run([sys.executable, "-m", "smr", "run", EXAMPLES / "wordcount.py",
                            "-i", corpus, "-o", tmp_path / "out", "--work-dir", tmp_path / "w",
                            "--platform", "lambda", "--lambda-endpoint", m.group(0),
                            "--memory", "512", "--timeout", "60", "--split-size", "4KB",
                            "--reducers", "2", "--json"],
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        assert s["tasks"]["map"] >= 2 and s["tasks"]["reduce"] == 2
        assert dict(read_output(tmp_path / "out")) == dict(expected_word_counts(corpus))
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_summary_puts_the_cost_beside_the_reference_architecture(tmp_path):
    from test_examples import make_uservisits
    data = make_uservisits(tmp_path / "uv", rows=3000)
    size = sum(p.stat().st_size for p in data.iterdir())
    with local_lambda() as server:
        s = lambda_run(tmp_path, server, EXAMPLES / "query2a.py", [data], "out",
                       split_size=40_000)
    ref = s["cost"]["reference"]
    assert (ref["input_gb"], ref["seconds"], ref["usd"]) == (126.8, 200.0, 0.1129)
    per_gb = 0.1129 / 126.8
    assert ref["usd_per_gb"] == pytest.approx(per_gb, rel=1e-6)
    assert ref["this_job_input_gb"] == pytest.approx(size / 1e9, rel=1e-3)
    assert ref["reference_usd_at_this_size"] == pytest.approx(per_gb * size / 1e9, rel=1e-3)
    assert ref["cost_ratio"] == pytest.approx(s["cost_usd"] / (size / 1e9) / per_gb, rel=1e-3)
    on_disk = json.loads((tmp_path / "out" / "_SUCCESS").read_text())
    assert on_disk["cost"]["reference"] == ref


def test_first_invocation_in_a_process_is_a_cold_start():
    from smr.worker.runtime import WarmState
    w = WarmState()
    assert [w.first_invocation() for _ in range(3)] == [True, False, False]


def test_no_region_is_a_clear_error(tmp_path, corpus, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(JobFailed, match="cannot reach Lambda for 'smr-worker': .*region"):
        run_job(str(EXAMPLES / "wordcount.py"), input=["s3://b/in"], output="s3://b/out",
                work_dir="s3://b/w", platform="lambda")
