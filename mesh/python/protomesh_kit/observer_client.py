"""The client's interceptor (mesh/observer-client.ts and mesh/deadlines.ts in one).

Every call gets a deadline: the caller's, else the default; made no later than the inbound call's
remaining budget minus a margin when it is made while handling one (call_context.py), so an
explicit shorter deadline wins and a longer one is cut. A call whose budget is already gone fails
DEADLINE_EXCEEDED without being sent, and one made for an inbound call that was cancelled fails
CANCELLED; when the inbound call is cancelled later, its outbound calls in flight are cancelled.
Every call carries an ``x-request-id`` (the caller's, else the inbound call's, else a new one) and
is logged once when it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc

from .call_context import current_inbound_call
from .logger import Logger
from .observer_server import split_method
from .request_id import REQUEST_ID_KEY, is_acceptable_request_id, request_id_from
from .sink_log import log_call

#: Deadline of an outbound call when the caller names none (s), as DEFAULT_DEADLINE_MS in deadlines.ts.
DEFAULT_DEADLINE_S = 5.0
#: What an outbound call leaves unused of the inbound call's remaining budget (s): the time this hop
#: needs to turn the downstream answer into its own (DEFAULT_DEADLINE_MARGIN_MS, 10 ms).
DEFAULT_DEADLINE_MARGIN_S = 0.010


class ClientObserver(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    """Deadlines, request ids, cancellation and the log line of every call of one channel."""

    def __init__(
        self,
        logger: Logger,
        peer: str,
        default_deadline_s: float = DEFAULT_DEADLINE_S,
        margin_s: float = DEFAULT_DEADLINE_MARGIN_S,
    ) -> None:
        if not default_deadline_s > 0:
            raise ValueError(f"default_deadline_s must be > 0, got {default_deadline_s!r}")
        if not margin_s >= 0:
            raise ValueError(f"margin_s must be >= 0, got {margin_s!r}")
        self._logger = logger
        self._peer = peer
        self._default_deadline_s = default_deadline_s
        self._margin_s = margin_s
        self._pending: set[asyncio.Task[None]] = set()

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request)

    async def _intercept(self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        started = time.perf_counter()
        path = details.method.decode() if isinstance(details.method, bytes) else details.method
        inbound = current_inbound_call()
        metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
        if REQUEST_ID_KEY in metadata and not is_acceptable_request_id(metadata[REQUEST_ID_KEY]):
            # The caller's own id is unusable (as a server would judge it): replaced, not passed on.
            del metadata[REQUEST_ID_KEY]
        if REQUEST_ID_KEY not in metadata:
            metadata[REQUEST_ID_KEY] = inbound.request_id if inbound else request_id_from(())
        request_id = str(metadata[REQUEST_ID_KEY])
        timeout = details.timeout if details.timeout is not None else self._default_deadline_s
        remaining = inbound.remaining() if inbound else None
        if remaining is not None:
            timeout = min(timeout, remaining - self._margin_s)
        unsent: tuple[grpc.StatusCode, str] | None = None
        if inbound is not None and inbound.state == "cancelled":
            unsent = (grpc.StatusCode.CANCELLED, "not sent: the inbound call it was made for was cancelled")
        elif timeout <= 0:
            spent = "the inbound call's budget is spent" if inbound else "its deadline had passed"
            unsent = (grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline exceeded before the call was sent: {spent}")
        if unsent is not None:
            self._log(path, unsent[0], unsent[1], started, request_id)
            raise grpc.aio.AioRpcError(unsent[0], grpc.aio.Metadata(), grpc.aio.Metadata(), unsent[1])
        call = await continuation(details._replace(timeout=timeout, metadata=metadata), request)
        if inbound is not None:
            inbound.track(call)
        task = asyncio.get_running_loop().create_task(self._log_when_done(call, path, started, request_id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return call

    async def _log_when_done(self, call: grpc.aio.Call, path: str, started: float, request_id: str) -> None:
        code = await call.code()
        self._log(path, code, await call.details() or "", started, request_id)

    def _log(self, path: str, code: grpc.StatusCode, details: str, started: float, request_id: str) -> None:
        service, method = split_method(path)
        log_call(
            self._logger,
            side="client",
            service=service,
            method=method,
            code=code,
            details=details,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            peer=self._peer,
            request_id=request_id,
        )
