"""The per-call log line (mesh/sink-log.ts): the same field names in every language of the mesh.

``service``, ``method``, ``code`` (the status name, "OK", "NOT_FOUND"), ``durationMs``, ``peer``,
``requestId``. Successes and caller mistakes log at info ("call", "outbound call"); server
failures (errors.is_server_failure) at warn with ``details`` ("call failed", "outbound call
failed"); probes and reflection (``is_quiet``) at debug.
"""

from __future__ import annotations

import grpc

from .errors import is_server_failure
from .logger import Logger


def log_call(
    logger: Logger,
    *,
    side: str,
    service: str,
    method: str,
    code: grpc.StatusCode,
    details: str,
    duration_ms: float,
    peer: str,
    request_id: str,
    is_quiet: bool = False,
) -> None:
    """Writes the one line of a call that ended."""
    fields = {
        "service": service,
        "method": method,
        "code": code.name,
        "durationMs": duration_ms,
        "peer": peer,
        "requestId": request_id,
    }
    is_server = side == "server"
    if is_server_failure(code):
        logger.log("debug" if is_quiet else "warn", "call failed" if is_server else "outbound call failed", **fields, details=details)
    else:
        logger.log("debug" if is_quiet else "info", "call" if is_server else "outbound call", **fields)
