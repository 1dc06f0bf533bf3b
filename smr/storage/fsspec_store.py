"""Any fsspec filesystem as a store: gs://, az://, hdfs://, http(s)://, memory://, ...

One generic backend, chosen by URL scheme: fsspec resolves the scheme to its filesystem class
(installing that class's package, e.g. gcsfs or adlfs, is up to the user; the error says which).
s3:// is not served here but by the boto3 store, which handles retries, multipart and forks.

Two schemes behave differently, and the store says so in its errors:

- ``http://`` / ``https://`` are read-only, and a listing covers one URL only (a web server
  has no listing API; scraping index pages is guesswork). Reads use Range requests.
- ``memory://`` lives inside one process: a job using it must run on the ``inline`` platform,
  since worker processes would each see their own, empty, memory filesystem.

The filesystem object is made per process (fsspec's async filesystems hold an event loop and
connection pool that must not cross a fork).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Iterator, TypeVar

import fsspec
import fsspec.config

from .base import NotFound, ObjectInfo, Store, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_ONLY = ("http", "https")
PROCESS_LOCAL = ("memory",)
_MEMORY_LOCK = threading.Lock()


class FsspecStore(Store):
    def __init__(self, url: str, *, fsspec_options: dict[str, Any] | None = None,
                 max_attempts: int = 4, **_other_backends: Any) -> None:
        scheme, sep, _ = url.partition("://")
        if not sep:
            raise StoreError(f"not a URL: {url!r}")
        self.protocol = scheme.lower()
        try:
            self._cls = fsspec.get_filesystem_class(self.protocol)
        except ValueError:
            raise StoreError(f"unsupported URL scheme {self.protocol!r} in {url!r}: "
                             "not a local path, s3:// or a known fsspec protocol") from None
        except ImportError as e:
            raise StoreError(f"cannot open {url}: {e}") from None
        super().__init__(url.rstrip("/"))
        self.read_only = self.protocol in READ_ONLY
        #: True when the data lives in this process only (memory://).
        self.process_local = self.protocol in PROCESS_LOCAL
        self.root = self._cls._strip_protocol(url).rstrip("/")
        self._options = dict(fsspec_options or {})
        self._max_attempts = max(1, max_attempts)
        self._fs_obj: Any = None
        self._fs_pid = -1
        self._lock = threading.Lock()

    @property
    def fs(self) -> Any:
        pid = os.getpid()
        if self._fs_pid != pid:
            with self._lock:
                if self._fs_pid != pid:
                    # fsspec's own configuration (FSSPEC_<PROTOCOL>_<OPTION> variables and
                    # its config files) first, the store's options over it.
                    opts = fsspec.config.apply_config(self._cls, dict(self._options))
                    self._fs_obj = self._cls(skip_instance_cache=True, **opts)
                    self._fs_pid = pid
        return self._fs_obj

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_fs_obj=None, _fs_pid=-1, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        """Retry transient faults (connection errors, timeouts); NotFound is never transient."""
        for attempt in range(1, self._max_attempts + 1):
            try:
                return fn()
            except (StoreError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                    PermissionError, ValueError, TypeError):
                raise
            except Exception as e:
                if attempt == self._max_attempts or not _transient(e):
                    raise StoreError(f"{what} {self.child_url(key)} failed: "
                                     f"{type(e).__name__}: {e}") from None
                delay = min(5.0, 0.1 * 2 ** attempt)
                log.info("%s %s: %s; retry %d in %.1fs", what, self.child_url(key), e, attempt, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _not_writable(self, key: str) -> StoreError:
        return StoreError(f"cannot write {self.child_url(key)}: {self.protocol}:// URLs are "
                          "read-only; write to a local path, s3:// or another writable store")

    # -- the Store seam ---------------------------------------------------------------------
    def _get_range(self, key: str, start: int, end: int | None) -> bytes:
        path = self._path(key)
        try:
            data = self._call("read", key, lambda: self.fs.cat_file(path, start=start, end=end))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no such object: {self.child_url(key)}") from None
        except StoreError:
            # An HTTP server answers a range past the end with 416: an empty read, if it exists.
            info = self._head(key)
            if info is None:
                raise NotFound(f"no such object: {self.child_url(key)}") from None
            if start >= info.size:
                return b""
            raise
        if end is not None and len(data) > end - start:
            data = data[start:end]  # the server ignored the Range header and sent everything
        return data

    def _put(self, key: str, data: bytes) -> None:
        if self.read_only:
            raise self._not_writable(key)
        path = self._path(key)
        self._call("write", key, lambda: self.fs.pipe_file(path, data))

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        if self.read_only:
            raise self._not_writable(key)
        if not self.process_local:
            return super()._put_if_absent(key, data)  # fsspec has no portable conditional write
        # memory:// lives in this process, so a process-wide lock makes check-and-put atomic.
        with _MEMORY_LOCK:
            if self._head(key) is not None:
                return False
            self._put(key, data)
            return True

    def _put_file(self, key: str, path: str) -> None:
        if self.read_only:
            raise self._not_writable(key)
        dest = self._path(key)
        self._call("write", key, lambda: self.fs.put_file(path, dest))

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        if self.read_only:
            # No listing API over HTTP: a "listing" names the one object, if it exists.
            info = self._head(prefix) if prefix else None
            if info is not None:
                yield info
            return
        base_dir = prefix.rpartition("/")[0]
        start = self._path(base_dir) if base_dir else self.root
        try:
            found = self._call("list", base_dir, lambda: self.fs.find(start, detail=True))
        except (FileNotFoundError, NotADirectoryError):
            return
        skip = len(self.root) + 1 if self.root else 0
        items = []
        for path, info in found.items():
            if info.get("type") != "file":
                continue
            path = path.rstrip("/")
            if self.root and not path.startswith(self.root + "/"):
                path = self._cls._strip_protocol(path)
                if not path.startswith(self.root + "/"):
                    continue
            key = path[skip:]
            if key.startswith(prefix):
                items.append(ObjectInfo(key, int(info.get("size") or 0)))
        items.sort(key=lambda o: o.key)
        yield from items

    def _head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            info = self._call("stat", key, lambda: self.fs.info(path))
        except (FileNotFoundError, NotADirectoryError) as e:
            # fsspec's http filesystem reports an unreachable server as a missing file.
            if e.__cause__ is not None and _transient(e.__cause__):
                raise StoreError(f"cannot reach {self.child_url(key)}: {e.__cause__}") from None
            return None
        if info.get("type") == "directory":
            return None
        size = info.get("size")
        if size is None:
            raise StoreError(f"{self.child_url(key)}: the server did not report a size")
        return ObjectInfo(key, int(size))

    def _delete(self, key: str) -> None:
        if self.read_only:
            raise self._not_writable(key)
        path = self._path(key)
        try:
            self._call("delete", key, lambda: self.fs.rm_file(path))
        except FileNotFoundError:
            pass


def _transient(err: BaseException) -> bool:
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    try:
        import aiohttp
    except ImportError:
        return False
    if isinstance(err, aiohttp.ClientResponseError):
        return err.status in (429, 500, 502, 503, 504)
    return isinstance(err, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError))
