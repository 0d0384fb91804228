"""The inbound call a handler is serving, carried by a context variable (mesh/call-context.ts).

The server's call observer sets it before the handler runs; asyncio copies the context into every
task the handler starts, so an outbound call made anywhere while handling the call finds it and
inherits the call's deadline, cancellation and request id with nothing passed by hand. That is why
the kit is built on grpc.aio: with threads (the sync API) the context would stop at the thread
pool's edge.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc


class InboundCall:
    """One inbound call as outbound calls made for it see it."""

    def __init__(self, request_id: str, deadline: float | None, now: Callable[[], float] = time.monotonic) -> None:
        #: The call's x-request-id.
        self.request_id = request_id
        #: The caller's deadline on the monotonic clock (seconds); None when it sent none.
        self.deadline = deadline
        #: "active" while the handler works; "answered" once it returned; "cancelled" once the caller
        #: cancelled it or its deadline passed (outbound calls still made for it fail unsent).
        self.state = "active"
        self._now = now
        self._outbound: set[grpc.aio.Call] = set()

    def remaining(self) -> float | None:
        """Seconds left of the caller's budget (None without a deadline)."""
        return None if self.deadline is None else self.deadline - self._now()

    def track(self, call: grpc.aio.Call) -> None:
        """Keeps ``call`` until it ends, so that cancelling this call cancels it."""
        self._outbound.add(call)
        call.add_done_callback(self._outbound.discard)

    def cancel(self) -> None:
        """The caller cancelled (or the deadline passed): cancels every outbound call still in flight."""
        if self.state != "active":
            return
        self.state = "cancelled"
        for call in list(self._outbound):
            call.cancel()


_current: contextvars.ContextVar[InboundCall | None] = contextvars.ContextVar("protomesh_inbound_call", default=None)


def current_inbound_call() -> InboundCall | None:
    """The inbound call being handled where this runs, unless it has been answered."""
    inbound = _current.get()
    return None if inbound is None or inbound.state == "answered" else inbound


def current_request_id() -> str | None:
    """The x-request-id of the inbound call being handled (taken from the caller or made), if any."""
    inbound = _current.get()
    return None if inbound is None else inbound.request_id


@contextmanager
def inbound_call(inbound: InboundCall) -> Iterator[InboundCall]:
    """Runs the block as the handling of ``inbound`` (the server's call observer)."""
    token = _current.set(inbound)
    try:
        yield inbound
    finally:
        _current.reset(token)


@contextmanager
def detached() -> Iterator[None]:
    """Runs the block outside any inbound call: its outbound calls inherit no deadline or cancellation."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)
