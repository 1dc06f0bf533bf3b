"""Stores: one abstract seam (base.Store), one module per backend, chosen by URL scheme."""
from __future__ import annotations

from typing import Any

from .base import InvalidKey, NotFound, ObjectInfo, Store, StoreError

__all__ = ["InvalidKey", "NotFound", "ObjectInfo", "Store", "StoreError", "open_store",
           "url_scheme", "join_url", "split_url", "process_local"]

#: Schemes whose data lives inside one process (fsspec's memory://).
PROCESS_LOCAL_SCHEMES = ("memory",)


def url_scheme(url: str) -> str:
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def join_url(url: str, *parts: str) -> str:
    out = url.rstrip("/")
    for p in parts:
        p = p.strip("/")
        if p:
            out = f"{out}/{p}"
    return out


def split_url(url: str) -> tuple[str, str]:
    """``s3://b/dir/name`` -> (``s3://b/dir``, ``name``); a bare bucket or root has no name."""
    url = url.rstrip("/") or "/"
    scheme = url_scheme(url)
    if not scheme:
        parent, name = url.rsplit("/", 1) if "/" in url else (".", url)
        return parent or "/", name
    body = url[len(scheme) + 3:]
    if "/" not in body:
        return url, ""
    parent, _, name = url.rpartition("/")
    return parent, name


def process_local(url: str) -> bool:
    """True when a URL's data is visible only to the process that wrote it (memory://)."""
    return url_scheme(url) in PROCESS_LOCAL_SCHEMES


def open_store(url: str, options: dict[str, Any] | None = None) -> Store:
    """A Store rooted at ``url``: a local path, ``file://``, ``s3://bucket/prefix``, or any
    other fsspec URL (gs://, az://, hdfs://, http(s)://, memory://, ...).

    fsspec is imported only here, when such a URL is used, so workers stay light."""
    options = options or {}
    scheme = url_scheme(url)
    if scheme in ("", "file"):
        from .local import LocalStore
        return LocalStore(url)
    if scheme in ("s3", "s3a"):
        from .s3 import S3Store
        return S3Store(url, **{k: v for k, v in options.items() if v is not None})
    try:
        from .fsspec_store import FsspecStore
    except ImportError:
        raise StoreError(f"unsupported URL scheme {scheme!r} in {url!r} "
                         "(other schemes need fsspec: pip install fsspec)") from None
    return FsspecStore(url, **options)
