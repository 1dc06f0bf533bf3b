"""Fault injection: crash, hang, exhaust memory, fail store requests, deliver twice.

``smr run ... --inject-faults "kill=0.1,timeout=0.05,oom=0.05,store=0.05,duplicate=0.1,seed=7"``
gives each fault a rate: ``kill``, ``timeout`` and ``oom`` per invocation (at most one of them
per invocation), ``duplicate`` per invocation (the driver delivers the same event twice, as an
at-least-once event source may), ``store`` per store request (a throttling error or a connection
reset, in the workers and in the driver). A run must end with exactly the output of a run
without faults; the job summary says what was injected (``faults_injected``).

Every decision is drawn from a random generator seeded with the seed and the invocation's
identity (step, phase, task, try), never from the clock, so the same seed injects the same faults
into the same tasks on every run. The driver decides an invocation's fate and sends it in the
event (``event["faults"]``); the worker carries it out at a chosen store request of the task (or,
when the task makes fewer requests, just before it returns), so a kill can land anywhere: before
any output, between the output and the commit, or after the commit.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Invocation faults, in the order their rates are stacked on one draw.
INVOCATION_FAULTS = ("kill", "timeout", "oom")
FAULT_KINDS = (*INVOCATION_FAULTS, "store", "duplicate")
#: A kill, hang or allocation happens at one of the first this-many store requests of a task.
MAX_POINT = 10
#: What the platform reports for an invocation that a fault of each kind ended.
OBSERVED_AS = {"kill": "crash", "timeout": "timeout", "oom": "oom"}


class FaultSpecError(ValueError):
    """An --inject-faults value that cannot be parsed; the message names the part."""


@dataclass(frozen=True)
class FaultSpec:
    kill: float = 0.0
    timeout: float = 0.0
    oom: float = 0.0
    store: float = 0.0
    duplicate: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> "FaultSpec":
        """``"kill=0.1,store=0.05,seed=7"`` -> FaultSpec; unknown names and bad rates are errors."""
        values: dict[str, Any] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not sep:
                raise FaultSpecError(f"fault {part!r}: use name=rate, e.g. kill=0.1")
            if name == "seed":
                try:
                    values["seed"] = int(raw)
                except ValueError:
                    raise FaultSpecError(f"fault seed {raw!r}: must be an integer") from None
                continue
            if name not in FAULT_KINDS:
                raise FaultSpecError(f"unknown fault {name!r}: use {', '.join(FAULT_KINDS)} or seed")
            try:
                rate = float(raw)
            except ValueError:
                raise FaultSpecError(f"fault {name}={raw!r}: the rate must be a number") from None
            if not 0.0 <= rate <= 1.0:
                raise FaultSpecError(f"fault {name}={raw}: the rate must be between 0 and 1")
            values[name] = rate
        spec = cls(**values)
        if spec.kill + spec.timeout + spec.oom > 1.0:
            raise FaultSpecError("kill + timeout + oom rates add up to more than 1")
        return spec

    @property
    def active(self) -> bool:
        return any(getattr(self, k) > 0 for k in FAULT_KINDS)

    @property
    def kills_functions(self) -> bool:
        return any(getattr(self, k) > 0 for k in INVOCATION_FAULTS)

    def __str__(self) -> str:
        parts = [f"{k}={getattr(self, k):g}" for k in FAULT_KINDS if getattr(self, k) > 0]
        return ",".join([*parts, f"seed={self.seed}"])

    def fate(self, identity: str) -> dict[str, Any]:
        """What happens to the invocation named ``identity`` (e.g. ``s0/map/3/1``).

        The result travels in the event: ``kind`` (kill, timeout, oom or None), ``at`` (the store
        request it acts at), ``store`` and ``seed`` (for the worker's faulty stores), and
        ``duplicate`` (the driver's own business: deliver the event twice).
        """
        rng = random.Random(f"{self.seed}/{identity}")
        draw = rng.random()
        kind = None
        edge = 0.0
        for name in INVOCATION_FAULTS:
            edge += getattr(self, name)
            if draw < edge:
                kind = name
                break
        return {"kind": kind, "at": rng.randint(1, MAX_POINT), "store": self.store,
                "seed": f"{self.seed}/{identity}", "duplicate": rng.random() < self.duplicate}


class FaultAgent:
    """Carries out an invocation's fate inside the worker; counts the store faults it injects."""

    def __init__(self, fate: dict[str, Any] | None, context: Any) -> None:
        self.fate = fate or {}
        self.context = context
        self.kind: str | None = self.fate.get("kind")
        self.at: int = int(self.fate.get("at", 0))
        self.stores: list[Any] = []
        self.requests = 0
        self.fired = False

    @property
    def store_rate(self) -> float:
        return float(self.fate.get("store", 0.0))

    def wrap(self, store: Any, name: str) -> Any:
        """``store`` behind a FaultyStore when this invocation has faults to inject."""
        if not self.fate:
            return store
        from .storage.faulty import FaultyStore
        faulty = FaultyStore(store, rate=self.store_rate, seed=f"{self.fate['seed']}/{name}",
                             on_request=self._on_request)
        self.stores.append(faulty)
        return faulty

    def _on_request(self, _n: int) -> None:
        self.requests += 1
        if self.requests == self.at:
            self.fire()

    def fire(self) -> None:
        """Act out the fate now (once); returns only for a fate without an invocation fault."""
        if self.fired or self.kind is None:
            return
        self.fired = True
        log.info("injected fault: %s", self.kind)
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # the signal is asynchronous; never carry on past it
        elif self.kind == "timeout":
            remaining = self.context.get_remaining_time_in_millis() / 1000 if hasattr(
                self.context, "get_remaining_time_in_millis") else 900.0
            time.sleep(remaining + 5)
        elif self.kind == "oom":
            _exhaust_memory(int(getattr(self.context, "memory_limit_in_mb", 1024)))
        raise RuntimeError(f"injected {self.kind} fault did not end the invocation")

    def injected(self) -> dict[str, int]:
        n = sum(s.injected for s in self.stores)
        return {"store": n} if n else {}


def _exhaust_memory(limit_mb: int) -> None:
    """Allocate and touch memory past the function's limit; the host kills us on the way."""
    blocks = []
    for _ in range((limit_mb + 512) // 16):
        block = bytearray(16 * 2**20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        blocks.append(block)
        time.sleep(0.002)  # give the host's memory poll its chance, as real growth would
    time.sleep(5)
    raise MemoryError("injected oom fault: allocated past the memory limit")
