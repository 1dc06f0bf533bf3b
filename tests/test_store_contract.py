"""One contract, every store: the embedded store, S3 (on a real SeaweedFS) and fsspec memory://.

Everything above the Store seam relies on these behaviours, so each backend must show them.
"""
import hashlib
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from smr.storage import NotFound, open_store

BACKENDS = ["local", "s3", "memory"]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    if request.param == "local":
        st = open_store(str(tmp_path / "store"))
    elif request.param == "s3":
        sw = request.getfixturevalue("seaweed")
        st = open_store(sw.url("contract"), sw.options())
    else:
        st = open_store(f"memory://smr-contract-{uuid.uuid4().hex[:8]}")
    yield st
    if request.param != "local":
        st.delete_prefix("")
    st.close()


def test_put_get_overwrite_head(store):
    store.put("a/b.txt", b"first")
    assert store.get("a/b.txt") == b"first"
    store.put("a/b.txt", b"second, longer")
    assert store.get("a/b.txt") == b"second, longer"
    assert store.head("a/b.txt").size == len(b"second, longer")
    assert store.exists("a/b.txt") and not store.exists("a/b")
    assert [(o.key, o.size) for o in store.list("")] == [("a/b.txt", 14)]


def test_zero_byte_objects(store):
    store.put("empty", b"")
    store.put("dir/empty2", b"")
    assert store.get("empty") == b""
    assert store.head("empty").size == 0
    assert store.get_range("empty", 0, 10) == b""
    assert store.get_range("empty", 5) == b""
    assert store.open_range("empty").read() == b""
    assert [(o.key, o.size) for o in store.list("")] == [("dir/empty2", 0), ("empty", 0)]


AWKWARD_KEYS = ["dir with space/naïve café.txt", "日本語/キー.txt", "a+b=c&d.txt", "100%25 sure",
                "tilde~x", "Ωmega", "a-c", "a/b", "a b", "emoji 🙂/x", "q?uery#hash"]


def test_keys_with_spaces_and_non_ascii(store):
    for i, k in enumerate(AWKWARD_KEYS):
        store.put(k, f"value {i} {k}".encode())
    listed = [o.key for o in store.list("")]
    # Key order is UTF-8 byte order (S3's), which is also Python's code point order.
    assert listed == sorted(AWKWARD_KEYS)
    assert listed == sorted(AWKWARD_KEYS, key=lambda k: k.encode())
    for i, k in enumerate(AWKWARD_KEYS):
        assert store.get(k) == f"value {i} {k}".encode()
        assert store.head(k).size == len(f"value {i} {k}".encode())
    assert [o.key for o in store.list("日本語/")] == ["日本語/キー.txt"]
    assert [o.key for o in store.list("a")] == sorted(k for k in AWKWARD_KEYS if k.startswith("a"))


def test_listing_past_1000_keys_is_complete_and_prefix_exact(store):
    keys = [f"p/{i}" for i in range(1100)] + ["p-other", "q/0"]
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda k: store.put(k, k.encode()), keys))
    listed = list(store.list("p/"))
    assert [o.key for o in listed] == sorted(f"p/{i}" for i in range(1100))
    assert all(o.size == len(o.key) for o in listed)
    # A plain string prefix, as in S3: "p/1" matches p/1, p/10, p/100... and nothing else.
    assert [o.key for o in store.list("p/1")] == sorted(k for k in keys if k.startswith("p/1"))
    assert len(list(store.list(""))) == 1102


def test_ranged_reads_at_and_past_the_end(store):
    data = bytes(range(256)) * 4
    store.put("r", data)
    n = len(data)
    assert store.get_range("r", 0) == data
    assert store.get_range("r", 10, 20) == data[10:20]
    assert store.get_range("r", n - 10, n) == data[-10:]
    assert store.get_range("r", n - 10, n + 500) == data[-10:]
    assert store.get_range("r", n) == b""
    assert store.get_range("r", n, n + 10) == b""
    assert store.get_range("r", n + 5000) == b""
    assert store.get_range("r", 7, 7) == b""
    with pytest.raises(ValueError):
        store.get_range("r", 10, 5)


def test_open_range_streams_any_range(store):
    data = os.urandom(3 * 2**20 + 123)
    store.put("s", data)
    with store.open_range("s", 1000, len(data) - 7, block=2**18) as f:
        chunks = []
        while chunk := f.read(100_003):
            chunks.append(chunk)
    assert b"".join(chunks) == data[1000:-7]
    assert store.open_range("s").read() == data
    assert store.open_range("s", len(data) - 5, len(data) + 100).read() == data[-5:]
    assert store.open_range("s", len(data) + 10).read() == b""
    assert store.open_range("s", 5, 5).read() == b""


def test_delete_and_delete_prefix(store):
    for k in ["pre/a", "pre/b/c", "pre-x", "prefix", "other"]:
        store.put(k, b"x")
    assert store.delete_prefix("pre/") == 2
    assert [o.key for o in store.list("")] == ["other", "pre-x", "prefix"]
    store.delete("other")
    store.delete("other")  # deleting a missing object is not an error
    assert store.head("other") is None
    assert store.delete_prefix("nothing/") == 0
    assert store.delete_prefix("") == 2
    assert list(store.list("")) == []


def test_not_found_names_the_url(store):
    url = store.child_url("missing/obj ü")
    for read in (lambda: store.get("missing/obj ü"),
                 lambda: store.get_range("missing/obj ü", 0, 10),
                 lambda: store.get_range("missing/obj ü", 3, 3),
                 lambda: store.open_range("missing/obj ü").read(),
                 lambda: store.open_range("missing/obj ü", 4, 4).read()):
        with pytest.raises(NotFound) as info:
            read()
        assert url in str(info.value)
        assert isinstance(info.value, FileNotFoundError)
    assert store.head("missing/obj ü") is None
    assert list(store.list("missing/")) == []


def test_many_concurrent_writers_and_readers(store):
    def payload(w, i):
        return hashlib.sha256(f"{w}-{i}".encode()).digest() * (50 + (w * 7 + i) % 300)

    errors = []

    def writer(w):
        for i in range(25):
            store.put(f"w{w:02d}/{i:03d}", payload(w, i))
            if i % 5 == 4:
                # read back what this and the other writers wrote so far
                for j in range(i + 1):
                    if store.get(f"w{w:02d}/{j:03d}") != payload(w, j):
                        errors.append((w, j))

    # Many threads overwrite one key: a reader sees some writer's whole object, never a mix.
    versions = {bytes([v]) * (100_000 + v) for v in range(16)}

    def overwriter(v):
        for _ in range(5):
            store.put("shared", bytes([v]) * (100_000 + v))
            got = store.get("shared")
            if got not in versions:
                errors.append(("shared", len(got)))

    with ThreadPoolExecutor(16) as ex:
        futures = [ex.submit(writer, w) for w in range(16)] + [ex.submit(overwriter, v)
                                                                for v in range(16)]
        for f in futures:
            f.result()
    assert errors == []
    assert len(list(store.list("w"))) == 16 * 25
    assert store.get("shared") in versions


def test_objects_over_100mb_multipart(store, tmp_path):
    size = 101 * 2**20 + 12_345
    block = os.urandom(2**20)
    data = b"".join(block[i:] + block[:i] for i in range(101)) + block[:12_345]
    assert len(data) == size
    digest = hashlib.sha256(data).hexdigest()
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    store.put_file("big/from-file", str(path))
    store.put("big/from-bytes", data)
    del data
    for key in ("big/from-file", "big/from-bytes"):
        assert store.head(key).size == size
        h = hashlib.sha256()
        with store.open_range(key, 0, None) as f:
            while chunk := f.read(4 * 2**20):
                h.update(chunk)
        assert h.hexdigest() == digest
        # Ranges that straddle part boundaries (parts are 16 MiB, or smaller ones elsewhere).
        with open(path, "rb") as local:
            for start in (16 * 2**20 - 3, 64 * 2**20 - 1, size - 100):
                local.seek(start)
                assert store.get_range(key, start, start + 1000) == local.read(1000)


def test_put_if_absent_creates_once_even_under_races(store):
    assert store.put_if_absent("once", b"first") is True
    assert store.put_if_absent("once", b"second") is False
    assert store.get("once") == b"first"
    barrier = threading.Barrier(12)

    def race(i):
        barrier.wait()
        return store.put_if_absent("raced", f"writer {i}".encode())

    with ThreadPoolExecutor(12) as ex:
        won = list(ex.map(race, range(12)))
    assert won.count(True) == 1
    assert store.get("raced") == f"writer {won.index(True)}".encode()
