"""``smr serve``: the local function host that keeps a work dir's embedded triggers live.

It delivers the embedded store's queued notifications to the coordinator function (removing each
event only after its invocation succeeded: at least once), polls the watched prefixes of triggers
on stores without notifications, and runs every function the coordinators and tasks invoke. No
client is involved: jobs are planned and advanced by the coordinator function.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from concurrent.futures import Future
from typing import Any

from . import triggers
from .storage import Store, local_events, open_store

log = logging.getLogger(__name__)

#: Deliveries of one event before it is moved to the queue's failed/ directory.
MAX_DELIVERIES = 3


class Server:
    def __init__(self, work_url: str, *, store_options: dict[str, Any] | None = None,
                 memory_mb: int = 1024, timeout_s: float = 900, concurrency: int = 4,
                 poll_interval: float = 1.0) -> None:
        from .platforms.local import LocalPlatform
        self.work_url = work_url
        self.options = store_options or {}
        self.work: Store = open_store(work_url, self.options)
        self.queue = local_events.queue_dir(self.work.url)
        os.makedirs(self.queue, exist_ok=True)
        self.poll_interval = poll_interval
        env = {"SMR_WORK_DIR": self.work.url}
        self.platform = LocalPlatform(memory_mb=memory_mb, timeout_s=timeout_s,
                                      concurrency=concurrency, env=env)
        self.inflight: dict[str, Future] = {}
        self.deliveries: dict[str, int] = {}
        self.seen: dict[str, dict[str, int]] = {}   # polled trigger -> keys already reported
        self.stop = threading.Event()
        self.recovering: list[Future] = []
        self._last_sync = 0.0

    def close(self) -> None:
        self.platform.close()

    def recover(self) -> list[str]:
        """Relaunch the unfinished tasks of this work dir's event-started jobs.

        A server that stopped took its functions with it; nothing else would ever raise the
        commit events those jobs wait for. Committed tasks are not run again.
        """
        from .jobstate import list_jobs
        stuck = [j["job_id"] for j in list_jobs(self.work)
                 if j["state"] == "running" and j.get("start") == "event"]
        for job_id in stuck:
            log.info("recovering event-started job %s", job_id)
            self.recovering.append(self.platform.invoke(
                {"role": "advance", "job_id": job_id, "relaunch": True,
                 "work": self.work.url, "store_options": self.options}))
        return stuck

    def run(self, idle_exit: float | None = None, recover: bool = True) -> None:
        """Serve until ``stop`` is set (or, with ``idle_exit``, after that long with no events)."""
        if recover:
            self.recover()
        idle_since = time.time()
        while not self.stop.is_set():
            busy = self.step()
            if busy:
                idle_since = time.time()
            elif idle_exit is not None and time.time() - idle_since > idle_exit:
                return
            self.stop.wait(0.02 if busy else 0.1)

    def step(self) -> bool:
        now = time.time()
        if now - self._last_sync >= self.poll_interval:
            self._last_sync = now
            regs = triggers.sync_subscriptions(self.work)
            self._poll(regs)
        self._reap()
        self._deliver()
        for fut in [f for f in self.recovering if f.done()]:
            self.recovering.remove(fut)
            if fut.exception() is not None:
                log.error("could not recover a job: %s", fut.exception())
        return bool(self.inflight) or bool(self._pending()) or bool(self.recovering)

    def _pending(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.queue)
                          if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return []

    def _deliver(self) -> None:
        limit = max(2, self.platform.concurrency)
        for name in self._pending():
            if name in self.inflight:
                continue
            if len(self.inflight) >= limit:
                break
            try:
                with open(os.path.join(self.queue, name)) as f:
                    event = json.load(f)
            except (OSError, ValueError):
                continue
            event["work"] = self.work.url
            event["store_options"] = self.options
            self.deliveries[name] = self.deliveries.get(name, 0) + 1
            self.inflight[name] = self.platform.invoke(event)

    def _reap(self) -> None:
        for name, fut in list(self.inflight.items()):
            if not fut.done():
                continue
            del self.inflight[name]
            path = os.path.join(self.queue, name)
            exc = fut.exception()
            if exc is None:
                _remove(path)
                self.deliveries.pop(name, None)
                continue
            log.warning("coordinator failed on event %s (delivery %d): %s", name,
                        self.deliveries.get(name, 0), exc)
            if self.deliveries.get(name, 0) >= MAX_DELIVERIES:
                failed = os.path.join(self.queue, "failed")
                os.makedirs(failed, exist_ok=True)
                try:
                    shutil.move(path, os.path.join(failed, name))
                except OSError:
                    pass
                log.error("event %s moved to %s after %d deliveries", name, failed,
                          MAX_DELIVERIES)

    def _poll(self, regs: list[dict[str, Any]]) -> None:
        """The polling watcher: report objects that appeared under a polled trigger's prefix."""
        for reg in regs:
            if reg.get("mode") != "poll":
                continue
            name = reg["name"]
            try:
                keys = triggers.list_watched(reg, self.options)
                seen = self.seen.get(name)
                if seen is None:
                    seen = triggers.read_poll_state(self.work, name) or {}
            except Exception as e:
                log.warning("trigger %s: cannot list %s: %s", name, reg["watch"], e)
                continue
            new = sorted(k for k in keys if k not in seen)
            for key in new:
                record = local_events.make_record(reg["watch"], key, keys[key],
                                                  f"{keys[key]}-poll", name, "smr:poll")
                local_events.write_event(self.queue, record)
            if new or len(keys) != len(seen):
                # Queued first, recorded second: a crash in between re-reports, never loses.
                triggers.write_poll_state(self.work, name, keys)
            self.seen[name] = keys


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
