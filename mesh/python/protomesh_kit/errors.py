"""The one error type of protomesh (mesh/errors.ts): a gRPC status code and the details a caller may see."""

from __future__ import annotations

import grpc

#: Details sent to a caller when a handler fails unexpectedly; the cause goes to the log only.
INTERNAL_DETAILS = "internal error"

_SERVER_FAILURES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class MeshError(Exception):
    """A failure with a chosen gRPC status. Handlers raise it to end a call with that status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError, prefix: str = "") -> MeshError:
        """The status of a failed outbound call, its details prefixed (e.g. ``"catalog: "``)."""
        return cls(error.code(), f"{prefix}{error.details() or ''}")


def invalid_argument(field: str, problem: str) -> MeshError:
    """A request field that is not acceptable: INVALID_ARGUMENT ``"<field>: <problem>"``."""
    return MeshError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {problem}")


def is_server_failure(code: grpc.StatusCode) -> bool:
    """Whether ``code`` is the server's failure rather than the caller's (gRFC A50's split), as errors.ts decides."""
    return code in _SERVER_FAILURES
