"""The local function host: AWS Lambda's execution model on one machine.

``LocalPlatform`` runs ``handler(event, context)`` in a pool of worker processes that stand in for
Lambda function instances, and enforces Lambda's limits so that a job which runs here would also
run on Lambda:

- the event must JSON-encode to at most 256 KB (the async-invoke limit); ``invoke`` raises
  ``PayloadTooLarge`` at once, before anything is queued, so the caller sees the mistake where it
  made it;
- an invocation that runs past ``timeout_s`` has its instance killed (``timeout``);
- an instance whose resident memory (RSS, what Lambda meters, not virtual size) passes
  ``memory_mb`` is killed (``oom``); the host polls RSS every 25 ms and also checks the instance's
  own high-water mark when a result comes back, so a short spike between two polls still counts;
- at most ``concurrency`` instances run at once; more invocations wait in FIFO order;
- an instance that finished serves the next invocation warm; a new instance is a cold start;
  a killed or crashed one is replaced when the next invocation needs it;
- the result is JSON-encoded in the instance and decoded here, so a handler that returns something
  Lambda could not marshal fails here too (limit: 6 MB, Lambda's synchronous response limit).

Instances are started by multiprocessing's ``forkserver``, never by forking the caller: the
caller may hold threads and open connections (S3 clients) that a forked child must not share.
The forkserver preloads this module and ``smr.worker.handler`` (when it exists), so a cold start
costs a fork, not a Python start-up plus imports; modules preloaded there must not open
connections or start threads at import time. Unlike plain multiprocessing, instances do not
re-import the caller's ``__main__`` (a Lambda instance never sees the client's script), so the
handler and the ``faults`` object's class must be importable by module name.

Instances get the caller's environment as of their start, updated with ``env``, plus
``SMR_MEMORY_MB``, ``SMR_FUNCTION_TMP`` and ``TMPDIR`` (both the instance's private temp dir,
Lambda's ``/tmp``, removed when the instance stops). They import the handler by its
``"module:function"`` name from the caller's ``sys.path`` as of their start.
"""
from __future__ import annotations

import atexit
import json
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.spawn as mp_spawn
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
import uuid
import weakref
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import psutil

from smr.platforms import _local_worker
from smr.platforms.base import InvocationError, Platform, encode_event

logger = logging.getLogger(__name__)

#: How often the host samples an instance's RSS and checks its deadline while it runs.
POLL_INTERVAL_S = 0.025
#: Lambda's limit for a synchronous invocation's response.
RESPONSE_LIMIT = 6 * 1024 * 1024
#: How long a stopping instance may take to exit on its own before it is killed.
STOP_GRACE_S = 2.0

_PRELOAD = ["smr.platforms.local", "smr.worker.handler"]
_setup_lock = threading.Lock()
_setup_done = False
_launching = threading.local()


def _without_main(get_preparation_data: Any) -> Any:
    """Wrap multiprocessing's preparation data so our instances skip the caller's ``__main__``.

    multiprocessing re-imports the parent's main module in every spawned or forkserver child, so
    an unguarded script would run again in each instance (and ``smr``'s own console script would
    be re-imported at every cold start). A Lambda instance never sees the client's main module,
    and the worker needs nothing from it: its target, handler and fault hook are all imported by
    module name. The filter acts only while this module launches an instance (a thread-local
    flag), so other users of multiprocessing in the process keep the standard behaviour; should a
    future Python stop calling this function, instances merely fall back to that behaviour.
    """
    def wrapper(name: str) -> dict[str, Any]:
        data = get_preparation_data(name)
        if getattr(_launching, "active", False):
            data.pop("init_main_from_name", None)
            data.pop("init_main_from_path", None)
        return data
    wrapper._smr_without_main = True  # type: ignore[attr-defined]
    return wrapper


def _mp_context() -> Any:
    """The forkserver context, with smr's modules preloaded into the server.

    The forkserver is one per parent process and reads its preload list only when it starts, so the
    list is set once, before any platform starts an instance; an import that fails there is
    skipped by multiprocessing, which lets ``smr.worker.handler`` be listed before it exists.
    """
    global _setup_done
    ctx = multiprocessing.get_context("forkserver")
    with _setup_lock:
        if not _setup_done:
            ctx.set_forkserver_preload(_PRELOAD)
            if not getattr(mp_spawn.get_preparation_data, "_smr_without_main", False):
                mp_spawn.get_preparation_data = _without_main(mp_spawn.get_preparation_data)
            _setup_done = True
    return ctx


_open_platforms: "weakref.WeakSet[LocalPlatform]" = weakref.WeakSet()


@atexit.register
def _close_open_platforms() -> None:
    # A caller that forgets close() would otherwise leave instance temp dirs behind; registered
    # after multiprocessing's own exit hook, so it runs first, while the instances still answer.
    for platform in list(_open_platforms):
        platform.close()


@dataclass(eq=False)
class _Call:
    body: bytes
    future: "Future[Any]"
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class _Instance:
    """One worker process: a function instance."""

    def __init__(self, proc: Any, conn: multiprocessing.connection.Connection,
                 tmpdir: str) -> None:
        self.proc = proc
        self.conn = conn
        self.tmpdir = tmpdir
        self.pid: int = proc.pid
        self.ps = psutil.Process(proc.pid)

    def alive(self) -> bool:
        return self.proc.is_alive()

    def describe_exit(self) -> str:
        self.proc.join(STOP_GRACE_S)
        code = self.proc.exitcode
        if code is None:
            return "worker process stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"worker process {self.pid} killed by signal {name}"
        return f"worker process {self.pid} exited with code {code}"

    def stop(self, graceful: bool) -> None:
        """End the process, wait for it, and remove its temp dir; safe to call twice."""
        if self.proc is None:
            return
        try:
            if graceful and self.proc.is_alive():
                try:
                    self.conn.send(None)
                except OSError:
                    pass
                self.proc.join(STOP_GRACE_S)
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join()
        finally:
            self.conn.close()
            try:
                self.proc.close()
            except ValueError:
                pass
            self.proc = None
            shutil.rmtree(self.tmpdir, ignore_errors=True)


class _Slot:
    """A place for one running instance, served by one thread of the host."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.inbox: "queue.SimpleQueue[_Call | None]" = queue.SimpleQueue()
        self.instance: _Instance | None = None
        self.thread: threading.Thread | None = None


_STOP = object()


class LocalPlatform(Platform):
    """Runs invocations in local worker processes with Lambda's limits (see the module docstring).

    ``faults``, when given, must be picklable; each instance receives a copy when it starts and
    calls ``faults.before_invoke(event, context)`` before the handler on every invocation (it may
    raise, sleep, allocate memory or exit the process, and the host reports what follows).
    """

    isolates_functions = True

    def __init__(self, *, memory_mb: int, timeout_s: float, concurrency: int,
                 handler: str = "smr.worker.handler:handler",
                 env: dict[str, str] | None = None,
                 faults: object | None = None) -> None:
        if memory_mb <= 0 or timeout_s <= 0 or concurrency < 1:
            raise ValueError("memory_mb and timeout_s must be positive and concurrency at least 1")
        module, sep, func = handler.partition(":")
        if not (module and sep and func):
            raise ValueError(f"handler must be 'module:function', not {handler!r}")
        super().__init__(memory_mb=memory_mb, timeout_s=timeout_s, concurrency=concurrency)
        self.handler = handler
        self.env = dict(env or {})
        self.faults = faults
        self._ctx = _mp_context()
        self._limit_bytes = memory_mb * 1024 * 1024
        self._lock = threading.Lock()
        self._pending: deque[_Call] = deque()
        # Slots waiting for work; those holding a live (warm) instance are kept at the end and
        # taken first, so work goes to a warm instance before a new one is started.
        self._idle: list[_Slot] = []
        self._slots: list[_Slot] = []
        self._closed = False
        _open_platforms.add(self)

    # -- public API ---------------------------------------------------------------------------

    def invoke(self, event: dict[str, Any]) -> "Future[Any]":
        """Queue one invocation and return its future at once.

        Raises ``PayloadTooLarge`` synchronously for an event over 256 KB, and ``RuntimeError``
        after ``close``. The future resolves with the handler's JSON-decoded result or fails with
        ``InvocationError`` of kind ``error``, ``crash``, ``timeout`` or ``oom``.
        """
        if self._closed:
            raise RuntimeError("LocalPlatform is closed")
        try:
            body = encode_event(event)
        except InvocationError as exc:
            self._count_failure(exc.kind)
            raise
        call = _Call(body, Future())
        with self._lock:
            if self._closed:
                raise RuntimeError("LocalPlatform is closed")
            self.stats.invocations += 1
            if self._idle:
                self._idle.pop().inbox.put(call)
            elif len(self._slots) < self.concurrency:
                slot = _Slot(len(self._slots))
                slot.inbox.put(call)
                # Started under the lock so that close() always finds the thread to join.
                slot.thread = threading.Thread(target=self._serve, args=(slot,),
                                               name=f"smr-local-slot-{slot.index}", daemon=True)
                slot.thread.start()
                self._slots.append(slot)
            else:
                self._pending.append(call)
        return call.future

    def close(self) -> None:
        """Stop every instance and wait for them; queued and running invocations fail as crashes.

        Idempotent. Running invocations are not waited for: their instances are killed, as when a
        Lambda function is deleted under them.
        """
        _open_platforms.discard(self)
        with self._lock:
            self._closed = True
            pending = list(self._pending)
            self._pending.clear()
            idle = list(self._idle)
            self._idle.clear()
            slots = list(self._slots)
        for call in pending:
            self._fail(call, InvocationError("crash", "platform closed"))
        for slot in idle:
            slot.inbox.put(None)
        current = threading.current_thread()
        for slot in slots:
            # A done-callback that closes the platform runs on a slot thread, which cannot join
            # itself; that thread stops its own instance when the callback returns.
            if slot.thread is not None and slot.thread is not current:
                slot.thread.join()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- slot threads -------------------------------------------------------------------------

    def _serve(self, slot: _Slot) -> None:
        try:
            while True:
                call: Any = slot.inbox.get()
                if call is None:
                    return
                while call is not None:
                    self._run(slot, call)
                    call = self._next_call(slot)
                    if call is _STOP:
                        return
        except BaseException:
            logger.exception("local host slot %d failed", slot.index)
            raise
        finally:
            if slot.instance is not None:
                slot.instance.stop(graceful=True)
                slot.instance = None

    def _next_call(self, slot: _Slot) -> Any:
        """The next queued call for this slot, or None after parking it idle, or _STOP."""
        with self._lock:
            if self._closed:
                return _STOP
            if self._pending:
                return self._pending.popleft()
            if slot.instance is not None:
                self._idle.append(slot)
            else:
                self._idle.insert(0, slot)
            return None

    def _run(self, slot: _Slot, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        if self._closed:
            self._fail(call, InvocationError("crash", "platform closed"))
            return
        try:
            instance = self._dispatch(slot, call)
        except Exception as exc:
            logger.exception("could not start a function instance")
            self._fail(call, InvocationError("crash",
                                             f"could not start a function instance: {exc}"))
            return
        outcome = self._await(instance, call)
        if isinstance(outcome, InvocationError):
            if outcome.kind != "error":
                # The instance is dead or killed; the next call on this slot starts a new one.
                instance.stop(graceful=False)
                slot.instance = None
                logger.info("invocation %s failed: %s", call.request_id, outcome)
            self._fail(call, outcome)
        else:
            call.future.set_result(outcome)

    def _dispatch(self, slot: _Slot, call: _Call) -> _Instance:
        """Hand the call to the slot's instance, starting one if it has none that is alive."""
        for _ in range(2):
            if slot.instance is not None and not slot.instance.alive():
                # Died while idle; Lambda would never route to such an instance.
                logger.info("instance %d died while idle: %s", slot.instance.pid,
                            slot.instance.describe_exit())
                slot.instance.stop(graceful=False)
                slot.instance = None
            if slot.instance is None:
                slot.instance = self._start_instance()
            try:
                slot.instance.conn.send((call.request_id, call.body))
                return slot.instance
            except OSError:
                slot.instance.stop(graceful=False)
                slot.instance = None
        raise RuntimeError("a new function instance would not take an invocation")

    def _start_instance(self) -> _Instance:
        t0 = time.perf_counter()
        tmpdir = tempfile.mkdtemp(prefix="smr-fn-")
        env = dict(os.environ)
        env.update(self.env)
        env.update({"SMR_MEMORY_MB": str(self.memory_mb), "SMR_FUNCTION_TMP": tmpdir,
                    "TMPDIR": tmpdir})
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        # Daemonic, so that a caller that forgets close() still has its instances ended by
        # multiprocessing at interpreter exit.
        proc = self._ctx.Process(
            target=_local_worker.main, name="smr-local-instance", daemon=True,
            args=(child_conn, self.handler, self.memory_mb, self.timeout_s, env, self.faults))
        _launching.active = True
        try:
            proc.start()
        except BaseException:
            parent_conn.close()
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        finally:
            _launching.active = False
            child_conn.close()  # the instance holds its own copy; ours would hide its death
        with self._lock:
            self.stats.cold_starts += 1
        logger.debug("started instance %d in %.1f ms", proc.pid, (time.perf_counter() - t0) * 1e3)
        return _Instance(proc, parent_conn, tmpdir)

    def _await(self, instance: _Instance, call: _Call) -> Any:
        """Wait for the instance's reply, enforcing the deadline and the memory limit."""
        deadline = time.monotonic() + self.timeout_s
        waitables = [instance.conn, instance.proc.sentinel]
        while True:
            timeout = min(POLL_INTERVAL_S, max(0.0, deadline - time.monotonic()))
            ready = multiprocessing.connection.wait(waitables, timeout)
            if instance.conn in ready:
                try:
                    reply = instance.conn.recv()
                except (EOFError, OSError):
                    return InvocationError("crash", instance.describe_exit())
                if reply[0] == "invoke":
                    self._invoke_for_worker(instance, reply[1])
                    continue
                return self._decode(reply)
            if ready:  # the sentinel alone: the process is gone without answering
                return InvocationError("crash", instance.describe_exit())
            if self._closed:
                instance.proc.kill()
                return InvocationError("crash", "platform closed")
            if time.monotonic() >= deadline:
                instance.proc.kill()
                return InvocationError(
                    "timeout", f"task timed out after {self.timeout_s:.2f} seconds")
            try:
                rss = instance.ps.memory_info().rss
            except psutil.Error:
                continue  # exiting; the sentinel will say how
            if rss > self._limit_bytes:
                instance.proc.kill()
                return self._oom(rss)

    def _invoke_for_worker(self, instance: _Instance, bodies: list[bytes]) -> None:
        """A running function asked for asynchronous invocations (see ``_local_worker``)."""
        try:
            events = [json.loads(b) for b in bodies]
            for event in events:
                encode_event(event)
            for event in events:
                self.invoke_event(event)
            answer: tuple[Any, ...] = ("invoked", len(events))
        except Exception as exc:
            answer = ("invoke-error", f"{type(exc).__name__}: {exc}")
        try:
            instance.conn.send(answer)
        except OSError:
            pass  # the instance died; the sentinel will say how

    def _decode(self, reply: tuple[Any, ...]) -> Any:
        peak = reply[-1]
        if peak > self._limit_bytes:
            return self._oom(peak)
        if reply[0] == "error":
            return InvocationError("error", reply[1], reply[2])
        text: str = reply[1]
        if len(text) > RESPONSE_LIMIT:
            return InvocationError(
                "error", f"Runtime.ResponseSizeTooLarge: response is {len(text)} bytes; "
                         f"the limit is {RESPONSE_LIMIT} bytes")
        return json.loads(text)

    def _oom(self, rss: int) -> InvocationError:
        return InvocationError(
            "oom", f"memory limit exceeded: {rss / 2**20:.0f} MB resident, "
                   f"limit {self.memory_mb} MB")

    def _fail(self, call: _Call, exc: InvocationError) -> None:
        self._count_failure(exc.kind)
        try:
            call.future.set_exception(exc)
        except InvalidStateError:
            pass  # cancelled by the caller while it waited in the queue

    def _count_failure(self, kind: str) -> None:
        with self._lock:
            self.stats.failures[kind] = self.stats.failures.get(kind, 0) + 1
