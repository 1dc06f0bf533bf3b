"""Stores: one abstract seam (base.Store), one module per backend, chosen by URL scheme."""
from __future__ import annotations

from typing import Any

from .base import InvalidKey, NotFound, ObjectInfo, Store, StoreError

__all__ = ["InvalidKey", "NotFound", "ObjectInfo", "Store", "StoreError", "open_store",
           "url_scheme", "join_url", "split_url"]


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


def open_store(url: str, options: dict[str, Any] | None = None) -> Store:
    """A Store rooted at ``url``: a local path, ``file://``, ``s3://bucket/prefix``."""
    options = options or {}
    scheme = url_scheme(url)
    if scheme in ("", "file"):
        from .local import LocalStore
        return LocalStore(url)
    if scheme in ("s3", "s3a"):
        from .s3 import S3Store  # type: ignore[import-not-found]
        return S3Store(url, **{k: v for k, v in options.items() if v is not None})
    try:
        from .fsspec_store import FsspecStore  # type: ignore[import-not-found]
    except ImportError:
        raise StoreError(f"unsupported URL scheme {scheme!r} in {url!r}") from None
    return FsspecStore(url, **options)
