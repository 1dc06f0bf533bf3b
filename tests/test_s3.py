"""S3Store beyond the shared contract: retries on injected faults, forks, endpoints, errors.

Faults are injected by a proxy in front of the real SeaweedFS, so the retried requests are real.
"""
import hashlib
import multiprocessing
import os

import pytest

from smr.storage import StoreError, open_store
from smr.storage.s3 import S3Store

from faulty_proxy import FaultyProxy


@pytest.fixture
def proxy(seaweed):
    p = FaultyProxy(seaweed.endpoint)
    yield p
    p.close()


def faulty_store(seaweed, proxy, name, **opts):
    return open_store(seaweed.url(name), {"s3_endpoint": proxy.endpoint, **opts})


def test_retries_slowdown_resets_and_timeouts(seaweed, proxy):
    st = faulty_store(seaweed, proxy, "retry", s3_read_timeout=1)
    proxy.add("slowdown", "PUT", times=3)
    st.put("a", b"payload")
    proxy.add("reset", "GET", times=2)
    assert st.get("a") == b"payload"
    proxy.add("stall", "HEAD", times=1, stall_s=2.5)
    assert st.head("a").size == 7
    proxy.add("slowdown", "GET", query_contains="list-type=2", times=2)
    assert [o.key for o in st.list("")] == ["a"]
    assert proxy.pending == 0
    kinds = [k for k, _, _ in proxy.log.injected]
    assert kinds.count("slowdown") == 5 and kinds.count("reset") == 2 and "stall" in kinds
    assert st.requests.snapshot()["retry"] == 8


def test_stream_resumes_after_a_body_cut_mid_way(seaweed, proxy):
    st = faulty_store(seaweed, proxy, "resume")
    data = os.urandom(5 * 2**20 + 17)
    st.put("big", data)
    proxy.add("truncate", "GET", path_contains="/big", times=2)
    with st.open_range("big", 100, None) as f:
        got = b"".join(iter(lambda: f.read(1 << 20), b""))
    assert got == data[100:]
    ranges = [r for m, p, r in proxy.log.requests if m == "GET" and p.endswith("/big")]
    # One ranged GET, cut twice; each retry asks only for the bytes not yet received.
    starts = [int(r.split("=")[1].split("-")[0]) for r in ranges]
    assert starts[0] == 100 and len(starts) == 3 and starts[0] < starts[1] < starts[2]
    assert get_plain_ranged(st, "big", 7, 70_007) == data[7:70_007]


def get_plain_ranged(st, key, start, end):
    return st.get_range(key, start, end)


def test_multipart_part_failures_are_retried(seaweed, proxy):
    st = faulty_store(seaweed, proxy, "mpu", multipart_threshold=5 * 2**20, part_size=5 * 2**20)
    data = os.urandom(17 * 2**20)
    proxy.add("slowdown", "PUT", query_contains="partNumber=2", times=2)
    proxy.add("reset", "PUT", query_contains="partNumber=4", times=1)
    # The completion reaches the server but its reply is lost: the retry finds the upload gone.
    proxy.add("lost_reply", "POST", query_contains="uploadId=", times=1)
    st.put("obj", data)
    assert hashlib.sha256(st.get("obj")).digest() == hashlib.sha256(data).digest()
    etag = seaweed.client().head_object(Bucket=seaweed.bucket, Key=st.prefix + "obj")["ETag"]
    assert etag.strip('"').endswith("-4")  # four parts: really a multipart upload
    assert proxy.pending == 0
    assert ("lost_reply", "POST") in [(k, m) for k, m, _ in proxy.log.injected]
    proxy.add("lost_reply", "PUT", path_contains="/small", times=1)
    st.put("small", b"idempotent")  # a plain PUT retried after a lost reply
    assert st.get("small") == b"idempotent"


def test_persistent_faults_fail_with_the_url_and_cause(seaweed, proxy):
    st = faulty_store(seaweed, proxy, "give-up", s3_max_attempts=3)
    proxy.add("slowdown", "PUT", times=3)
    with pytest.raises(StoreError) as info:
        st.put("x/y z", b"1")
    msg = str(info.value)
    assert st.child_url("x/y z") in msg and "SlowDown" in msg and "3 attempts" in msg


def test_failed_multipart_is_aborted(seaweed, proxy):
    st = faulty_store(seaweed, proxy, "abort", multipart_threshold=5 * 2**20,
                      part_size=5 * 2**20, s3_max_attempts=2)
    proxy.add("slowdown", "PUT", query_contains="partNumber=2", times=2)
    with pytest.raises(StoreError):
        st.put("half", os.urandom(11 * 2**20))
    assert st.head("half") is None  # nothing half-written looks finished
    uploads = seaweed.client().list_multipart_uploads(Bucket=seaweed.bucket, Prefix=st.prefix)
    assert uploads.get("Uploads", []) == []


def test_client_errors_are_not_retried(seaweed, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    st = open_store(seaweed.url("denied"), seaweed.options())
    with pytest.raises(StoreError) as info:
        st.put("k", b"v")
    assert "access denied" in str(info.value) and st.child_url("k") in str(info.value)
    assert "retry" not in st.requests.snapshot()


def test_missing_bucket_is_named(seaweed):
    st = open_store("s3://no-such-bucket-smr/x", seaweed.options())
    with pytest.raises(StoreError, match=r"no such bucket: s3://no-such-bucket-smr"):
        list(st.list(""))


def test_endpoint_from_environment_and_option(seaweed, monkeypatch):
    url = seaweed.url("env")
    open_store(url, seaweed.options()).put("k", b"v")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the per-service one wins
    st = open_store(url)
    assert st.endpoint == seaweed.endpoint and st.addressing == "path"
    assert st.get("k") == b"v"
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint)
    assert open_store(url).get("k") == b"v"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert open_store(url, seaweed.options()).get("k") == b"v"  # the option beats both


def test_bad_urls():
    with pytest.raises(StoreError, match="names no bucket"):
        S3Store("s3://")
    with pytest.raises(StoreError, match="must be a URL"):
        S3Store("s3://b/p", s3_endpoint="127.0.0.1:8333")


def _child(store, n, q):
    try:
        mine = store.client  # made in this process, not inherited from the parent
        ok = store._client_pid == os.getpid()
        for i in range(25):
            key = f"c{n}/{i}"
            body = f"{n}:{i}".encode() * (1 + i)
            store.put(key, body)
            if store.get(key) != body or store.head(key).size != len(body):
                ok = False
        q.put((n, ok, id(mine)))
    except Exception as e:  # report, don't hang the parent
        q.put((n, repr(e), 0))


def test_a_forked_child_never_uses_the_parents_connections(seaweed):
    st = open_store(seaweed.url("fork"), seaweed.options())
    st.put("warm", b"parent")  # the parent now holds a pooled keep-alive connection
    parent_client = st.client
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(st, n, q)) for n in range(4)]
    for p in procs:
        p.start()
    for _ in range(4):
        st.put("warm", b"parent")  # and keeps using it while the children work
        assert st.get("warm") == b"parent"
    results = sorted(q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    assert [(n, ok) for n, ok, _ in results] == [(n, True) for n in range(4)]
    assert st.client is parent_client
    assert len(list(st.list("c"))) == 100


def test_server_side_copy_between_s3_stores(seaweed, proxy):
    src = faulty_store(seaweed, proxy, "src")
    data = os.urandom(3 * 2**20 + 1)
    src.put("dir/a b.bin", data)
    dst = faulty_store(seaweed, proxy, "dst")
    # Stores on different endpoints cannot copy server-side: the caller streams instead.
    assert dst._copy_from(open_store(src.url, seaweed.options()), "dir/a b.bin", "x") is False
    assert dst._copy_from(src, "dir/a b.bin", "copied ü.bin") is True
    assert dst.get("copied ü.bin") == data
    copies = [m for m, p, _ in proxy.log.requests if m == "PUT" and "copied" in p]
    assert copies == ["PUT"]  # one CopyObject request; the bytes never came through here
    # Past CopyObject's limit (5 GiB on S3; lowered here), the copy goes in parts.
    dst.copy_limit = dst.copy_part = 5 * 2**20  # S3's smallest part
    big = os.urandom(11 * 2**20 + 3)
    src.put("big", big)
    proxy.add("slowdown", "PUT", query_contains="partNumber=2", times=1)
    assert dst._copy_from(src, "big", "parts.bin") is True
    assert dst.get("parts.bin") == big
    part_puts = [p for m, p, _ in proxy.log.requests if m == "PUT" and "parts.bin" in p]
    assert len(part_puts) == 3 + 1  # three part copies, one of them retried
