"""The local function host: results, failure kinds, limits, pooling, and clean shutdown."""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import wait
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest

# Instances import handlers by module name from the sys.path they inherit, so put this directory
# on it whatever pytest's import mode (and whether tests/ becomes a package later).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import host_handlers  # noqa: E402

from smr.platforms.base import ASYNC_PAYLOAD_LIMIT, InvocationError, PayloadTooLarge  # noqa: E402
from smr.platforms.context import FunctionContext  # noqa: E402
from smr.platforms.local import LocalPlatform  # noqa: E402

H = host_handlers.__name__


def handler(name: str) -> str:
    return f"{H}:{name}"


@pytest.fixture
def make() -> Iterator[Callable[..., LocalPlatform]]:
    made: list[LocalPlatform] = []

    def factory(name: str = "echo", **kw: Any) -> LocalPlatform:
        kw.setdefault("memory_mb", 256)
        kw.setdefault("timeout_s", 10.0)
        kw.setdefault("concurrency", 1)
        platform = LocalPlatform(handler=handler(name), **kw)
        made.append(platform)
        return platform

    yield factory
    for platform in made:
        platform.close()


def failure(future: Any, timeout: float = 20) -> InvocationError:
    exc = future.exception(timeout=timeout)
    assert isinstance(exc, InvocationError), exc
    return exc


def leaked_processes() -> list[psutil.Process]:
    """Live function instances: the forkserver's children, and our instance Process objects.

    Only instances count: other fixtures in the suite may keep servers of their own running.
    """
    leaked = [psutil.Process(p.pid) for p in multiprocessing.active_children()
              if p.name == "smr-local-instance"]
    for child in psutil.Process().children():
        try:
            if any("multiprocessing.forkserver" in part for part in child.cmdline()):
                leaked += [c for c in child.children() if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            pass
    return leaked


def slot_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("smr-local-slot")]


def test_result_round_trip(make: Callable[..., LocalPlatform]) -> None:
    platform = make("echo")
    event = {"a": 1, "b": [1, 2.5, "x", None, True], "c": {"nested": "ü"}}
    assert platform.invoke(event).result(timeout=20) == event
    big = {"x": "a" * (200 * 1024)}  # under the async payload limit
    assert platform.invoke(big).result(timeout=20) == big
    assert platform.stats.invocations == 2


def test_handler_exception_is_error_with_traceback(make: Callable[..., LocalPlatform]) -> None:
    platform = make("explode_here")
    exc = failure(platform.invoke({}))
    assert exc.kind == "error"
    assert exc.message == "ValueError: boom"
    assert "explode_here" in exc.traceback and "Traceback" in exc.traceback
    # An error leaves the instance alive and warm.
    assert failure(platform.invoke({})).kind == "error"
    assert platform.stats.cold_starts == 1
    assert platform.stats.failures == {"error": 2}


def test_missing_handler_is_error(make: Callable[..., LocalPlatform]) -> None:
    exc = failure(make("no_such_function").invoke({}))
    assert exc.kind == "error" and exc.message.startswith("AttributeError")


def test_unserializable_result_is_error(make: Callable[..., LocalPlatform]) -> None:
    exc = failure(make("not_json").invoke({}))
    assert exc.kind == "error" and "MarshalError" in exc.message


def test_exit_is_crash(make: Callable[..., LocalPlatform]) -> None:
    platform = make("exit_now")
    exc = failure(platform.invoke({"code": 3}))
    assert exc.kind == "crash" and "code 3" in exc.message
    assert platform.stats.failures == {"crash": 1}


def test_signal_is_crash(make: Callable[..., LocalPlatform]) -> None:
    exc = failure(make("kill_self").invoke({}))
    assert exc.kind == "crash" and "SIGSEGV" in exc.message


def test_after_crash_a_new_process_cold_starts(make: Callable[..., LocalPlatform],
                                               tmp_path: Path) -> None:
    platform = make("pid", faults=host_handlers.MarkFault(str(tmp_path)))
    first = platform.invoke({}).result(timeout=20)
    exc = failure(platform.invoke({"fault": "exit"}))
    assert exc.kind == "crash" and "code 9" in exc.message
    second = platform.invoke({}).result(timeout=20)
    assert second["pid"] != first["pid"]
    assert second["cold_start"] is True
    assert platform.stats.cold_starts == 2
    assert not psutil.pid_exists(first["pid"]) or \
        psutil.Process(first["pid"]).status() == psutil.STATUS_ZOMBIE


def test_timeout_kills_and_host_recovers(make: Callable[..., LocalPlatform]) -> None:
    platform = make("sleep", timeout_s=1.0)
    t0 = time.monotonic()
    exc = failure(platform.invoke({"seconds": 30}))
    elapsed = time.monotonic() - t0
    assert exc.kind == "timeout"
    assert 0.9 <= elapsed < 10, elapsed
    assert platform.invoke({"seconds": 0, "tag": "next"}).result(timeout=20) == "next"
    assert platform.stats.cold_starts == 2
    assert platform.stats.failures == {"timeout": 1}


def test_resident_memory_over_limit_is_oom(make: Callable[..., LocalPlatform]) -> None:
    platform = make("alloc", memory_mb=200)
    exc = failure(platform.invoke({"mb": 300, "hold": 5}))
    assert exc.kind == "oom"
    assert "200 MB" in exc.message
    # Within the limit, the replacement instance works.
    assert platform.invoke({"mb": 20}).result(timeout=20) == 20 * 2**20
    assert platform.stats.failures == {"oom": 1}


def test_short_memory_spike_is_oom_too(make: Callable[..., LocalPlatform]) -> None:
    # Returns at once: the host may never sample RSS during the spike, but the high-water mark
    # the instance reports with its result still shows it.
    exc = failure(make("alloc", memory_mb=200).invoke({"mb": 300}))
    assert exc.kind == "oom"


def test_oversized_event_is_rejected_at_once(make: Callable[..., LocalPlatform]) -> None:
    platform = make("echo")
    with pytest.raises(PayloadTooLarge) as info:
        platform.invoke({"x": "a" * ASYNC_PAYLOAD_LIMIT})
    assert info.value.kind == "payload"
    assert platform.stats.invocations == 0
    assert platform.stats.failures == {"payload": 1}
    assert platform.stats.cold_starts == 0


def test_at_most_concurrency_instances_run(make: Callable[..., LocalPlatform],
                                           tmp_path: Path) -> None:
    platform = make("record", concurrency=2)
    futures = [platform.invoke({"seconds": 0.3, "dir": str(tmp_path), "tag": i})
               for i in range(6)]
    pids = {f.result(timeout=30) for f in futures}
    assert len(pids) <= 2
    assert platform.stats.cold_starts <= 2
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert len(records) == 6
    # Sweep the intervals; at equal times an end is processed before a start.
    edges = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records],
                   key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak <= 2


def test_queue_is_fifo(make: Callable[..., LocalPlatform], tmp_path: Path) -> None:
    platform = make("record", concurrency=1)
    futures = [platform.invoke({"seconds": 0.01, "dir": str(tmp_path), "tag": i})
               for i in range(8)]
    wait(futures, timeout=30)
    records = sorted((json.loads(p.read_text()) for p in tmp_path.glob("*.json")),
                     key=lambda r: r["start"])
    assert [r["tag"] for r in records] == list(range(8))


def test_cancelled_queued_call_does_not_run(make: Callable[..., LocalPlatform],
                                            tmp_path: Path) -> None:
    platform = make("record", concurrency=1)
    first = platform.invoke({"seconds": 0.3, "dir": str(tmp_path), "tag": "first"})
    second = platform.invoke({"seconds": 0, "dir": str(tmp_path), "tag": "second"})
    assert second.cancel()
    third = platform.invoke({"seconds": 0, "dir": str(tmp_path), "tag": "third"})
    wait([first, third], timeout=20)
    tags = sorted(json.loads(p.read_text())["tag"] for p in tmp_path.glob("*.json"))
    assert tags == ["first", "third"]


def test_warm_reuse(make: Callable[..., LocalPlatform]) -> None:
    platform = make("pid", concurrency=1)
    results = [platform.invoke({}).result(timeout=20) for _ in range(10)]
    assert len({r["pid"] for r in results}) == 1
    assert [r["cold_start"] for r in results] == [True] + [False] * 9
    assert platform.stats.cold_starts == 1
    assert platform.stats.invocations == 10


def test_idle_warm_instance_is_preferred(make: Callable[..., LocalPlatform]) -> None:
    platform = make("pid", concurrency=4)
    results = [platform.invoke({}).result(timeout=20) for _ in range(5)]
    assert len({r["pid"] for r in results}) == 1
    assert platform.stats.cold_starts == 1


def test_context_fields(make: Callable[..., LocalPlatform]) -> None:
    platform = make("context_info", memory_mb=300, timeout_s=5.0)
    one = platform.invoke({}).result(timeout=20)
    two = platform.invoke({}).result(timeout=20)
    assert one["function_name"] == "smr-local"
    assert one["invoked_function_arn"] == "local"
    assert one["memory_limit_in_mb"] == 300
    assert one["cold_start"] is True and two["cold_start"] is False
    assert one["aws_request_id"] != two["aws_request_id"]
    first, second = one["remaining"]
    assert 0 < second < first <= 5000


def test_function_context_counts_down() -> None:
    ctx = FunctionContext(aws_request_id="r", memory_limit_in_mb=128,
                          deadline=time.monotonic() + 0.05, cold_start=False)
    assert 0 < ctx.get_remaining_time_in_millis() <= 50
    time.sleep(0.06)
    assert ctx.get_remaining_time_in_millis() == 0


def test_environment(make: Callable[..., LocalPlatform]) -> None:
    platform = make("env_info", memory_mb=192, env={"SMR_TEST_VAR": "hello"})
    out = platform.invoke({"keys": ["SMR_MEMORY_MB", "SMR_FUNCTION_TMP", "SMR_TEST_VAR"]}
                          ).result(timeout=20)
    env = out["env"]
    assert env["SMR_MEMORY_MB"] == "192"
    assert env["SMR_TEST_VAR"] == "hello"
    assert out["tmp_is_dir"]
    assert out["gettempdir"] == env["SMR_FUNCTION_TMP"]  # tempfile writes to the private /tmp
    assert "SMR_TEST_VAR" not in os.environ
    platform.close()
    assert not os.path.exists(env["SMR_FUNCTION_TMP"])


def test_each_instance_has_its_own_tmp(make: Callable[..., LocalPlatform],
                                       tmp_path: Path) -> None:
    platform = make("env_info", concurrency=2)
    futures = [platform.invoke({"keys": ["SMR_FUNCTION_TMP"]}) for _ in range(2)]
    outs = [f.result(timeout=20) for f in futures]
    if outs[0]["pid"] != outs[1]["pid"]:
        assert outs[0]["env"]["SMR_FUNCTION_TMP"] != outs[1]["env"]["SMR_FUNCTION_TMP"]


def test_faults_hook_runs_in_worker(make: Callable[..., LocalPlatform], tmp_path: Path) -> None:
    platform = make("env_info", faults=host_handlers.MarkFault(str(tmp_path)))
    out = platform.invoke({"keys": ["SMR_FAULT_SEEN"]}).result(timeout=20)
    assert out["env"]["SMR_FAULT_SEEN"] == "yes"  # ran before the handler, in its process
    marks = [p.name for p in tmp_path.iterdir()]
    assert len(marks) == 1 and marks[0].startswith(f"{out['pid']}-")
    assert out["pid"] != os.getpid()


def test_close_leaves_no_processes_or_threads(make: Callable[..., LocalPlatform]) -> None:
    platform = make("pid", concurrency=2)
    futures = [platform.invoke({}) for _ in range(4)]
    pids = {f.result(timeout=20)["pid"] for f in futures}
    assert {p.pid for p in leaked_processes()} == pids  # the check sees live instances
    platform.close()
    platform.close()  # idempotent
    assert leaked_processes() == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)
    assert slot_threads() == []
    with pytest.raises(RuntimeError):
        platform.invoke({})


def test_close_fails_running_and_queued(make: Callable[..., LocalPlatform]) -> None:
    platform = make("sleep", concurrency=1)
    t0 = time.monotonic()
    running = platform.invoke({"seconds": 30})
    queued = [platform.invoke({"seconds": 30}) for _ in range(2)]
    assert time.monotonic() - t0 < 2  # invoke never waits for a free instance
    time.sleep(0.3)  # let the first one start
    t0 = time.monotonic()
    platform.close()
    assert time.monotonic() - t0 < 10
    for future in [running, *queued]:
        exc = failure(future, timeout=1)
        assert exc.kind == "crash" and exc.message == "platform closed"
    assert leaked_processes() == []
    assert slot_threads() == []


def test_context_manager_closes() -> None:
    with LocalPlatform(memory_mb=128, timeout_s=5, concurrency=1, handler=handler("pid")) as p:
        assert p.invoke({}).result(timeout=20)["cold_start"] is True
    with pytest.raises(RuntimeError):
        p.invoke({})
    assert leaked_processes() == []


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        LocalPlatform(memory_mb=128, timeout_s=1, concurrency=0)
    with pytest.raises(ValueError):
        LocalPlatform(memory_mb=128, timeout_s=1, concurrency=1, handler="no_colon")
