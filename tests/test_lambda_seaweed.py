"""End to end: `--platform lambda` through real boto3 against `smr local-lambda`, with every
input, work dir and output on a real S3 server (SeaweedFS). Output must equal the embedded run.
"""
import pytest

from smr.driver import run_job

from aws_helpers import local_lambda, loopback_only
from helpers import EXAMPLES, expected_word_counts, read_output
from s3_helpers import read_store_output, upload_dir
from test_examples import make_uservisits



@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    loopback_only(monkeypatch)


CASES = [  # example, data, reducers, split size, invocation mode
    ("wordcount.py", "corpus", 3, 8_000, "sync"),
    ("top_words.py", "corpus", 2, 8_000, "event"),
    ("query2a.py", "uservisits", 3, 20_000, "sync"),
]


@pytest.mark.parametrize("example,kind,reducers,split,mode", CASES,
                         ids=[f"{c[0]}-{c[4]}" for c in CASES])
def test_example_on_lambda_and_s3_equals_embedded(example, kind, reducers, split, mode,
                                                   seaweed, tmp_path, corpus):
    data = corpus if kind == "corpus" else make_uservisits(tmp_path / "uv")
    job = str(EXAMPLES / example)
    embedded = run_job(job, input=[str(data)], output=str(tmp_path / "out"),
                       work_dir=str(tmp_path / "work"), reducers=reducers, split_size=split)
    s3_in = upload_dir(data, seaweed.url("in"), seaweed.options())
    s3_out = seaweed.url("out")
    with local_lambda(concurrency=2) as server:
        s = run_job(job, input=[s3_in], output=s3_out, work_dir=seaweed.url("work"),
                    reducers=reducers, split_size=split, platform="lambda",
                    lambda_endpoint=server.url, lambda_invocation=mode,
                    s3_endpoint=seaweed.endpoint, memory=server.memory_mb,
                    timeout=server.timeout_s, concurrency=3)
        served = server.invocations
    assert s["tasks"]["map"] >= 2 and s["tasks"]["reduce"] >= 2
    assert s["tasks"] == embedded["tasks"] and s["records"] == embedded["records"]
    assert served == s["tasks"]["map"] + s["tasks"]["reduce"] + s["retries"]
    got = read_store_output(s3_out, seaweed.options())
    assert got == read_output(tmp_path / "out")
    if example == "wordcount.py":
        assert dict(got) == dict(expected_word_counts(corpus))
