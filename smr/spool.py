"""Scratch output that stays in memory while small and moves to the function's local disk.

Tiny tasks then never create a file (file creation dominates their cost), while big ones never
hold more than ``max_memory`` bytes in memory.
"""
from __future__ import annotations

import io
import os
import tempfile
from typing import BinaryIO

from .storage.base import Store


def function_tmp() -> str | None:
    """The function's private scratch directory (Lambda's /tmp), if the host set one."""
    return os.environ.get("SMR_FUNCTION_TMP") or None


class Spool:
    def __init__(self, max_memory: int) -> None:
        self.max_memory = max_memory
        self._f: BinaryIO = io.BytesIO()
        self.path: str | None = None
        self.size = 0

    def write(self, data: bytes) -> int:
        if self.path is None and self.size + len(data) > self.max_memory:
            self._to_disk()
        self._f.write(data)
        self.size += len(data)
        return len(data)

    def _to_disk(self) -> None:
        fd, path = tempfile.mkstemp(prefix="smr-spool-", dir=function_tmp())
        f = os.fdopen(fd, "w+b")
        f.write(self._f.getvalue())  # type: ignore[attr-defined]
        self._f, self.path = f, path

    def copy_to(self, out: "Spool | BinaryIO") -> None:
        if self.path is None:
            out.write(self._f.getvalue())  # type: ignore[attr-defined]
            return
        self._f.flush()
        self._f.seek(0)
        while chunk := self._f.read(1 << 22):
            out.write(chunk)

    def small_value(self, limit: int) -> bytes | None:
        """The content, if it is in memory and at most ``limit`` bytes; else None."""
        if self.path is None and self.size <= limit:
            return self._f.getvalue()  # type: ignore[attr-defined]
        return None

    def upload(self, store: Store, key: str) -> None:
        """Store the content as one object: a plain put from memory, else a (multipart) upload."""
        if self.path is None:
            store.put(key, self._f.getvalue())  # type: ignore[attr-defined]
        else:
            self._f.flush()
            store.put_file(key, self.path)

    def close(self) -> None:
        self._f.close()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
