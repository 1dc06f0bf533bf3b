"""``smr ls``, ``smr cat`` and ``smr cp``: look at and move data in any store.

Every command takes local paths, ``s3://bucket/prefix`` and fsspec URLs alike, so uploading
inputs, inspecting work dirs and downloading results need no other tool.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterable

import click

from .cli import SmrError, main
from .storage import ObjectInfo, Store, StoreError, open_store, split_url, url_scheme

#: Bytes per read when streaming an object (to stdout or to a temp file).
CHUNK = 8 * 2**20
#: Objects copied at once by a recursive ``cp``.
COPY_THREADS = 8

endpoint_option = click.option("--s3-endpoint", help="S3 endpoint URL for S3-compatible stores "
                               "(default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL).")


@dataclass
class Target:
    """What a URL names: one object (``key`` set) or everything under a prefix (``key`` None)."""

    url: str
    store: Store
    key: str | None = None
    size: int = 0

    @property
    def is_object(self) -> bool:
        return self.key is not None


def _options(s3_endpoint: str | None, concurrency: int = 16) -> dict[str, Any]:
    opts: dict[str, Any] = {"s3_concurrency": concurrency}
    if s3_endpoint:
        opts["s3_endpoint"] = s3_endpoint
    return opts


def _norm(url: str) -> str:
    if url_scheme(url) in ("", "file"):
        path = url[len("file://"):] if url.startswith("file://") else url
        return os.path.abspath(os.path.expanduser(path)) if path else os.getcwd()
    return url


def resolve(url: str, options: dict[str, Any]) -> Target:
    """An object if the URL names one, else the prefix (directory) it names."""
    url = _norm(url)
    if not url.endswith("/"):
        parent, name = split_url(url)
        if name:
            store = open_store(parent, options)
            info = store.head(name)
            if info is not None:
                return Target(url, store, name, info.size)
    return Target(url.rstrip("/") or url, open_store(url, options))


def _listing(t: Target) -> list[ObjectInfo]:
    objs = list(t.store.list(""))
    if not objs and not (url_scheme(t.url) in ("", "file") and os.path.isdir(t.url)):
        raise StoreError(f"no such object or prefix: {t.url}")
    return objs


def _run(fn: Any) -> Any:
    try:
        return fn()
    except StoreError as e:
        raise SmrError(str(e)) from None
    except BrokenPipeError:
        # `smr cat ... | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


# -- ls -------------------------------------------------------------------------------------
@main.command()
@click.argument("url")
@click.option("-l", "--long", "long_", is_flag=True, help="Show sizes (a directory: the total "
              "under it) and a total line.")
@click.option("-r", "--recursive", is_flag=True, help="List every object under URL, not just "
              "the first level.")
@endpoint_option
def ls(url: str, long_: bool, recursive: bool, s3_endpoint: str | None) -> None:
    """List the objects under URL (a directory, s3://bucket/prefix, ...) or one object.

    Directories (common key prefixes) end with '/'. Keys are shown relative to URL.
    """
    def go() -> None:
        t = resolve(url, _options(s3_endpoint))
        if t.is_object:
            _emit([(t.key.rsplit("/", 1)[-1], t.size)], long_)  # type: ignore[union-attr]
            return
        objs = _listing(t)
        rows: list[tuple[str, int]] = []
        if recursive:
            rows = [(o.key, o.size) for o in objs]
        else:
            dirs: dict[str, int] = {}
            for o in objs:
                head, sep, _ = o.key.partition("/")
                if sep:
                    dirs[head + "/"] = dirs.get(head + "/", 0) + o.size
                else:
                    rows.append((o.key, o.size))
            rows = sorted(rows + list(dirs.items()))
        _emit(rows, long_)
        if long_:
            click.echo(f"total: {len(objs)} object(s), {sum(o.size for o in objs)} bytes")
    _run(go)


def _emit(rows: Iterable[tuple[str, int]], long_: bool) -> None:
    rows = list(rows)
    if not long_:
        for name, _ in rows:
            click.echo(name)
        return
    width = max((len(str(size)) for _, size in rows), default=1)
    for name, size in rows:
        click.echo(f"{size:>{width}}  {name}")


# -- cat ------------------------------------------------------------------------------------
@main.command()
@click.argument("urls", nargs=-1, required=True)
@endpoint_option
def cat(urls: tuple[str, ...], s3_endpoint: str | None) -> None:
    """Print objects to stdout. A job's output URL prints its part files in order."""
    def go() -> None:
        out = getattr(sys.stdout, "buffer", sys.stdout)
        opts = _options(s3_endpoint)
        for url in urls:
            t = resolve(url, opts)
            if t.is_object:
                _stream(t.store, t.key, out)  # type: ignore[arg-type]
                continue
            keys = [o.key for o in t.store.list("")]
            parts = sorted(k for k in keys if k.startswith("part-") and "/" not in k)
            if not parts:
                if not keys:
                    raise StoreError(f"no such object: {t.url}")
                raise StoreError(f"{t.url} is a directory (prefix) with no part files; "
                                 "name an object, or see `smr ls`")
            if "_SUCCESS" not in keys:
                click.echo(f"smr: warning: {t.url} has no _SUCCESS: the output is incomplete "
                           "or still being written", err=True)
            for key in parts:
                _stream(t.store, key, out)
        out.flush()
    _run(go)


def _stream(store: Store, key: str, out: BinaryIO) -> None:
    with store.open_range(key, 0, None) as f:
        while chunk := f.read(CHUNK):
            out.write(chunk)


# -- cp -------------------------------------------------------------------------------------
@main.command()
@click.argument("src")
@click.argument("dst")
@click.option("-r", "--recursive", is_flag=True, help="Copy everything under SRC (a directory "
              "or prefix) into DST.")
@endpoint_option
def cp(src: str, dst: str, recursive: bool, s3_endpoint: str | None) -> None:
    """Copy SRC to DST, between any two stores (upload inputs, download results).

    An object goes to DST, or into DST when DST ends with '/' or is a local directory. With -r,
    the objects under SRC go under DST with their relative keys.
    """
    def go() -> None:
        opts = _options(s3_endpoint, COPY_THREADS * 2)
        t = resolve(src, opts)
        started = time.time()
        if t.is_object:
            dst_store, dst_key = _object_destination(dst, t.key.rsplit("/", 1)[-1], opts)  # type: ignore[union-attr]
            copy_object(t.store, t.key, t.size, dst_store, dst_key)  # type: ignore[arg-type]
            n, total, where = 1, t.size, dst_store.child_url(dst_key)
        else:
            if not recursive:
                raise StoreError(f"{t.url} is a directory (prefix), not an object: pass -r "
                                 "to copy everything under it")
            objs = _listing(t)
            dst_url = _norm(dst).rstrip("/") or "/"
            if _same_or_inside(dst_url, t.url):
                raise StoreError(f"cannot copy {t.url} into itself ({dst_url})")
            dst_store = open_store(dst_url, opts)
            with ThreadPoolExecutor(COPY_THREADS, thread_name_prefix="smr-cp") as ex:
                for f in [ex.submit(copy_object, t.store, o.key, o.size, dst_store, o.key)
                          for o in objs]:
                    f.result()
            n, total, where = len(objs), sum(o.size for o in objs), dst_store.url
        secs = max(time.time() - started, 1e-6)
        click.echo(f"copied {n} object(s), {total} bytes to {where} in {secs:.2f} s "
                   f"({total / secs / 2**20:.1f} MB/s)", err=True)
    _run(go)


def _same_or_inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def _object_destination(dst: str, name: str, opts: dict[str, Any]) -> tuple[Store, str]:
    norm = _norm(dst)
    local = url_scheme(norm) in ("", "file")
    if dst.endswith("/") or (local and os.path.isdir(norm)):
        return open_store(norm.rstrip("/") or "/", opts), name
    parent, key = split_url(norm)
    if not key:  # a bare bucket or root
        return open_store(norm, opts), name
    return open_store(parent, opts), key


def copy_object(src: Store, key: str, size: int, dst: Store, dst_key: str) -> None:
    """One object, streamed: small ones through memory, big ones through a temp file, so that
    memory stays at one chunk and the destination can upload in parts."""
    from .storage.local import LocalStore
    if isinstance(src, LocalStore) and not isinstance(dst, LocalStore):
        dst.put_file(dst_key, src._path(key))  # (local to local must copy: put_file links)
        return
    if not isinstance(dst, LocalStore) and dst._copy_from(src, key, dst_key):
        dst.requests.add("put")
        return  # server-side copy: no bytes through this machine
    if size <= CHUNK:
        dst.put(dst_key, src.get(key))
        return
    fd, tmp = tempfile.mkstemp(prefix="smr-cp-")
    try:
        with os.fdopen(fd, "wb") as f, src.open_range(key, 0, None) as body:
            shutil.copyfileobj(body, f, CHUNK)
        dst.put_file(dst_key, tmp)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
