"""The Store seam: the only way any part of smr touches data.

A store is rooted at a URL (a directory, ``s3://bucket/prefix``, ...) and addresses objects by
relative keys with ``/`` separators. Backends implement the underscore methods; the public
methods here validate keys and count requests (the counts feed the cost model), so no backend can
forget either.
"""
from __future__ import annotations

import abc
import io
import logging
import os
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO, Iterator

#: Ranged reads are streamed in blocks of this size when the caller asks for a stream.
STREAM_BLOCK = 8 * 1024 * 1024
#: Attempts per store request when it fails with a TransientStoreError.
REQUEST_ATTEMPTS = 6
#: First backoff between attempts, seconds; doubles each time, with jitter, up to 2 s.
REQUEST_BACKOFF = 0.02

log = logging.getLogger(__name__)


class StoreError(Exception):
    """A store request failed in a way the caller should report, not retry."""


class InvalidKey(StoreError, ValueError):
    """A key that could escape the store's root or is otherwise unusable."""


class NotFound(StoreError, FileNotFoundError):
    """The object does not exist."""


class TransientStoreError(StoreError):
    """A request failed in a way that may succeed when repeated (throttling, connection reset).

    Backends raise it for such failures; the public Store methods retry it with backoff, so
    callers above the seam see it only when every attempt failed.
    """


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


def check_key(key: str) -> str:
    """Reject keys that are empty, absolute, contain NUL bytes or climb with ``..``."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"invalid key {key!r}: must be a non-empty string")
    if "\x00" in key:
        raise InvalidKey(f"invalid key {key!r}: contains a NUL byte")
    if key.startswith("/") or key.startswith("\\") or (len(key) > 1 and key[1] == ":"):
        raise InvalidKey(f"invalid key {key!r}: must be relative to the store root")
    parts = key.replace("\\", "/").split("/")
    if any(p in ("..", ".") for p in parts):
        raise InvalidKey(f"invalid key {key!r}: '.' and '..' components are not allowed")
    if key.endswith("/"):
        raise InvalidKey(f"invalid key {key!r}: must not end with '/'")
    return key


def check_prefix(prefix: str) -> str:
    if prefix == "":
        return prefix
    if "\x00" in prefix or prefix.startswith("/") or ".." in prefix.replace("\\", "/").split("/"):
        raise InvalidKey(f"invalid prefix {prefix!r}")
    return prefix


class RequestCounts:
    """Thread-safe tally of store requests by kind (get, put, list, head, delete)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._counts[kind] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class Store(abc.ABC):
    """An object store rooted at ``url``. Subclasses implement the ``_``-prefixed methods."""

    #: URL schemes this backend serves, e.g. ("s3",).
    schemes: tuple[str, ...] = ()

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") if url not in ("/",) else url
        self.requests = RequestCounts()

    # -- backend interface ------------------------------------------------------------------
    @abc.abstractmethod
    def _get_range(self, key: str, start: int, end: int | None) -> bytes:
        """Bytes [start, end) of the object, clipped to its size; raise NotFound if absent."""

    @abc.abstractmethod
    def _put(self, key: str, data: bytes) -> None:
        """Store ``data`` atomically: readers see the old object or the new one, never a mix."""

    @abc.abstractmethod
    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order, across all pages."""

    @abc.abstractmethod
    def _head(self, key: str) -> ObjectInfo | None:
        """Size of the object, or None when it does not exist."""

    @abc.abstractmethod
    def _delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""

    def _put_file(self, key: str, path: str) -> None:
        with open(path, "rb") as f:
            self._put(key, f.read())

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only if no object has the key; True when this call created it.

        Backends with a conditional write (S3's ``If-None-Match: *``, a hard link) override this;
        the fallback here is a head then a put, which two racing writers can both pass.
        """
        if self._head(key) is not None:
            return False
        self._put(key, data)
        return True

    def _delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self._delete(key)

    def _copy_from(self, src: "Store", src_key: str, key: str) -> bool:
        """Server-side copy of ``src_key`` in ``src`` to ``key`` here; False when unsupported."""
        return False

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""

    # -- retries ----------------------------------------------------------------------------
    def _retry(self, fn, *args):  # type: ignore[no-untyped-def]
        """Run one backend request, repeating it while it fails with TransientStoreError."""
        for attempt in range(1, REQUEST_ATTEMPTS + 1):
            try:
                return fn(*args)
            except TransientStoreError as e:
                if attempt == REQUEST_ATTEMPTS:
                    raise
                self.requests.add("retry")
                delay = min(2.0, REQUEST_BACKOFF * 2 ** (attempt - 1)) * (0.5 + random.random())
                log.debug("%s: %s; retrying in %.2f s", self, e, delay)
                time.sleep(delay)

    # -- public interface -------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        self.requests.add("get")
        return self._retry(self._get_range, check_key(key), 0, None)

    def get_range(self, key: str, start: int, end: int | None = None) -> bytes:
        """Bytes [start, end) of an object; ``end=None`` reads to the end; past the end is b''."""
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range [{start}, {end}) for {key!r}")
        self.requests.add("get")
        if end is not None and end == start:
            self._require(key)
            return b""
        return self._retry(self._get_range, check_key(key), start, end)

    def open_range(self, key: str, start: int = 0, end: int | None = None,
                   block: int = STREAM_BLOCK) -> BinaryIO:
        """A read-only stream over bytes [start, end), fetched ``block`` bytes at a time."""
        return _RangeStream(self, key, start, end, block)

    def put(self, key: str, data: bytes) -> None:
        self.requests.add("put")
        self._retry(self._put, check_key(key), bytes(data))

    def put_file(self, key: str, path: str) -> None:
        """Upload a local file (multipart where the backend supports it)."""
        self.requests.add("put")
        self._retry(self._put_file, check_key(key), path)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` unless it exists; True when this call created it.

        After a transient failure the request is repeated, and a repeat may find the object
        its own first try created: callers that must know who won read the object back.
        """
        self.requests.add("put")
        return self._retry(self._put_if_absent, check_key(key), bytes(data))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` (a plain string prefix, as in S3), in key order."""
        self.requests.add("list")
        check_prefix(prefix)
        last: str | None = None
        for attempt in range(1, REQUEST_ATTEMPTS + 1):
            try:
                # Keys come in order, so a listing that broke off resumes after the last key.
                for info in self._list(prefix):
                    if last is not None and info.key <= last:
                        continue
                    last = info.key
                    yield info
                return
            except TransientStoreError:
                if attempt == REQUEST_ATTEMPTS:
                    raise
                self.requests.add("retry")
                time.sleep(min(2.0, REQUEST_BACKOFF * 2 ** (attempt - 1)) * (0.5 + random.random()))

    def head(self, key: str) -> ObjectInfo | None:
        self.requests.add("head")
        return self._retry(self._head, check_key(key))

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def delete(self, key: str) -> None:
        self.requests.add("delete")
        self._retry(self._delete, check_key(key))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many were deleted."""
        keys = [o.key for o in self.list(prefix)]
        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            self.requests.add("delete")
            self._retry(self._delete_many, batch)
        return len(keys)

    def child_url(self, key: str) -> str:
        return f"{self.url}/{key}" if key else self.url

    def _require(self, key: str) -> None:
        if self._retry(self._head, check_key(key)) is None:
            raise NotFound(f"no such object: {self.child_url(key)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class _RangeStream(io.RawIOBase):
    """Reads a byte range lazily, one ranged GET per block, so memory stays at one block."""

    def __init__(self, store: Store, key: str, start: int, end: int | None, block: int) -> None:
        self._store, self._key, self._pos, self._end, self._block = store, key, start, end, block
        self._buf = b""
        self._off = 0
        self._eof = False
        self._started = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        if self._eof:
            return
        stop = self._pos + self._block
        if self._end is not None:
            stop = min(stop, self._end)
        if stop <= self._pos:
            self._eof = True
            if not self._started:
                self._store._require(self._key)  # an empty range of a missing object
            return
        self._started = True
        data = self._store.get_range(self._key, self._pos, stop)
        # A short read means the object ended before the range did.
        if len(data) < stop - self._pos or not data:
            self._eof = True
        self._pos += len(data)
        if self._end is not None and self._pos >= self._end:
            self._eof = True
        self._buf = data

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._off >= len(self._buf):
            self._buf, self._off = b"", 0
            self._fill()
        n = min(len(b), len(self._buf) - self._off)
        b[:n] = self._buf[self._off:self._off + n]
        self._off += n
        return n


def copy_object(src: Store, src_key: str, dst: Store, dst_key: str) -> None:
    """Copy one object between stores (or within one): server-side where the backend can,
    else streamed through a local temporary file, so memory holds one block at a time."""
    check_key(src_key)
    check_key(dst_key)
    dst.requests.add("put")
    if dst._retry(dst._copy_from, src, src_key, dst_key):
        return
    fd, path = tempfile.mkstemp(prefix="smr-copy-")
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(src.open_range(src_key), f, STREAM_BLOCK)
        dst._retry(dst._put_file, dst_key, path)
    finally:
        os.unlink(path)
