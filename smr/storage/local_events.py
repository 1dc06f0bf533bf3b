"""Object-created notifications for the embedded store, shaped like S3's.

The embedded store is a directory, so its "bucket notification configuration" lives beside it, in
``$SMR_HOME/notifications/`` (``SMR_HOME`` defaults to ``~/.smr``): one JSON file per
subscription, ``{"id": ..., "path": <watched directory>, "queue": <queue directory>}``. Every put
through a ``LocalStore`` (in any process: a client, a worker, ``smr cp``) checks that directory (one
``stat`` while nothing changed) and, for an object under a watched path, appends an event file to
the subscription's queue. ``smr serve`` delivers queued events to the coordinator function and
removes each one only after the invocation succeeded, so delivery is at least once.

An event file holds one S3-style record: ``Records[0].s3.bucket.name`` is the watched directory,
``Records[0].s3.object.key`` the object's path below it, and ``s3.configurationId`` the
subscription's id (the trigger's name), so the same coordinator handles S3's notifications.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from typing import Any
from urllib.parse import quote_plus

log = logging.getLogger(__name__)

_lock = threading.Lock()
# A cache of the subscriptions, keyed by directory and invalidated by its mtime: not state, since
# it always equals what the directory says.
_cache: dict[str, tuple[int, list[dict[str, Any]]]] = {}


def smr_home() -> str:
    return os.environ.get("SMR_HOME") or os.path.join(os.path.expanduser("~"), ".smr")


def notifications_dir() -> str:
    return os.path.join(smr_home(), "notifications")


def queue_dir(work_url: str) -> str:
    """Where the events for the triggers of one work dir wait for ``smr serve``."""
    digest = hashlib.sha1(work_url.encode()).hexdigest()[:16]
    return os.path.join(smr_home(), "queues", digest)


def _config_path(sub_id: str, queue: str) -> str:
    digest = hashlib.sha1(f"{queue}\0{sub_id}".encode()).hexdigest()[:16]
    return os.path.join(notifications_dir(), f"{digest}.json")


def subscribe(sub_id: str, path: str, queue: str) -> None:
    """Send an event to ``queue`` for every object created under the directory ``path``."""
    os.makedirs(notifications_dir(), exist_ok=True)
    os.makedirs(queue, exist_ok=True)
    target = _config_path(sub_id, queue)
    tmp = f"{target}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "w") as f:
        json.dump({"id": sub_id, "path": os.path.abspath(path), "queue": queue}, f)
    os.replace(tmp, target)


def unsubscribe(sub_id: str, queue: str) -> bool:
    try:
        os.remove(_config_path(sub_id, queue))
        return True
    except FileNotFoundError:
        return False


def subscriptions() -> list[dict[str, Any]]:
    d = notifications_dir()
    try:
        mtime = os.stat(d).st_mtime_ns
    except OSError:
        return []
    with _lock:
        hit = _cache.get(d)
        if hit is not None and hit[0] == mtime:
            return hit[1]
    subs = []
    for name in sorted(os.listdir(d)):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(d, name)) as f:
                subs.append(json.load(f))
        except (OSError, ValueError):
            continue  # removed or being replaced meanwhile
    with _lock:
        _cache[d] = (mtime, subs)
    return subs


def object_created(path: str, size: int) -> None:
    """Called by the embedded store after an object was written at the absolute ``path``."""
    subs = subscriptions()
    if not subs:
        return
    for sub in subs:
        root = sub["path"].rstrip(os.sep)
        if not path.startswith(root + os.sep):
            continue
        key = os.path.relpath(path, root).replace(os.sep, "/")
        try:
            stat = os.stat(path)
            etag = f"{stat.st_size}-{stat.st_mtime_ns}"
        except OSError:
            etag = f"{size}-{time.time_ns()}"
        write_event(sub["queue"], make_record(root, key, size, etag, sub["id"], "smr:local"))


def make_record(bucket: str, key: str, size: int, etag: str, config_id: str,
                source: str) -> dict[str, Any]:
    """An S3 object-created notification with one record."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": source, "eventName": "ObjectCreated:Put",
        "eventTime": dt.datetime.now(dt.timezone.utc).isoformat(),
        "s3": {"s3SchemaVersion": "1.0", "configurationId": config_id,
               "bucket": {"name": bucket},
               "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag,
                          "sequencer": f"{time.time_ns():020X}"}},
    }]}


def write_event(queue: str, event: dict[str, Any]) -> str:
    os.makedirs(queue, exist_ok=True)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    tmp = os.path.join(queue, f".tmp-{name}")
    with open(tmp, "w") as f:
        json.dump(event, f)
    os.replace(tmp, os.path.join(queue, name))
    return name
