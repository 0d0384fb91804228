"""The server's call observer (mesh/observer-server.ts and mesh/handler-guard.ts in one interceptor).

For every call it takes the inbound ``x-request-id`` (or makes one) and echoes it to the caller
(response headers; trailers for a trailers-only answer), opens the call's context (call_context.py)
so outbound calls inherit its deadline, cancellation and request id, converts whatever the handler
raises into a deliberate status (a MeshError or a failed outbound call keeps its code; anything
else is INTERNAL "internal error", its traceback logged, never sent), and hands the call to its
sinks (observer.py) as it starts, as each message passes and when it ends: the log line with the
same fields as the TypeScript kit's (sink_log.py), the metrics (metrics.py). Given a tracer, it
makes the call's SERVER span, current while the handler runs (tracing.py).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from opentelemetry.trace import Span, Tracer

from .call_context import InboundCall, inbound_call
from .errors import INTERNAL_DETAILS, MeshError
from .logger import Logger
from .observer import MESH_SERVICES, CallRecord, CallSink, CallStart, CallType, counts_messages, method_path, split_method
from .request_id import REQUEST_ID_KEY, request_id_from
from .tracing import as_current, end_span, start_server_span

#: Methods whose streams live as long as the caller wants: a drain ends them (UNAVAILABLE) at once
#: so that their callers reconnect elsewhere instead of holding the server for its grace period.
LONG_LIVED_METHODS = frozenset({"/grpc.health.v1.Health/Watch"})

#: grpcio's handler kinds: the attribute naming each, its handler factory and its grpc_type (interceptors rebuild handlers with them).
HANDLER_KINDS: tuple[tuple[str, Callable[..., grpc.RpcMethodHandler], CallType], ...] = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, "unary"),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, "client_stream"),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, "server_stream"),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, "bidi_stream"),
)


def peer_address(peer: str | None) -> str:
    """grpcio's ``ipv4:127.0.0.1:5000`` / ``ipv6:[::1]:5000`` as grpc-js prints it (``127.0.0.1:5000``)."""
    if not peer:
        return ""
    for prefix in ("ipv4:", "ipv6:"):
        if peer.startswith(prefix):
            return peer[len(prefix) :]
    return peer


def _counting(convert: Callable[[Any], Any] | None, count: Callable[[], None]) -> Callable[[Any], Any]:
    """``convert`` (a message's (de)serializer; None passes bytes as they are) that calls ``count``
    for each message it converted: grpcio calls it once per message as the message passes."""

    def counted(message: Any) -> Any:
        converted = message if convert is None else convert(message)
        count()
        return converted

    return counted


class _Call:
    """One inbound call's bookkeeping: its request id, timing, and whether its headers went out."""

    def __init__(self, start: CallStart, path: str, context: grpc.aio.ServicerContext) -> None:
        self.start = start
        self.path = path
        self.context = context
        self.started = time.perf_counter()
        self.request_id = start.request_id
        remaining = context.time_remaining()
        self.inbound = InboundCall(self.request_id, None if remaining is None else time.monotonic() + remaining)
        self.headers_sent = False
        #: The call's SERVER span; None without a tracer, or for the mesh's own services.
        self.span: Span | None = None
        # In the trailers from the start, so that a trailers-only answer carries it however the
        # handler ends (its own context.abort too); moved to the headers when they go out.
        context.set_trailing_metadata(((REQUEST_ID_KEY, self.request_id),))
        context.add_done_callback(self._on_done)

    def _on_done(self, context: grpc.aio.ServicerContext) -> None:
        if context.cancelled():
            self.inbound.cancel()
        elif self.inbound.state == "active":
            self.inbound.state = "answered"

    async def send_headers(self) -> None:
        """Echoes the request id in the response headers, unless the handler already sent them."""
        if self.headers_sent:
            return
        try:
            await self.context.send_initial_metadata(((REQUEST_ID_KEY, self.request_id),))
        except grpc.aio.UsageError:
            self._echo_in_trailers()  # the handler sent its own headers: the trailers carry it
            return
        self.headers_sent = True
        trailers = tuple(self.context.trailing_metadata() or ())
        self.context.set_trailing_metadata(tuple(entry for entry in trailers if entry[0] != REQUEST_ID_KEY))

    def _echo_in_trailers(self) -> None:
        trailers = tuple(self.context.trailing_metadata() or ())
        if not any(key == REQUEST_ID_KEY for key, _ in trailers):
            self.context.set_trailing_metadata(trailers + ((REQUEST_ID_KEY, self.request_id),))

    async def fail(self, error: BaseException, logger: Logger) -> grpc.StatusCode:
        """Ends the call with the status ``error`` stands for (raises grpc's AbortError); returns the code."""
        if isinstance(error, MeshError):
            code, details = error.code, error.details
        elif isinstance(error, grpc.aio.AioRpcError):
            # An outbound call the handler did not catch keeps its status, as MeshError.from does in TS.
            code, details = error.code(), error.details() or ""
        else:
            logger.error(
                "handler failed",
                method=self.path,
                err={"type": type(error).__name__, "message": str(error), "stack": traceback.format_exc()},
            )
            code, details = grpc.StatusCode.INTERNAL, INTERNAL_DETAILS
        if not self.headers_sent:
            self._echo_in_trailers()
        self.outcome = (code, details)
        await self.context.abort(code, details)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    def status(self, error: BaseException | None) -> tuple[grpc.StatusCode, str]:
        """The call's final status as far as the handler's side knows it."""
        if isinstance(error, asyncio.CancelledError):
            deadline = self.inbound.deadline
            if deadline is not None and time.monotonic() >= deadline:
                return grpc.StatusCode.DEADLINE_EXCEEDED, "call ended before its status"
            return grpc.StatusCode.CANCELLED, "call ended before its status"
        outcome = getattr(self, "outcome", None)
        if outcome is not None:
            return outcome
        code = self.context.code()
        if code is None:
            return (grpc.StatusCode.UNKNOWN, "") if error is not None else (grpc.StatusCode.OK, "")
        if isinstance(code, int):
            code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
        return code, self.context.details() or ""


class ServerObserver(grpc.aio.ServerInterceptor):
    """The interceptor every kit server runs first; see the module's docstring."""

    def __init__(
        self, logger: Logger, draining: asyncio.Event, sinks: Sequence[CallSink] = (), tracer: Tracer | None = None
    ) -> None:
        self._logger = logger
        self._tracer = tracer
        self._draining = draining
        self._sinks = tuple(sinks)
        self._message_sinks = tuple(sink for sink in self._sinks if counts_messages(sink))
        #: Calls in flight now (long-lived streams included).
        self.inflight = 0

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # grpcio answers UNIMPLEMENTED
        path = method_path(handler_call_details.method)
        for kind, make, call_type in HANDLER_KINDS:
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                service, method = split_method(path)
                request_id = request_id_from(handler_call_details.invocation_metadata)
                start = CallStart("server", call_type, service, method, request_id)
                deserialize, serialize = handler.request_deserializer, handler.response_serializer
                # A stream's messages are counted as grpcio converts them; a unary request when the
                # handler starts, a unary response when it was returned (_start, _end).
                if self._message_sinks and handler.request_streaming:
                    deserialize = _counting(deserialize, functools.partial(self._received, start))
                if self._message_sinks and handler.response_streaming:
                    serialize = _counting(serialize, functools.partial(self._sent, start))
                return make(
                    self._wrap(start, path, behaviour),
                    request_deserializer=deserialize,
                    response_serializer=serialize,
                )
        return handler

    def _wrap(self, start: CallStart, path: str, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        observer = self
        is_streaming_response = start.type in ("server_stream", "bidi_stream")
        if inspect.isasyncgenfunction(behaviour):

            async def stream_wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
                call = observer._start(start, path, context)
                error: BaseException | None = None
                try:
                    await call.send_headers()
                    with inbound_call(call.inbound), as_current(call.span):
                        async for response in behaviour(request, context):
                            yield response
                except BaseException as caught:
                    error = caught
                    if isinstance(caught, (asyncio.CancelledError, grpc.aio.AbortError)):
                        raise
                    await call.fail(caught, observer._logger)
                finally:
                    observer._end(call, error)

            return stream_wrapper

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            call = observer._start(start, path, context)
            error: BaseException | None = None
            try:
                if is_streaming_response:
                    await call.send_headers()
                with inbound_call(call.inbound), as_current(call.span):
                    if path in LONG_LIVED_METHODS:
                        response = await observer._until_drained(behaviour(request, context), context)
                    else:
                        response = behaviour(request, context)
                        if inspect.isawaitable(response):
                            response = await response
                if not is_streaming_response:
                    await call.send_headers()
                return response
            except BaseException as caught:
                error = caught
                if isinstance(caught, (asyncio.CancelledError, grpc.aio.AbortError)):
                    raise
                await call.fail(caught, observer._logger)
            finally:
                observer._end(call, error)

        return wrapper

    async def _until_drained(self, work: Awaitable[Any], context: grpc.aio.ServicerContext) -> Any:
        """Runs a long-lived stream's handler until it ends or the server drains (then UNAVAILABLE)."""
        task = asyncio.ensure_future(work)
        drained = asyncio.ensure_future(self._draining.wait())
        try:
            await asyncio.wait({task, drained}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            drained.cancel()
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            return task.result()
        raise MeshError(grpc.StatusCode.UNAVAILABLE, "server is shutting down")

    def _start(self, start: CallStart, path: str, context: grpc.aio.ServicerContext) -> _Call:
        self.inflight += 1
        call = _Call(start, path, context)
        if self._tracer is not None and start.service not in MESH_SERVICES:
            call.span = start_server_span(self._tracer, start, context.invocation_metadata())
        for sink in self._sinks:
            sink.call_started(start)
        if start.type in ("unary", "server_stream"):
            self._received(start)  # the one request, decoded before the handler was called
        return call

    def _received(self, start: CallStart) -> None:
        for sink in self._message_sinks:
            sink.message_received(start)

    def _sent(self, start: CallStart) -> None:
        for sink in self._message_sinks:
            sink.message_sent(start)

    def _end(self, call: _Call, error: BaseException | None) -> None:
        self.inflight -= 1
        if call.inbound.state == "active":
            call.inbound.state = "answered"
        code, details = call.status(error)
        start = call.start
        if code == grpc.StatusCode.OK and start.type in ("unary", "client_stream"):
            self._sent(start)  # the response the handler returned, sent as this returns
        duration_ms = round((time.perf_counter() - call.started) * 1000, 3)
        record = CallRecord(start, code, details, duration_ms, peer_address(call.context.peer()))
        for sink in self._sinks:
            sink.call_ended(record)
        if call.span is not None:
            end_span(call.span, code, details)
