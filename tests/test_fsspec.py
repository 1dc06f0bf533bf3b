"""fsspec stores: http(s):// (read-only, Range requests) and memory:// (one process)."""
import subprocess
import sys
import uuid

import pytest

from smr.driver import JobFailed, run_job
from smr.storage import NotFound, StoreError, open_store

from helpers import EXAMPLES, expected_word_counts, read_output, write
from range_http import RangeServer
from s3_helpers import read_store_output, upload_dir


@pytest.fixture
def http(tmp_path):
    srv = RangeServer(tmp_path / "www")
    (tmp_path / "www").mkdir()
    yield srv
    srv.close()


def test_http_reads_use_range_requests(http, tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB
    write(tmp_path / "www" / "dir" / "data.bin", data)
    st = open_store(f"{http.url}/dir")
    assert st.head("data.bin").size == len(data)
    assert st.get_range("data.bin", 1000, 1010) == data[1000:1010]
    assert st.get_range("data.bin", len(data) - 3, len(data) + 100) == data[-3:]
    assert st.get_range("data.bin", len(data)) == b""
    with st.open_range("data.bin", 10, None, block=300_000) as f:
        assert f.read() == data[10:]
    gets = [r for m, _, r in http.log if m == "GET"]
    assert gets and all(r.startswith("bytes=") for r in gets)  # never a whole-object GET
    assert st.get("data.bin") == data
    with pytest.raises(NotFound, match=f"{http.url}/dir/missing"):
        st.get("missing")
    assert st.head("missing") is None


def test_http_is_read_only_and_lists_one_url(http, tmp_path):
    write(tmp_path / "www" / "a.txt", b"hello\n")
    st = open_store(http.url)
    for write_op in (lambda: st.put("new.txt", b"x"), lambda: st.delete("a.txt"),
                     lambda: st.put_file("new.txt", str(tmp_path / "www" / "a.txt"))):
        with pytest.raises(StoreError, match=rf"cannot write {http.url}/\S+: http:// URLs are read-only"):
            write_op()
    assert [(o.key, o.size) for o in st.list("a.txt")] == [("a.txt", 6)]
    assert list(st.list("")) == [] and list(st.list("nope")) == []


def test_job_reads_http_inputs_from_worker_processes(http, tmp_path, corpus):
    www = tmp_path / "www"
    for name in ("bulk.txt", "unicode.txt", "crlf.txt", "long_line.txt"):
        write(www / "c" / name, (corpus / name).read_bytes())
    urls = [f"{http.url}/c/{n}" for n in ("bulk.txt", "unicode.txt", "crlf.txt", "long_line.txt")]
    s = run_job(str(EXAMPLES / "wordcount.py"), input=urls, output=str(tmp_path / "out"),
                reducers=2, split_size=2_000, platform="local")
    assert s["tasks"]["map"] >= 2
    assert dict(read_output(tmp_path / "out")) == dict(expected_word_counts(www / "c"))
    assert all(r.startswith("bytes=") for m, _, r in http.log if m == "GET")
    with pytest.raises(JobFailed, match=f"output {http.url}/out is read-only"):
        run_job(str(EXAMPLES / "wordcount.py"), input=urls[:1], output=f"{http.url}/out",
                platform="inline")


def test_memory_store_job_runs_inline(tmp_path, corpus):
    root = f"memory://smr-{uuid.uuid4().hex[:8]}"
    upload_dir(corpus, f"{root}/in")
    s = run_job(str(EXAMPLES / "wordcount.py"), input=[f"{root}/in"], output=f"{root}/out",
                work_dir=f"{root}/work", reducers=2, split_size=3_000, platform="inline")
    assert s["tasks"]["map"] >= 2 and s["tasks"]["reduce"] == 2
    assert dict(read_store_output(f"{root}/out")) == dict(expected_word_counts(corpus))
    open_store(root).delete_prefix("")


def test_memory_store_refuses_worker_processes(tmp_path, corpus):
    root = f"memory://smr-{uuid.uuid4().hex[:8]}"
    with pytest.raises(JobFailed, match=r"memory://.*one process.*--platform inline"):
        run_job(str(EXAMPLES / "wordcount.py"), input=[str(corpus)], output=f"{root}/out",
                platform="local")


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(StoreError, match=r"unsupported URL scheme 'nosuch' in 'nosuch://x/y'"):
        open_store("nosuch://x/y")


def test_workers_do_not_import_fsspec_or_boto3_for_local_jobs():
    code = ("import sys; import smr.worker.handler, smr.storage; "
            "from smr.storage import open_store; open_store('/tmp').list(''); "
            "print(sorted(m for m in ('fsspec', 'boto3', 'botocore', 'aiohttp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
