"""AWS Lambda as a Platform: invocations of a deployed function through boto3.

Two invocation modes:

- ``sync`` (the default): each invocation is a ``RequestResponse`` call made from a thread pool of
  ``concurrency`` threads. The call returns when the function does, with its result or with
  Lambda's error payload (``X-Amz-Function-Error``), so the driver learns outcomes exactly as it
  does from the local host: no polling of the store, no extra S3 requests, no dependence on
  Lambda's own retries of asynchronous events, and a timeout, out-of-memory kill or crash is
  reported as one.
- ``event``: fire-and-forget ``Event`` invocations (``reports_results = False``). The future
  resolves once Lambda has accepted the event (202); the driver then learns the outcome from the
  store (commit records, and error records the handler writes because the event carries
  ``report_errors``), see ``smr/outcomes.py``. Useful when the client cannot hold up to
  ``concurrency`` connections open for as long as a task runs.

Both modes back off and retry when Lambda throttles (429 ``TooManyRequestsException``) or has a
transient service error (5xx, ``ResourceNotReadyException``, an update in progress), within a time
budget; only then does the invocation fail, and the driver's task retries take over. botocore's own
retries are off, because a retried synchronous call that had already started would run the task
twice without the caller knowing.
"""
from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

from .base import InvocationError, Platform, encode_event

log = logging.getLogger(__name__)

#: Error codes that mean "try again later" rather than "this cannot work".
THROTTLE_CODES = {"TooManyRequestsException", "ThrottlingException",
                  "EC2ThrottledException", "ProvisionedThroughputExceededException"}
TRANSIENT_CODES = {"ServiceException", "ResourceNotReadyException", "ResourceConflictException",
                   "EC2UnexpectedException", "ENILimitReachedException",
                   "InternalFailure", "ServiceUnavailable"}
#: Seconds beyond the function timeout that a synchronous call may take to return.
RESPONSE_MARGIN_S = 60.0


class LambdaError(Exception):
    """The Lambda function cannot be used as configured (missing, wrong region, no access)."""


def classify_function_error(payload: bytes, request_id: str = "") -> InvocationError:
    """Turn Lambda's error payload (sent with ``X-Amz-Function-Error``) into an InvocationError.

    Lambda reports handler exceptions as ``{"errorType": "ValueError", "errorMessage": ...,
    "stackTrace": [...]}`` and failures of the runtime itself as ``Sandbox.Timedout`` /
    ``Task timed out``, ``Runtime.OutOfMemory`` or ``Runtime exited ... signal: killed`` (what an
    out-of-memory kill looks like) and other ``Runtime.*`` errors.
    """
    try:
        data = json.loads(payload or b"{}")
    except ValueError:
        data = {"errorMessage": payload.decode("utf-8", "replace")}
    if not isinstance(data, dict):
        data = {"errorMessage": str(data)}
    etype = str(data.get("errorType") or "")
    msg = str(data.get("errorMessage") or "")
    trace = data.get("stackTrace") or ""
    if isinstance(trace, list):
        trace = "".join(str(t) if str(t).endswith("\n") else f"{t}\n" for t in trace)
    if etype == "Sandbox.Timedout" or "Task timed out" in msg:
        return InvocationError("timeout", msg or "task timed out", trace)
    if etype == "Runtime.OutOfMemory" or "signal: killed" in msg:
        return InvocationError("oom", f"memory limit exceeded: {msg}", trace)
    if etype.startswith(("Runtime.", "Sandbox.")):
        return InvocationError("crash", f"{etype}: {msg}", trace)
    return InvocationError("error", f"{etype}: {msg}" if etype else msg, trace)


class _CallerPool:
    """``concurrency`` daemon threads making Invoke calls, FIFO.

    Not a ThreadPoolExecutor: its threads are joined at interpreter exit, so a driver that gave
    up on a job would wait up to the function timeout for calls whose results nobody needs (a
    Lambda invocation cannot be cancelled; it finishes on its own either way).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> "Future[Any]":
        fut: Future[Any] = Future()
        self._queue.put((fut, fn, args))
        with self._lock:
            if len(self._threads) < self._size:
                t = threading.Thread(target=self._work, name="smr-lambda", daemon=True)
                t.start()
                self._threads.append(t)
        return fut

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 -- delivered to the waiter
                fut.set_exception(e)

    def shutdown(self) -> None:
        """Cancel queued calls and let the threads end after their current call."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        with self._lock:
            for _ in self._threads:
                self._queue.put(None)


class LambdaPlatform(Platform):
    """Invokes ``function`` (a name or ARN) on AWS Lambda, or on any endpoint speaking its API."""

    def __init__(self, *, memory_mb: int, timeout_s: float, concurrency: int,
                 function: str = "smr-worker", endpoint: str | None = None,
                 region: str | None = None, mode: str = "sync",
                 throttle_budget_s: float = 300.0, transient_retries: int = 6,
                 outcome_margin_s: float = 60.0,
                 client_factory: Callable[[], Any] | None = None) -> None:
        if mode not in ("sync", "event"):
            raise ValueError(f"lambda invocation mode must be 'sync' or 'event', not {mode!r}")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        super().__init__(memory_mb=memory_mb, timeout_s=timeout_s, concurrency=concurrency)
        self.function = function
        self.endpoint = endpoint
        self.region = region
        self.mode = mode
        self.reports_results = mode == "sync"
        self.throttle_budget_s = throttle_budget_s
        #: Event mode: how long past the timeout a task may stay silent before it counts as lost.
        self.outcome_margin_s = outcome_margin_s
        self.transient_retries = transient_retries
        self.throttles = 0
        self.function_config: dict[str, Any] | None = None
        self._client_factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()
        # The concurrency ceiling: at most this many Invoke calls (and so, in sync mode, running
        # functions) at once; more invocations wait in the pool's FIFO queue.
        self._pool = _CallerPool(concurrency)
        self._closed = False

    # -- the client ---------------------------------------------------------------------------
    def client(self) -> Any:
        """The boto3 Lambda client, created on first use in this process (never before a fork)."""
        with self._lock:
            if self._client is None:
                self._client = (self._client_factory or self._new_client)()
            return self._client

    def _new_client(self) -> Any:
        import boto3
        from botocore.config import Config
        cfg = Config(
            read_timeout=int(self.timeout_s + RESPONSE_MARGIN_S), connect_timeout=10,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=self.concurrency + 4, tcp_keepalive=True)
        return boto3.client("lambda", region_name=self.region, endpoint_url=self.endpoint,
                            config=cfg)

    def check(self) -> dict[str, Any]:
        """Fetch the function's configuration; raise LambdaError naming what is wrong."""
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            cfg = self._retrying(lambda: self.client().get_function_configuration(
                FunctionName=self.function))
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            where = self.endpoint or f"region {self.client().meta.region_name}"
            if code == "ResourceNotFoundException":
                raise LambdaError(f"Lambda function {self.function!r} not found in {where}; "
                                  "deploy it with `smr lambda-deploy` or name it with "
                                  "--lambda-function") from None
            raise LambdaError(f"Lambda function {self.function!r} in {where}: {code}: "
                              f"{e.response.get('Error', {}).get('Message', e)}") from None
        except BotoCoreError as e:
            raise LambdaError(f"cannot reach Lambda for {self.function!r}: {e}") from None
        cfg.pop("ResponseMetadata", None)
        self.function_config = cfg
        memory = cfg.get("MemorySize")
        if memory and int(memory) != self.memory_mb:
            log.warning("Lambda function %s has %s MB of memory, not the %s MB of the job's "
                        "settings; tasks size their buffers to the function's", self.function,
                        memory, self.memory_mb)
        timeout = cfg.get("Timeout")
        if timeout and float(timeout) < self.timeout_s:
            log.warning("Lambda function %s times out after %s s, sooner than the job's %s s",
                        self.function, timeout, self.timeout_s)
        elif timeout and float(timeout) > self.timeout_s and self._client_factory is None:
            # A synchronous call must be allowed to wait as long as the function may run.
            self.timeout_s = float(timeout)
            with self._lock:
                self._client = None
        return cfg

    # -- invocations --------------------------------------------------------------------------
    def invoke(self, event: dict[str, Any]) -> "Future[Any]":
        if self._closed:
            raise RuntimeError("LambdaPlatform is closed")
        if self.mode == "event":
            # No result comes back, so a failing handler must leave its error in the store.
            event = {**event, "report_errors": True}
        try:
            body = encode_event(event)
        except InvocationError as e:
            self._count(e.kind)
            raise
        with self._lock:
            self.stats.invocations += 1
        return self._pool.submit(self._call, body)

    def _call(self, body: bytes) -> Any:
        from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
        invocation_type = "RequestResponse" if self.mode == "sync" else "Event"
        try:
            resp = self._retrying(lambda: self.client().invoke(
                FunctionName=self.function, InvocationType=invocation_type, Payload=body))
        except ClientError as e:
            err = e.response.get("Error", {})
            code = err.get("Code", "")
            kind = "throttled" if code in THROTTLE_CODES else \
                "payload" if code == "RequestEntityTooLargeException" else "error"
            raise self._failure(kind, f"Lambda {code}: {err.get('Message', e)}") from None
        except ReadTimeoutError as e:
            # The function may still be running; the commit protocol makes a retry safe.
            raise self._failure("timeout", f"no response from Lambda within the read timeout: {e}")
        except ConnectionClosedError as e:
            raise self._failure("crash", f"connection to Lambda lost during the call: {e}")
        except Exception as e:  # noqa: BLE001 -- anything else botocore raises
            raise self._failure("error", f"invoking Lambda failed: {type(e).__name__}: {e}")
        payload = resp["Payload"].read() if resp.get("Payload") is not None else b""
        if resp.get("FunctionError"):
            request_id = resp.get("ResponseMetadata", {}).get("RequestId", "")
            err = classify_function_error(payload, request_id)
            self._count(err.kind)
            raise err
        if self.mode == "event":
            return None
        result = json.loads(payload) if payload else None
        if isinstance(result, dict) and (result.get("metrics") or {}).get("cold_start"):
            with self._lock:  # only the task itself can tell; Lambda's response does not
                self.stats.cold_starts += 1
        return result

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """Run ``call``, backing off on throttling (within a time budget) and transient errors."""
        from botocore.exceptions import ClientError, EndpointConnectionError
        started = time.monotonic()
        transient = 0
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code", "")
                status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code in THROTTLE_CODES or status == 429:
                    with self._lock:
                        self.throttles += 1
                    if time.monotonic() - started > self.throttle_budget_s:
                        raise
                elif code in TRANSIENT_CODES or status >= 500:
                    transient += 1
                    if transient > self.transient_retries:
                        raise
                else:
                    raise
                reason = code
            except EndpointConnectionError as e:
                # Nothing was sent, so retrying cannot run the function twice.
                transient += 1
                if transient > self.transient_retries:
                    raise
                reason = str(e)
            # Full jitter: spreads the retries of many throttled threads apart.
            delay = random.uniform(0, min(10.0, 0.1 * 2 ** min(attempt, 10)))
            log.debug("Lambda call failed (%s); retrying in %.2f s", reason, delay)
            time.sleep(delay)

    def _failure(self, kind: str, message: str) -> InvocationError:
        self._count(kind)
        return InvocationError(kind, message)

    def _count(self, kind: str) -> None:
        with self._lock:
            self.stats.failures[kind] = self.stats.failures.get(kind, 0) + 1

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown()


def _is_loopback(url: str | None) -> bool:
    from urllib.parse import urlparse
    host = urlparse(url).hostname if url else None
    return host in ("127.0.0.1", "localhost", "::1")


def make_lambda_platform(settings: Any, default_work_dir: str) -> LambdaPlatform:
    """The platform for ``--platform lambda``, checked before any task starts.

    Functions on AWS cannot see this machine's files, so local paths are refused unless the
    Lambda endpoint is a local stand-in (``smr local-lambda``), whose workers share them.
    """
    from ..driver import JobFailed
    from ..storage import url_scheme
    if not _is_loopback(settings.lambda_endpoint):
        urls = {"--work-dir": settings.work_dir or default_work_dir, "--output": settings.output}
        urls.update({f"--input {u}": u for u in settings.input})
        for what, url in urls.items():
            if url and url_scheme(url) in ("", "file"):
                raise JobFailed(f"{what}: {url} is a local path, which Lambda functions cannot "
                                "read; use s3://bucket/prefix URLs with --platform lambda")
    platform = LambdaPlatform(
        memory_mb=settings.memory, timeout_s=settings.timeout,
        concurrency=settings.concurrency, function=settings.lambda_function,
        endpoint=settings.lambda_endpoint, region=settings.region,
        mode=settings.lambda_invocation, outcome_margin_s=settings.lambda_event_margin)
    try:
        platform.check()
    except LambdaError as e:
        platform.close()
        raise JobFailed(str(e)) from None
    return platform
