"""The per-call log line (mesh/sink-log.ts): the same field names in every language of the mesh.

``service``, ``method``, ``code`` (the status name, "OK", "NOT_FOUND"), ``durationMs``, ``peer``,
``requestId``. Successes and caller mistakes log at info ("call", "outbound call"); server
failures (errors.is_server_failure) at warn with ``details`` ("call failed", "outbound call
failed"); the calls a server answers for the mesh's own use (observer.MESH_SERVICES) at debug.
"""

from __future__ import annotations

from .errors import is_server_failure
from .logger import Logger
from .observer import MESH_SERVICES, CallRecord, CallSink


class LogSink(CallSink):
    """Writes one line per call when it ends to ``logger`` (the server's, or the client's target's)."""

    def __init__(self, logger: Logger) -> None:
        self._logger = logger

    def call_ended(self, record: CallRecord) -> None:
        call = record.call
        fields = {
            "service": call.service,
            "method": call.method,
            "code": record.code.name,
            "durationMs": record.duration_ms,
            "peer": record.peer,
            "requestId": call.request_id,
        }
        is_server = call.side == "server"
        is_quiet = is_server and call.service in MESH_SERVICES
        if is_server_failure(record.code):
            msg = "call failed" if is_server else "outbound call failed"
            self._logger.log("debug" if is_quiet else "warn", msg, **fields, details=record.details)
        else:
            self._logger.log("debug" if is_quiet else "info", "call" if is_server else "outbound call", **fields)
