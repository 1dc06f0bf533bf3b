"""How a running function invokes functions: the worker side of fan-out and of commit events.

Every event a coordinator launches carries a *platform descriptor*, ``{"kind": ..., "function":
...}``. A worker turns it into an invoker here:

- ``local`` and ``inline``: the host that runs the worker put an ``smr_invoke(events)`` callable
  on the handler's context (the local function host sends the events back to itself over the
  instance's pipe; the inline platform calls itself);
- ``lambda``: an asynchronous (``InvocationType="Event"``) boto3 invoke of the named function,
  from a client created inside this process, fanned out over a few threads.

Invocations are fire-and-forget: their outcome reaches the store (a commit record, or a failure
record written by the function's on-failure destination).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .base import encode_event

KINDS = ("local", "inline", "lambda")


class InvokeError(RuntimeError):
    """The worker cannot invoke functions on its platform."""


class Invoker:
    def invoke(self, events: list[dict[str, Any]]) -> None:
        raise NotImplementedError


class ContextInvoker(Invoker):
    def __init__(self, send: Callable[[list[dict[str, Any]]], Any]) -> None:
        self._send = send

    def invoke(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            encode_event(e)  # refuse an oversized event here, where it was made
        if events:
            self._send(events)


class LambdaInvoker(Invoker):
    """Asynchronous invokes of a Lambda function; the boto3 client is made in this process."""

    _local = threading.local()

    def __init__(self, function: str, threads: int = 16) -> None:
        self.function = function
        self.threads = threads

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            import boto3
            client = self._local.client = boto3.client("lambda")
        return client

    def _one(self, event: dict[str, Any]) -> None:
        self._client().invoke(FunctionName=self.function, InvocationType="Event",
                              Payload=encode_event(event))

    def invoke(self, events: list[dict[str, Any]]) -> None:
        if len(events) <= 1:
            for e in events:
                self._one(e)
            return
        with ThreadPoolExecutor(min(self.threads, len(events))) as pool:
            list(pool.map(self._one, events))


def describe(kind: str, function: str) -> dict[str, Any]:
    if kind not in KINDS:
        raise InvokeError(f"unknown platform kind {kind!r}; expected one of {', '.join(KINDS)}")
    return {"kind": kind, "function": function}


def invoker_for(descriptor: dict[str, Any] | None, context: Any) -> Invoker:
    """The invoker a worker uses for ``descriptor`` (see the module docstring)."""
    kind = (descriptor or {}).get("kind", "local")
    if kind in ("local", "inline"):
        send = getattr(context, "smr_invoke", None)
        if send is None:
            raise InvokeError(f"this function host cannot invoke functions (platform {kind!r} "
                              "gives the handler's context no smr_invoke)")
        return ContextInvoker(send)
    if kind == "lambda":
        function = (descriptor or {}).get("function")
        if not function:
            raise InvokeError("platform descriptor of kind 'lambda' names no function")
        return LambdaInvoker(function)
    raise InvokeError(f"unknown platform kind {kind!r} in the event's platform descriptor")


def descriptor_from_context(context: Any) -> dict[str, Any]:
    """The descriptor for the platform this function runs on, from its handler context."""
    if getattr(context, "smr_invoke", None) is not None:
        return {"kind": getattr(context, "smr_kind", "local"),
                "function": getattr(context, "function_name", "smr")}
    return {"kind": "lambda", "function": getattr(context, "invoked_function_arn", "")}
