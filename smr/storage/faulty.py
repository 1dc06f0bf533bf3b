"""A Store wrapper that injects transient request failures, for fault-injection runs.

``FaultyStore(inner, rate=0.05, seed="7/s0/map/3/1")`` fails about ``rate`` of its requests with
a ``TransientStoreError`` that reads like S3's throttling answer or a connection reset. Some
resets happen *after* a write took effect (the reply was lost), which is the case that makes a
retried write meet its own first try. The base Store's retry layer must absorb all of them, so a
job run through faulty stores produces exactly what it produces without them.

Which requests fail depends only on the seed and the request's ordinal, so a task that makes the
same requests in the same order meets the same faults on every run.
"""
from __future__ import annotations

import random
from typing import Callable, Iterator

from .base import ObjectInfo, Store, TransientStoreError

_THROTTLE = "SlowDown: Please reduce your request rate (injected fault)"
_RESET = "ConnectionResetError: [Errno 104] Connection reset by peer (injected fault)"


class FaultyStore(Store):
    """Delegates to ``inner``, failing some requests on the way (see the module docstring).

    ``on_request(n)`` is called before the n-th request (1-based), so a fault plan can act at a
    chosen point of a task, e.g. kill the function there.
    """

    def __init__(self, inner: Store, *, rate: float, seed: str,
                 on_request: Callable[[int], None] | None = None) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.requests = inner.requests  # one tally per store, wherever it is counted
        self.rate = rate
        self.seed = seed
        self.on_request = on_request
        self.count = 0
        self.injected = 0

    def _fault(self, write: bool) -> str | None:
        """Decide this request's fate: None, "before" (fail without acting) or "after"."""
        self.count += 1
        if self.on_request is not None:
            self.on_request(self.count)
        if self.rate <= 0:
            return None
        rng = random.Random(f"{self.seed}/{self.count}")
        if rng.random() >= self.rate:
            return None
        self.injected += 1
        if write and rng.random() < 0.5:
            return "after"
        return "before"

    def _raise(self) -> None:
        raise TransientStoreError(_THROTTLE if self.injected % 2 else _RESET)

    def _call(self, write: bool, fn, *args):  # type: ignore[no-untyped-def]
        mode = self._fault(write)
        if mode == "before":
            self._raise()
        result = fn(*args)
        if mode == "after":
            raise TransientStoreError(_RESET)
        return result

    def _get_range(self, key: str, start: int, end: int | None) -> bytes:
        return self._call(False, self.inner._get_range, key, start, end)

    def _put(self, key: str, data: bytes) -> None:
        self._call(True, self.inner._put, key, data)

    def _put_file(self, key: str, path: str) -> None:
        self._call(True, self.inner._put_file, key, path)

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        return self._call(True, self.inner._put_if_absent, key, data)

    def _copy_from(self, src: Store, src_key: str, key: str) -> bool:
        if isinstance(src, FaultyStore):
            src = src.inner
        return self._call(True, self.inner._copy_from, src, src_key, key)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        if self._fault(False) == "before":
            self._raise()
        yield from self.inner._list(prefix)

    def _head(self, key: str) -> ObjectInfo | None:
        return self._call(False, self.inner._head, key)

    def _delete(self, key: str) -> None:
        self._call(True, self.inner._delete, key)

    def _delete_many(self, keys: list[str]) -> None:
        self._call(True, self.inner._delete_many, keys)

    def child_url(self, key: str) -> str:
        return self.inner.child_url(key)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r}, rate={self.rate})"
