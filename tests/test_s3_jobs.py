"""End to end on a real S3 server (SeaweedFS): the examples with inputs, work dir and outputs on
S3, run by worker processes (the local platform), must give exactly the embedded store's results.
"""
import json
import re

import pytest

from smr.driver import run_job
from smr.storage import open_store

from helpers import EXAMPLES, expected_word_counts, read_output
from s3_helpers import read_store_output, upload_dir
from test_examples import make_uservisits

# Split sizes are larger than in test_examples (a request to SeaweedFS costs ~5 ms here, and a
# map task makes several), yet every job has many map tasks and lines that cross splits.
CASES = [  # example, data, reducers, split size
    ("wordcount.py", "corpus", 3, 3_333),
    ("inverted_index.py", "corpus", 2, 5_000),
    ("top_words.py", "corpus", 3, 7_000),
    ("query2a.py", "uservisits", 3, 20_000),
]


def _data(kind, tmp_path, corpus):
    return corpus if kind == "corpus" else make_uservisits(tmp_path / "uv")


@pytest.mark.parametrize("example,kind,reducers,split", CASES, ids=[c[0] for c in CASES])
def test_example_on_s3_equals_embedded(example, kind, reducers, split, seaweed, tmp_path, corpus):
    data = _data(kind, tmp_path, corpus)
    job = str(EXAMPLES / example)
    local = run_job(job, input=[str(data)], output=str(tmp_path / "out"),
                    work_dir=str(tmp_path / "work"), reducers=reducers, split_size=split,
                    platform="local")
    s3_in = upload_dir(data, seaweed.url("in"), seaweed.options())
    s3_out = seaweed.url("out")
    remote = run_job(job, input=[s3_in], output=s3_out, work_dir=seaweed.url("work"),
                     reducers=reducers, split_size=split, platform="local",
                     s3_endpoint=seaweed.endpoint)
    assert remote["tasks"]["map"] >= 2 and remote["tasks"]["reduce"] >= 2
    assert remote["tasks"] == local["tasks"]
    assert remote["records"] == local["records"]
    got = read_store_output(s3_out, seaweed.options())
    assert got == read_output(tmp_path / "out")
    if example == "wordcount.py":  # and both equal an independent count
        assert dict(got) == dict(expected_word_counts(corpus))


def test_inputs_work_and_output_in_different_stores(seaweed, tmp_path, corpus):
    """Local input with S3 output; then local and S3 inputs in one job, with S3 work dir and
    local output."""
    expected = dict(expected_word_counts(corpus))
    job = str(EXAMPLES / "wordcount.py")
    opts = dict(reducers=2, split_size=4_000, platform="local", s3_endpoint=seaweed.endpoint)

    out1 = seaweed.url("out-from-local")
    run_job(job, input=[str(corpus)], output=out1, work_dir=str(tmp_path / "w1"), **opts)
    assert dict(read_store_output(out1, seaweed.options())) == expected

    s3_in = upload_dir(corpus / "tiny", seaweed.url("in"), seaweed.options())
    # Half the top-level files locally, the other half and the tiny/ directory on S3, one job.
    half = sorted(p for p in corpus.iterdir() if p.is_file())
    split_local = tmp_path / "half"
    split_local.mkdir()
    remote_half = open_store(seaweed.url("half"), seaweed.options())
    for i, p in enumerate(half):
        if i % 2:
            (split_local / p.name).write_bytes(p.read_bytes())
        else:
            remote_half.put(p.name, p.read_bytes())
    run_job(job, input=[str(split_local), remote_half.url, s3_in],
            output=str(tmp_path / "out3"), work_dir=seaweed.url("w3"), **opts)
    assert dict(read_output(tmp_path / "out3")) == expected


def test_md5_prefixes_spread_intermediate_keys(seaweed, tmp_path, corpus):
    work = seaweed.url("work-md5")
    out = seaweed.url("out-md5")
    # Many distinct words, so that map outputs are too big to travel inline in commit records.
    (corpus / "distinct.txt").write_text("\n".join(f"w{i:06d}" for i in range(40_000)) + "\n")
    s = run_job(str(EXAMPLES / "top_words.py"), input=[str(corpus)], output=out, work_dir=work,
                reducers=3, split_size=7_000, platform="local", s3_endpoint=seaweed.endpoint,
                md5_prefixes=True, keep_intermediates=True)
    keys = [o.key for o in open_store(work, seaweed.options()).list(f"jobs/{s['job_id']}/")]
    map_keys = [k for k in keys if "/map/" in k]
    out_keys = [k for k in keys if "/s0/out/" in k]
    # Map outputs too small to need an object of their own travel in their commit records.
    store = open_store(work, seaweed.options())
    with_data = [k for k in keys if "/map-done/" in k
                 and json.loads(store.get(k))["data_key"] is not None]
    assert len(with_data) >= 3, "the test needs map outputs stored as objects"
    assert len(map_keys) == len(with_data)
    assert len(out_keys) == 3
    pattern = re.compile(r"jobs/[^/]+/s\d/(map|out)/[0-9a-f]{4}-\d{5}-[0-9a-f]+\.bin$")
    assert all(pattern.match(k) for k in map_keys + out_keys), map_keys[:3]
    # The hex prefixes differ between tasks: the keys no longer share one long prefix.
    assert len({k.split("/")[4][:4] for k in map_keys}) > len(map_keys) // 2
    counts = expected_word_counts(corpus)
    import heapq
    assert read_store_output(out, seaweed.options()) == heapq.nsmallest(
        10, counts.items(), key=lambda wc: (-wc[1], wc[0]))


def test_smr_run_with_config_file_on_s3(seaweed, tmp_path, corpus):
    """The real command: a config file names the S3 endpoint; results downloaded with smr cp."""
    import json
    import subprocess
    import sys
    s3_in = upload_dir(corpus, seaweed.url("in"), seaweed.options())
    out = seaweed.url("out")
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"job: {EXAMPLES / 'wordcount.py'}\ninput: [{s3_in}]\noutput: {out}\n"
                   f"work_dir: {seaweed.url('work')}\nreducers: 2\nsplit_size: 8KB\n"
                   f"s3_endpoint: {seaweed.endpoint}\nmd5_prefixes: true\n")
    r = subprocess.run([sys.executable, "-m", "smr", "run", str(cfg), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output"] == out
    r = subprocess.run([sys.executable, "-m", "smr", "cp", "-r", out, str(tmp_path / "dl"),
                        "--s3-endpoint", seaweed.endpoint], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert dict(read_output(tmp_path / "dl")) == dict(expected_word_counts(corpus))
    r = subprocess.run([sys.executable, "-m", "smr", "run", str(EXAMPLES / "wordcount.py"),
                        "-i", "s3://no-such-bucket-smr/in", "-o", str(tmp_path / "o2"),
                        "--s3-endpoint", seaweed.endpoint], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("smr: error: cannot read input "
                                                        "s3://no-such-bucket-smr/in: no such bucket")
