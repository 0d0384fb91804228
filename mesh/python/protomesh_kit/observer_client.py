"""The client's interceptor (mesh/observer-client.ts and mesh/deadlines.ts in one).

Every call gets a deadline: the caller's, else the default; made no later than the inbound call's
remaining budget minus a margin when it is made while handling one (call_context.py), so an
explicit shorter deadline wins and a longer one is cut. A call whose budget is already gone fails
DEADLINE_EXCEEDED without being sent, and one made for an inbound call that was cancelled fails
CANCELLED; when the inbound call is cancelled later, its outbound calls in flight are cancelled.
Every call carries an ``x-request-id`` (the caller's, else the inbound call's, else a new one) and
is handed to the channel's sinks (observer.py: the log line, the metrics) as it starts, as each
message passes and when it ends. Given a tracer, it makes each call's CLIENT span, the child of the
current span, and sends its traceparent (tracing.py).

A unary call's end is seen before its caller gets the answer (the interceptor waits for it), and a
response stream's when its caller reads the end of it; a stream its caller leaves unread is seen
ending when its status arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
from opentelemetry.trace import Span, Tracer

from .call_context import current_inbound_call
from .observer import MESH_SERVICES, CallRecord, CallSink, CallStart, CallType, counts_messages, method_path, split_method
from .request_id import REQUEST_ID_KEY, is_acceptable_request_id, request_id_from
from .tracing import end_span, start_client_span

#: Deadline of an outbound call when the caller names none (s), as DEFAULT_DEADLINE_MS in deadlines.ts.
DEFAULT_DEADLINE_S = 5.0
#: What an outbound call leaves unused of the inbound call's remaining budget (s): the time this hop
#: needs to turn the downstream answer into its own (DEFAULT_DEADLINE_MARGIN_MS, 10 ms).
DEFAULT_DEADLINE_MARGIN_S = 0.010


class _Outbound:
    """One outbound call's bookkeeping: what the sinks are told of it, and whether it has ended."""

    def __init__(self, start: CallStart, span: Span | None) -> None:
        self.start = start
        #: The call's CLIENT span; None without a tracer, or for the mesh's own services.
        self.span = span
        self.started = time.perf_counter()
        self.is_ended = False


class ClientObserver:
    """Deadlines, request ids, cancellation and the sinks of every call of one channel.

    A channel takes it as :meth:`interceptors`: grpc.aio files an interceptor under the first kind
    of call it implements only, so one object implementing two kinds would see unary calls alone.
    """

    def __init__(
        self,
        sinks: Sequence[CallSink],
        peer: str,
        default_deadline_s: float = DEFAULT_DEADLINE_S,
        margin_s: float = DEFAULT_DEADLINE_MARGIN_S,
        tracer: Tracer | None = None,
    ) -> None:
        if not default_deadline_s > 0:
            raise ValueError(f"default_deadline_s must be > 0, got {default_deadline_s!r}")
        if not margin_s >= 0:
            raise ValueError(f"margin_s must be >= 0, got {margin_s!r}")
        self._sinks = tuple(sinks)
        self._message_sinks = tuple(sink for sink in self._sinks if counts_messages(sink))
        self._peer = peer
        self._default_deadline_s = default_deadline_s
        self._margin_s = margin_s
        self._tracer = tracer
        self._pending: set[asyncio.Task[None]] = set()

    def interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """The observer as a channel's interceptors, one per kind of call it observes."""
        return [_UnaryUnaryObserver(self), _UnaryStreamObserver(self)]

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        outbound, call = await self._send(continuation, client_call_details, request, "unary")
        try:
            await call
        except grpc.aio.AioRpcError:
            pass  # the caller gets it from the call, which it awaits next
        except asyncio.CancelledError:
            self._end(outbound, grpc.StatusCode.CANCELLED, "")
            raise
        code = await call.code()
        if code == grpc.StatusCode.OK:
            self._received(outbound)
        self._end(outbound, code, await call.details() or "")
        return call

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        outbound, call = await self._send(continuation, client_call_details, request, "server_stream")
        # The end of a stream its caller stops reading comes with its status.
        task = asyncio.get_running_loop().create_task(self._end_when_done(outbound, call))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return self._responses(outbound, call)

    async def _send(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any, call_type: CallType
    ) -> tuple[_Outbound, Any]:
        """Starts the call with its deadline and request id (or fails it unsent); the call and its bookkeeping."""
        path = method_path(details.method)
        inbound = current_inbound_call()
        metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
        if REQUEST_ID_KEY in metadata and not is_acceptable_request_id(metadata[REQUEST_ID_KEY]):
            # The caller's own id is unusable (as a server would judge it): replaced, not passed on.
            del metadata[REQUEST_ID_KEY]
        if REQUEST_ID_KEY not in metadata:
            metadata[REQUEST_ID_KEY] = inbound.request_id if inbound else request_id_from(())
        service, method = split_method(path)
        start = CallStart("client", call_type, service, method, str(metadata[REQUEST_ID_KEY]))
        span = None
        if self._tracer is not None and service not in MESH_SERVICES:
            span = start_client_span(self._tracer, start, metadata)
        outbound = _Outbound(start, span)
        for sink in self._sinks:
            sink.call_started(outbound.start)
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
            self._end(outbound, *unsent)
            raise grpc.aio.AioRpcError(unsent[0], grpc.aio.Metadata(), grpc.aio.Metadata(), unsent[1])
        call = await continuation(details._replace(timeout=timeout, metadata=metadata), request)
        if inbound is not None:
            inbound.track(call)
        for sink in self._message_sinks:
            sink.message_sent(outbound.start)  # the one request
        return outbound, call

    async def _responses(self, outbound: _Outbound, call: Any) -> AsyncIterator[Any]:
        """The stream's responses, each counted as its caller reads it; its end seen as the caller reads it."""
        try:
            async for response in call:
                self._received(outbound)
                yield response
        except grpc.aio.AioRpcError as error:
            self._end(outbound, error.code(), error.details() or "")
            raise
        self._end(outbound, await call.code(), await call.details() or "")

    async def _end_when_done(self, outbound: _Outbound, call: Any) -> None:
        code = await call.code()
        self._end(outbound, code, await call.details() or "")

    def _received(self, outbound: _Outbound) -> None:
        for sink in self._message_sinks:
            sink.message_received(outbound.start)

    def _end(self, outbound: _Outbound, code: grpc.StatusCode, details: str) -> None:
        if outbound.is_ended:
            return
        outbound.is_ended = True
        duration_ms = round((time.perf_counter() - outbound.started) * 1000, 3)
        record = CallRecord(outbound.start, code, details, duration_ms, self._peer)
        for sink in self._sinks:
            sink.call_ended(record)
        if outbound.span is not None:
            end_span(outbound.span, code, details)


class _UnaryUnaryObserver(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, observer: ClientObserver) -> None:
        self._observer = observer

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._observer.intercept_unary_unary(continuation, client_call_details, request)


class _UnaryStreamObserver(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, observer: ClientObserver) -> None:
        self._observer = observer

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._observer.intercept_unary_stream(continuation, client_call_details, request)
