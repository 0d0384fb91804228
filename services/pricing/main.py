"""The pricing service: ``.venv/bin/python services/pricing/main.py``.

Environment: the kit's settings (PROTOMESH_CONTROL_PLANE, PROTOMESH_ZONE, PROTOMESH_ADVERTISE_HOST,
PROTOMESH_LOG_LEVEL, PROTOMESH_ADMIN_ADDRESS, PROTOMESH_HEALTH_ADDRESS, PROTOMESH_TLS_CA_FILE,
PROTOMESH_TLS_CERT_FILE, PROTOMESH_TLS_KEY_FILE, PROTOMESH_MESH_CONFIG, HOST, PORT; default port
50054) and CATALOG_TARGET, a target that replaces the catalog's mesh name outright. The catalog is
dialled as "catalog" through the mesh (xds:///catalog) with a control plane, else at
127.0.0.1:50051. With an admin address, GET /metrics there has the server's calls and those it makes
to the catalog. Traces: the standard OpenTelemetry variables
(protomesh_kit.tracing_from_environment): with OTEL_EXPORTER_OTLP_ENDPOINT (or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set, a span per call it serves and per call it makes to the
catalog goes to that OTLP/HTTP collector, the last of them flushed after the drain. With the
PROTOMESH_TLS_* files, its port is STRICT mTLS and it dials the catalog over mTLS; with a control
plane too, it registers, reads xDS and renews its certificate over mTLS; with them and
PROTOMESH_MESH_CONFIG, the file's services.pricing.authorization (if any) decides which callers may
call which methods (protomesh_kit.authorization). With PROTOMESH_HEALTH_ADDRESS, a plaintext port
there answers grpc.health.v1 alone with the server's statuses, for probes that cannot present a mesh
certificate. Its catalog channel follows the renewed certificate files.
"""

from __future__ import annotations

import asyncio
import os
import sys

import grpc
from protomesh_kit import (
    AuthorizationPolicy,
    Logger,
    MeshError,
    MeshServer,
    ProcessTracing,
    Settings,
    SettingsError,
    create_server,
    dial,
    drain_on_signals,
    load_settings,
    tracing_from_environment,
)
from shop.pricing.v1 import pricing_pb2_grpc

from pricing_service import PricingService

PRICING_DEFAULT_PORT = 50054
# How long the start-up connection to the catalog is waited for before it is left to the calls.
CATALOG_CONNECT_TIMEOUT_S = 30.0
CATALOG_FALLBACK_TARGET = "127.0.0.1:50051"


async def main() -> int:
    try:
        settings = load_settings()
        tracing = tracing_from_environment(os.environ, "pricing")
        authorization = settings.authorization_of("pricing")
    except (SettingsError, MeshError, OSError, UnicodeDecodeError) as error:
        log_start_failure(Logger(name="pricing"), error)
        return 1
    logger = Logger(name="pricing", level=settings.log_level)
    catalog = None
    try:
        catalog = dial(
            os.environ.get("CATALOG_TARGET") or "catalog",
            control_plane=settings.control_plane,
            zone=settings.zone,
            fallback_target=CATALOG_FALLBACK_TARGET,
            logger=logger,
            metrics=settings.admin_address is not None,
            tracing=tracing,
            tls=settings.tls,
            server_service="catalog",
        )
        server = make_server(settings, logger, tracing, authorization)
    except (ValueError, OSError) as error:
        # A TLS file that cannot be used, an authorization block that cannot: one line, no traceback.
        log_start_failure(logger, error)
        if catalog is not None:
            await catalog.close()
        return 1
    # Connect to the catalog now, in the background: a channel's first xDS resolution and
    # connection take a moment, which the first quote's budget (the caller's deadline) should not pay.
    warm_up = asyncio.create_task(connect_early(catalog, logger))
    server.add_service(pricing_pb2_grpc.add_PricingServiceServicer_to_server, PricingService(catalog))
    exit_code = drain_on_signals(server.drain, logger)
    try:
        await server.listen(settings.listen_address(PRICING_DEFAULT_PORT))
    except (ValueError, OSError) as error:
        log_start_failure(logger, error)
        warm_up.cancel()
        await catalog.close()
        return 1
    code = await exit_code
    warm_up.cancel()
    await catalog.close()
    if tracing is not None:
        await tracing.shutdown()  # after the drain: the spans of every call it let finish
    return code


def log_start_failure(logger: Logger, error: BaseException) -> None:
    """Logs why pricing could not start, in one line without a traceback."""
    logger.fatal("pricing failed to start", err={"type": type(error).__name__, "message": str(error)})


def make_server(
    settings: Settings, logger: Logger, tracing: ProcessTracing | None, authorization: AuthorizationPolicy | None
) -> MeshServer:
    """The pricing server of these settings (not yet listening)."""
    return create_server(
        "pricing",
        logger=logger,
        control_plane=settings.control_plane,
        zone=settings.zone,
        advertise_host=settings.advertise_host,
        admin_address=settings.admin_address,
        health_address=settings.health_address,
        tracing=tracing,
        tls=settings.tls,
        authorization=authorization,
    )


async def connect_early(channel: grpc.aio.Channel, logger: Logger, timeout_s: float = CATALOG_CONNECT_TIMEOUT_S) -> None:
    """Waits for the channel to be READY (it connects on the way), logging when it is or is not in time."""
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout_s)
        logger.info("catalog channel ready")
    except asyncio.TimeoutError:
        logger.warn("catalog channel not ready yet; calls will wait for it", timeoutMs=round(timeout_s * 1000))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
