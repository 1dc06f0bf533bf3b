"""Runs invocations on threads inside the calling process: for debugging a job with pdb.

It enforces the payload limit but not memory or timeouts; use the local function host (the
default) to check that a job fits Lambda's limits.
"""
from __future__ import annotations

import json
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from .base import InvocationError, Platform, encode_event


class InlinePlatform(Platform):
    def __init__(self, *, memory_mb: int = 1024, timeout_s: float = 900, concurrency: int = 2) -> None:
        super().__init__(memory_mb=memory_mb, timeout_s=timeout_s, concurrency=concurrency)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="smr-inline")

    def invoke(self, event: dict[str, Any]) -> "Future[Any]":
        body = encode_event(event)
        self.stats.invocations += 1
        return self._pool.submit(self._run, body)

    def _run(self, body: bytes) -> Any:
        from ..worker.handler import handler
        ctx = SimpleNamespace(memory_limit_in_mb=self.memory_mb, cold_start=False,
                              aws_request_id="inline", function_name="smr-inline",
                              smr_invoke=self._invoke_events, smr_kind="inline")
        try:
            return json.loads(json.dumps(handler(json.loads(body), ctx)))
        except Exception as e:
            raise InvocationError("error", f"{type(e).__name__}: {e}", traceback.format_exc()) from e

    def _invoke_events(self, events: list[dict[str, Any]]) -> int:
        for event in events:
            self.invoke_event(event)
        return len(events)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
