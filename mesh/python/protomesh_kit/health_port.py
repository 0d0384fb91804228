"""The plaintext health port of a kit server (mesh/server.ts ``healthAddress``).

For probes that cannot present a mesh certificate (a Kubernetes gRPC probe, a load balancer)
when the gRPC port is mTLS: a grpc.aio server of its own serving grpc.health.v1 alone, with the
gRPC port's HealthReporter, so that both answer the same statuses and a drain's NOT_SERVING
reaches both. Every other method is UNIMPLEMENTED there, so mTLS still guards the application's
methods. It has none of the kit's interceptors: a probe every few seconds is not worth a call line.
"""

from __future__ import annotations

import grpc

from .health import HealthReporter


class HealthPort:
    """A bound health port: ``start`` it, ``stop`` it after the gRPC port has stopped."""

    def __init__(self, address: str, health: HealthReporter) -> None:
        """Binds ``address`` ("host:port"; port 0 picks one); raises OSError naming it when it cannot."""
        self._server = grpc.aio.server()
        health.add_to_server(self._server)
        try:
            #: The bound port.
            self.port = self._server.add_insecure_port(address)
        except RuntimeError as error:
            raise OSError(f"health port: could not bind {address}") from error

    async def start(self) -> None:
        """Starts answering health checks."""
        await self._server.start()

    async def stop(self) -> None:
        """Closes the port at once: its only long-lived calls are health Watch streams, which have seen
        NOT_SERVING since the drain began and would otherwise hold the port open for a grace period."""
        await self._server.stop(None)
