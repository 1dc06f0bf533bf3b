"""The embedded store: a directory on local disk, with S3's semantics.

Like an S3 bucket it can send object-created notifications (see ``local_events``).
"""
from __future__ import annotations

import os
import uuid
from typing import Iterator

from . import local_events
from .base import NotFound, ObjectInfo, Store

#: Temporary files of in-flight puts carry this prefix and are never listed.
TMP_PREFIX = ".smr-tmp-"


class LocalStore(Store):
    schemes = ("file", "")

    def __init__(self, url: str) -> None:
        path = url[len("file://"):] if url.startswith("file://") else url
        self.root = os.path.abspath(os.path.expanduser(path))
        super().__init__(self.root)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def _get_range(self, key: str, start: int, end: int | None) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read() if end is None else f.read(max(0, end - start))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no such object: {self.child_url(key)}") from None

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._tmp_path(path)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        local_events.object_created(path, len(data))

    def _put_file(self, key: str, path: str) -> None:
        dest = self._path(key)
        tmp = self._tmp_path(dest)
        try:
            os.link(path, tmp)  # same filesystem: no copy at all
        except OSError:
            import shutil
            shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
        local_events.object_created(dest, os.path.getsize(dest))

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._tmp_path(path)
        with open(tmp, "wb") as f:
            f.write(data)
        try:
            os.link(tmp, path)  # atomic, and fails if the name exists: a true create-once
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)
        local_events.object_created(path, len(data))
        return True

    def _copy_from(self, src: "Store", src_key: str, key: str) -> bool:
        if not isinstance(src, LocalStore):
            return False
        source = src._path(src_key)
        if not os.path.isfile(source):
            raise NotFound(f"no such object: {src.child_url(src_key)}")
        self._put_file(key, source)
        return True

    def _tmp_path(self, path: str) -> str:
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        if os.path.isdir(path):
            raise IsADirectoryError(f"cannot write object {path!r}: a directory has that name")
        return os.path.join(parent, f"{TMP_PREFIX}{uuid.uuid4().hex}")

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the directory that can hold the prefix, then match as a string prefix.
        base_dir, _, _ = prefix.rpartition("/")
        start = self._path(base_dir) if base_dir else self.root
        if not os.path.isdir(start):
            return
        rel_base = base_dir + "/" if base_dir else ""
        yield from self._walk(start, rel_base, prefix)

    def _walk(self, directory: str, rel: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            return
        # Keys sort as strings with '/' separators, so a directory "a" sorts as "a/".
        items = []
        for e in entries:
            if e.name.startswith(TMP_PREFIX):
                continue
            key = rel + e.name
            if e.is_dir(follow_symlinks=True):
                items.append((key + "/", e, True))
            else:
                items.append((key, e, False))
        items.sort(key=lambda t: t[0])
        for key, e, is_dir in items:
            if is_dir:
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(e.path, key, prefix)
            elif key.startswith(prefix):
                try:
                    yield ObjectInfo(key, e.stat().st_size)
                except FileNotFoundError:
                    continue  # deleted while listing

    def _head(self, key: str) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not os.path.isfile(self._path(key)):
            return None
        return ObjectInfo(key, st.st_size)

    def _delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.remove(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return
        # Prune directories left empty, as S3 has no directories to leave behind.
        parent = os.path.dirname(path)
        while parent != self.root and parent.startswith(self.root):
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)
