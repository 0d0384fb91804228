"""Enforces a server's authorization policy (authorization.py; mesh/interceptor-authorization.ts).

A refused call is answered PERMISSION_DENIED or UNAUTHENTICATED before its handler and the
interceptors after this one run. grpcio gives a server interceptor the method and metadata but not
the peer's certificate, so the check runs in the handler this returns, first, before the one it
wraps is called (a request stream not yet read). Placed right after the call observer
(observer_server.py), which logs and counts the refusal like any call. Calls of the mesh's own
services get their handler untouched.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from .authorization import Authorizer, MethodAuthorization
from .observer import method_path
from .observer_server import HANDLER_KINDS
from .tls import peer_identity


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):
    """Authorizes every call of the server's application services before its handler."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # grpcio answers UNIMPLEMENTED; no rule is compiled for a path nobody serves
        method = self.authorizer.method(method_path(handler_call_details.method))
        if method.is_exempt:
            return handler
        for kind, make, _ in HANDLER_KINDS:
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                return make(
                    _guarded(method, behaviour),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler


def _guarded(method: MethodAuthorization, behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """``behaviour`` run only for a caller ``method`` allows; of the same kind (an async generator stays one)."""
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await _refuse_unless_allowed(method, context)
            async for response in behaviour(request, context):
                yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _refuse_unless_allowed(method, context)
        response = behaviour(request, context)
        return await response if inspect.isawaitable(response) else response

    return call


async def _refuse_unless_allowed(method: MethodAuthorization, context: grpc.aio.ServicerContext) -> None:
    decision = method.check(peer_identity(context))
    if decision.outcome != "allow":
        await context.abort(decision.code, decision.details)  # raises: the handler is never called
