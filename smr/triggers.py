"""Event triggers, MARLA's way of starting jobs: an upload under a watched prefix starts a job.

A trigger is registered in the work store (``triggers/<name>.json`` and the job's code in
``triggers/<name>.pkl``). Object-created notifications reach the coordinator function
(``smr.worker.coordinator``) in S3's shape; for each object it starts one job, or, with a
``window``, one job for every object that arrived within the same window of seconds. The job is
planned inside the coordinator, with no client; its id is derived from the object (or window), and
its spec is written create-once, so a notification delivered twice starts one job.

Where notifications come from:
- the embedded store sends them itself (``smr.storage.local_events``) and ``smr serve`` delivers
  them to the local function host;
- S3 sends bucket notifications straight to the coordinator Lambda (``smr deploy --platform
  lambda``);
- for stores without notifications (SeaweedFS), ``smr serve`` polls the watched prefix (``--poll``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import pickle
import re
import time
from typing import Any
from urllib.parse import unquote_plus

from . import jobstate, layout
from .config import JobSettings, make_settings
from .secrets import scrub
from .storage import Store, join_url, url_scheme

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: After a window ends, its opener waits this long for the events of objects written in it that
#: are still being delivered.
WINDOW_GRACE_S = 1.0
#: How long a late arrival waits for a closing window to name its members.
WINDOW_WAIT_S = 30.0


class TriggerError(ValueError):
    """A trigger cannot be registered or found; the message says which and why."""


def trigger_key(name: str) -> str:
    return f"triggers/{name}.json"


def trigger_code_key(name: str) -> str:
    return f"triggers/{name}.pkl"


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def register(work: Store, *, name: str, job: Any, settings: JobSettings, watch: str,
             output: str, window: float = 0.0, mode: str = "auto",
             platform: str = "local") -> dict[str, Any]:
    """Register (or replace) a trigger; returns its registration record."""
    from .coordinated import check_strategies
    from .driver import JobFailed
    from .jobload import pickle_job
    if not NAME.match(name):
        raise TriggerError(f"trigger name {name!r}: use lowercase letters, digits and '-' "
                           "(at most 63, starting with a letter or digit)")
    if window < 0:
        raise TriggerError(f"window {window}: must be 0 (a job per object) or positive seconds")
    if window and window + 5 > settings.timeout:
        raise TriggerError(f"window {window} s: must end well within the function timeout "
                           f"({settings.timeout} s), since the coordinator waits for it")
    for a, b, what in ((output, watch, "the watched prefix"), (output, work.url, "the work dir")):
        if _inside(a, b) or _inside(b, a):
            raise TriggerError(f"output {output} overlaps {what} {b}; keep them apart "
                               "(a job's output would trigger more jobs)")
    embedded = url_scheme(watch) in ("", "file")
    if mode == "auto":
        mode = "notify" if embedded or platform == "lambda" else "poll"
    if mode == "notify" and not embedded and platform != "lambda":
        raise TriggerError(f"{watch}: only the embedded store sends notifications to the local "
                           "host; use --poll for S3-compatible stores (or --platform lambda)")
    try:
        check_strategies(job, settings)
    except JobFailed as e:
        raise TriggerError(str(e)) from None
    reg = {"name": name, "job_class": type(job).__name__, "watch": watch.rstrip("/"),
           "output": output.rstrip("/"), "window": window, "mode": mode, "platform": platform,
           "settings": scrub(settings.model_dump(mode="json")),
           "created": dt.datetime.now(dt.timezone.utc).isoformat()}
    work.put(trigger_code_key(name), pickle_job(job))
    layout.write_json(work, trigger_key(name), reg)
    if mode == "notify" and embedded:
        _subscribe(work, reg)
    if mode == "poll":
        # What is there now is not new: the watcher reports only objects added from here on,
        # including those added while no `smr serve` was running.
        write_poll_state(work, name, list_watched(reg, settings.store_options()))
    return reg


def poll_state_key(name: str) -> str:
    return f"triggers/{name}/poll-state.json"


def list_watched(reg: dict[str, Any], options: dict[str, Any]) -> dict[str, int]:
    from .storage import open_store
    watch = reg["watch"]
    if url_scheme(watch) in ("", "file") and not os.path.isdir(_local_path(watch)):
        return {}
    return {o.key: o.size for o in open_store(watch, options).list("")}


def read_poll_state(work: Store, name: str) -> dict[str, int] | None:
    if work.head(poll_state_key(name)) is None:
        return None
    return layout.read_json(work, poll_state_key(name))


def write_poll_state(work: Store, name: str, seen: dict[str, int]) -> None:
    layout.write_json(work, poll_state_key(name), seen)


def _local_path(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def _subscribe(work: Store, reg: dict[str, Any]) -> None:
    from .storage import local_events
    path = _local_path(reg["watch"])
    os.makedirs(path, exist_ok=True)
    local_events.subscribe(reg["name"], path, local_events.queue_dir(work.url))


def unregister(work: Store, name: str) -> dict[str, Any]:
    from .storage import local_events
    reg = get(work, name)
    local_events.unsubscribe(name, local_events.queue_dir(work.url))
    work.delete(trigger_key(name))
    work.delete(trigger_code_key(name))
    work.delete(poll_state_key(name))
    return reg


def get(work: Store, name: str) -> dict[str, Any]:
    if work.head(trigger_key(name)) is None:
        raise TriggerError(f"no trigger {name!r} in {work.url} (see `smr triggers`)")
    return layout.read_json(work, trigger_key(name))


def list_triggers(work: Store) -> list[dict[str, Any]]:
    out = []
    for info in work.list("triggers/"):
        rest = info.key[len("triggers/"):]
        if "/" not in rest and rest.endswith(".json"):
            try:
                out.append(layout.read_json(work, info.key))
            except Exception:
                continue
    return out


def sync_subscriptions(work: Store) -> list[dict[str, Any]]:
    """Make sure every embedded trigger of this work dir has its subscription (``smr serve``)."""
    from .storage import local_events
    regs = list_triggers(work)
    have = {(s["id"], s["queue"]) for s in local_events.subscriptions()}
    queue = local_events.queue_dir(work.url)
    for reg in regs:
        if reg.get("mode") == "notify" and url_scheme(reg["watch"]) in ("", "file") \
                and (reg["name"], queue) not in have:
            _subscribe(work, reg)
    return regs


# -- events -------------------------------------------------------------------------------------

def object_url(record: dict[str, Any]) -> str:
    s3 = record["s3"]
    bucket = s3["bucket"]["name"]
    key = unquote_plus(s3["object"]["key"])  # S3 sends keys URL-encoded, spaces as '+'
    if record.get("eventSource") == "aws:s3":
        return f"s3://{bucket}/{key}"
    if url_scheme(bucket):
        return join_url(bucket, key)
    return os.path.join(bucket, *key.split("/"))


def _find(work: Store, record: dict[str, Any], url: str) -> dict[str, Any] | None:
    config_id = record["s3"].get("configurationId")
    if config_id and NAME.match(str(config_id)) and work.head(trigger_key(config_id)):
        reg = layout.read_json(work, trigger_key(config_id))
        if _inside(url, reg["watch"]):
            return reg
    for reg in list_triggers(work):
        if _inside(url, reg["watch"]) and url != reg["watch"]:
            return reg
    return None


def _digest(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()


def object_job_id(name: str, url: str, etag: str) -> str:
    """Deterministic, so every delivery of one upload's event names the same job."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", url.rsplit("/", 1)[-1]).strip("-").lower()[:32]
    return f"{name}-{base or 'object'}-{_digest(url, etag)[:10]}"


def on_upload(work: Store, record: dict[str, Any], launcher: Any) -> list[dict[str, Any]]:
    """Start (or join) the job for one uploaded object; safe to call twice for one upload."""
    url = object_url(record)
    reg = _find(work, record, url)
    if reg is None:
        log.info("no trigger watches %s; ignoring its event", url)
        return [{"object": url, "ignored": "no trigger"}]
    base = url.rsplit("/", 1)[-1]
    if base.startswith(("_", ".")) or _inside(url, reg["output"]) or _inside(url, work.url):
        return [{"object": url, "ignored": "hidden, or under the output or work dir"}]
    obj = record["s3"]["object"]
    etag = str(obj.get("eTag") or obj.get("sequencer") or obj.get("size", ""))
    if reg.get("window"):
        return [_join_window(work, reg, url, etag, launcher, str(record.get("eventTime", "")))]
    return [start_job(work, reg, [url], object_job_id(reg["name"], url, etag), launcher)]


def start_job(work: Store, reg: dict[str, Any], urls: list[str], job_id: str,
              launcher: Any) -> dict[str, Any]:
    from .coordinated import create_job
    created = False
    if work.head(layout.spec_key(job_id)) is None:
        settings = make_settings(**{k: v for k, v in reg["settings"].items() if v is not None})
        code = work.get(trigger_code_key(reg["name"]))
        job = pickle.loads(code)
        _, created = create_job(work, job_id=job_id, job=job, code=code, settings=settings,
                                inputs=urls, output_url=join_url(reg["output"], job_id),
                                work_url=work.url, start="event")
    adv = jobstate.advance(work, job_id, launcher, notify=True)
    return {"job_id": job_id, "created": created, "status": adv.status, "launched": adv.launched}


def _event_time(text: str) -> float:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def _join_window(work: Store, reg: dict[str, Any], url: str, etag: str, launcher: Any,
                 record_time: str = "") -> dict[str, Any]:
    """Add the object to the current window; the window's first object starts its job."""
    name, width = reg["name"], float(reg["window"])
    digest = _digest(url, etag)[:20]
    claim_key = f"triggers/{name}/objects/{digest}.json"
    if not work.put_if_absent(claim_key, b"{}"):
        # Another delivery of this event claimed the object; it is placed unless that one died
        # before placing it.
        placed = layout.read_json(work, claim_key).get("window")
        if placed is not None and work.exists(
                f"triggers/{name}/windows/{placed:012d}/members/{digest}.json"):
            return {"object": url, "window": placed, "duplicate": True}
    # The window is the one the object was written in (the event's time); an object whose window
    # already closed without it goes into the window open now.
    wid = int(_event_time(record_time) // width) if record_time else int(time.time() // width)
    for _ in range(1000):
        wdir = f"triggers/{name}/windows/{wid:012d}/"
        if work.head(wdir + "closed") is None:
            layout.write_json(work, f"{wdir}members/{digest}.json", {"url": url})
            if work.head(wdir + "closed") is None:
                break  # written before the window closed: its opener will see it
            if digest in _window_members(work, wdir):
                break
            work.delete(f"{wdir}members/{digest}.json")
        time.sleep(0.01)
        wid = max(wid + 1, int(time.time() // width))
    else:
        raise RuntimeError(f"could not place {url} in a window of trigger {name}")
    layout.write_json(work, claim_key, {"window": wid})
    if not work.put_if_absent(wdir + "opener", b""):
        return {"object": url, "window": wid, "joined": True}
    # This invocation opened the window: wait for its end, and then a little longer for the
    # events of objects written in it that are still on their way, then start one job.
    time.sleep(max(0.0, (wid + 1) * width - time.time()) + WINDOW_GRACE_S)
    work.put(wdir + "closed", b"")
    members = sorted(jobstate._names(work, f"{wdir}members/"))
    urls = sorted(layout.read_json(work, f"{wdir}members/{m}.json")["url"] for m in members)
    job_id = f"{name}-w{wid:012d}"
    layout.write_json(work, wdir + "started", {"members": members, "job_id": job_id})
    return start_job(work, reg, urls, job_id, launcher)


def _window_members(work: Store, wdir: str) -> list[str]:
    deadline = time.time() + WINDOW_WAIT_S
    while work.head(wdir + "started") is None:
        if time.time() > deadline:
            raise RuntimeError(f"window {wdir} closed but never started its job")
        time.sleep(0.05)
    return layout.read_json(work, wdir + "started")["members"]
