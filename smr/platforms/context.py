"""A Lambda-like invocation context for hosts that are not AWS Lambda.

Handlers receive ``(event, context)`` everywhere; on Lambda the runtime supplies the context, on the
local host this class does. It carries the attributes smr's handler relies on, spelled as Lambda's
Python runtime spells them, so a handler cannot tell the two apart by what it reads.
"""
from __future__ import annotations

import time


class FunctionContext:
    """What a handler may ask about the invocation it is serving."""

    function_name = "smr-local"
    function_version = "$LATEST"
    invoked_function_arn = "local"
    log_group_name = "/smr/local"
    log_stream_name = "local"

    def __init__(self, *, aws_request_id: str, memory_limit_in_mb: int, deadline: float,
                 cold_start: bool) -> None:
        """``deadline`` is a ``time.monotonic()`` instant, so clock steps cannot move it."""
        self.aws_request_id = aws_request_id
        self.memory_limit_in_mb = int(memory_limit_in_mb)
        self.cold_start = cold_start
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self) -> str:
        return (f"FunctionContext(aws_request_id={self.aws_request_id!r}, "
                f"memory_limit_in_mb={self.memory_limit_in_mb}, cold_start={self.cold_start})")
