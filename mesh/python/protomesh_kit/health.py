"""grpc.health.v1 for a kit server (mesh/health.ts), on grpcio-health-checking's asyncio servicer.

Every service the server hosts is reported under its full name, plus the overall ``""`` entry.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

#: The health status of the whole server, under the empty service name.
OVERALL_HEALTH = ""
HEALTH_SERVICE_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


class HealthReporter:
    """The Health service of one server: Check and Watch, SERVING or NOT_SERVING per service."""

    def __init__(self) -> None:
        self._servicer = health_aio.HealthServicer()
        self._services: set[str] = {OVERALL_HEALTH}
        self._is_serving = False

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Adds the Health service to ``server`` before it starts: the gRPC port's, and the plaintext health port's (health_port.py)."""
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)

    def track(self, service: str) -> None:
        """Reports on ``service`` from now on (set with the server's status when it starts)."""
        self._services.add(service)

    async def set_serving(self, is_serving: bool, service: str | None = None) -> None:
        """Sets one service, or every tracked one when none is named, to SERVING or NOT_SERVING."""
        value = health_pb2.HealthCheckResponse.SERVING if is_serving else health_pb2.HealthCheckResponse.NOT_SERVING
        if service is not None:
            self._services.add(service)
            await self._servicer.set(service, value)
            return
        self._is_serving = is_serving
        for name in sorted(self._services):
            await self._servicer.set(name, value)

    @property
    def tracked_services(self) -> list[str]:
        """Names reported on, the overall "" entry included."""
        return sorted(self._services)
