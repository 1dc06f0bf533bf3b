"""Showing a running job: live bars on a terminal, plain log lines otherwise."""
from __future__ import annotations

import logging
import sys
import time
from typing import Any

from .driver import Progress

log = logging.getLogger("smr.progress")


class NullProgress(Progress):
    def __enter__(self) -> "NullProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class LogProgress(NullProgress):
    """One line at each phase start and end, and at most one line every few seconds between."""

    def __init__(self, every: float = 5.0, stream: Any = None) -> None:
        self.every = every
        self.stream = stream or sys.stderr
        self._started: dict[str, float] = {}
        self._last = 0.0

    def _say(self, text: str) -> None:
        print(f"[smr] {text}", file=self.stream, flush=True)

    def job_started(self, job_id: str, work_url: str) -> None:
        self._say(f"job {job_id} (work dir {work_url})")

    def phase_started(self, name: str, total_tasks: int, total_bytes: int) -> None:
        self._started[name] = time.time()
        self._say(f"{name}: {total_tasks} tasks, {total_bytes / 2**20:.1f} MB")

    def task_done(self, name: str, done: int, total: int, bytes_done: int) -> None:
        now = time.time()
        if done < total and now - self._last < self.every:
            return
        self._last = now
        secs = max(now - self._started.get(name, now), 1e-9)
        self._say(f"{name}: {done}/{total} tasks, {bytes_done / 2**20:.1f} MB, "
                  f"{bytes_done / 2**20 / secs:.1f} MB/s")

    def task_retry(self, name: str, task: int, kind: str, message: str) -> None:
        self._say(f"{name}: task {task} failed ({kind}): {message}; retrying")

    def phase_finished(self, name: str, seconds: float) -> None:
        self._say(f"{name}: done in {seconds:.2f} s")


class RichProgress(NullProgress):
    """A bar per phase: tasks done/total, bytes, throughput, elapsed."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bars,
                                   TextColumn, TimeElapsedColumn)
        self._bars = Bars(TextColumn("[bold]{task.description:<16}"), BarColumn(),
                          MofNCompleteColumn(), TextColumn("{task.fields[mb]:>9.1f} MB"),
                          TextColumn("{task.fields[rate]:>7.1f} MB/s"), TimeElapsedColumn(),
                          console=console or Console(stderr=True), transient=False)
        self._ids: dict[str, Any] = {}
        self._started: dict[str, float] = {}

    def __enter__(self) -> "RichProgress":
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    def job_started(self, job_id: str, work_url: str) -> None:
        self._bars.console.print(f"[dim]job {job_id} (work dir {work_url})")

    def phase_started(self, name: str, total_tasks: int, total_bytes: int) -> None:
        self._started[name] = time.time()
        self._ids[name] = self._bars.add_task(name, total=total_tasks, mb=0.0, rate=0.0)

    def task_done(self, name: str, done: int, total: int, bytes_done: int) -> None:
        secs = max(time.time() - self._started.get(name, time.time()), 1e-9)
        mb = bytes_done / 2**20
        self._bars.update(self._ids[name], completed=done, mb=mb, rate=mb / secs)

    def task_retry(self, name: str, task: int, kind: str, message: str) -> None:
        self._bars.console.print(f"[yellow]{name}: task {task} failed ({kind}): {message}; retrying")

    def phase_finished(self, name: str, seconds: float) -> None:
        task_id = self._ids.get(name)
        if task_id is not None:
            self._bars.update(task_id, completed=self._bars.tasks[task_id].total)
