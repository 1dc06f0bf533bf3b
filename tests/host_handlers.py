"""Handlers and a fault hook that tests/test_local_host.py runs inside local-host instances.

They live in their own module because instances import handlers by module name, never from the
test file's (or pytest's) main module.
"""
from __future__ import annotations

import json
import os
import signal
import tempfile
import time
import uuid
from typing import Any


def echo(event: dict[str, Any], context: Any) -> Any:
    return event


def pid(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"pid": os.getpid(), "cold_start": context.cold_start}


def explode_here(event: dict[str, Any], context: Any) -> None:
    raise ValueError("boom")


def exit_now(event: dict[str, Any], context: Any) -> None:
    os._exit(event.get("code", 3))


def kill_self(event: dict[str, Any], context: Any) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)
    time.sleep(10)


def sleep(event: dict[str, Any], context: Any) -> Any:
    time.sleep(event["seconds"])
    return event.get("tag")


def _touch(mb: int) -> bytearray:
    # calloc'd pages are not resident until written; Lambda meters what is resident.
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return block


def alloc(event: dict[str, Any], context: Any) -> int:
    block = _touch(event["mb"])
    time.sleep(event.get("hold", 0))
    return len(block)


def record(event: dict[str, Any], context: Any) -> int:
    start = time.time()
    time.sleep(event["seconds"])
    end = time.time()
    path = os.path.join(event["dir"], f"{uuid.uuid4().hex}.json")
    with open(path, "w") as f:
        json.dump({"start": start, "end": end, "pid": os.getpid(), "tag": event.get("tag")}, f)
    return os.getpid()


def context_info(event: dict[str, Any], context: Any) -> dict[str, Any]:
    first = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    second = context.get_remaining_time_in_millis()
    return {"aws_request_id": context.aws_request_id, "function_name": context.function_name,
            "memory_limit_in_mb": context.memory_limit_in_mb, "cold_start": context.cold_start,
            "invoked_function_arn": context.invoked_function_arn,
            "remaining": [first, second]}


def env_info(event: dict[str, Any], context: Any) -> dict[str, Any]:
    tmp = os.environ.get("SMR_FUNCTION_TMP")
    return {"env": {k: os.environ.get(k) for k in event["keys"]},
            "tmp_is_dir": bool(tmp) and os.path.isdir(tmp),
            "gettempdir": tempfile.gettempdir(), "pid": os.getpid()}


def not_json(event: dict[str, Any], context: Any) -> Any:
    return {1, 2}


class MarkFault:
    """Fault hook: leaves a mark the handler can see, or kills the instance on request."""

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir

    def before_invoke(self, event: dict[str, Any], context: Any) -> None:
        if event.get("fault") == "exit":
            os._exit(9)
        with open(os.path.join(self.marker_dir, f"{os.getpid()}-{context.aws_request_id}"), "w"):
            pass
        os.environ["SMR_FAULT_SEEN"] = "yes"
