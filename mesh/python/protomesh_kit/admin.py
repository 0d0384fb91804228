"""The admin HTTP port of a protomesh process (mesh/admin.ts): ``GET /metrics`` for Prometheus.

``GET /metrics`` (and ``HEAD``) answers the Prometheus text exposition of a registry, through
prometheus_client's own WSGI app (which also speaks OpenMetrics to a scraper that asks for it,
and gzip); any other path is 404, and a method other than GET or HEAD 405. Plain HTTP on its own
port, apart from the gRPC port, as Prometheus and Kubernetes expect; bind it to loopback unless the
scraper runs elsewhere.

It is prometheus_client's ``start_http_server`` arrangement: a wsgiref server on a thread of its
own, a thread per scrape, so that a scrape reads the registry without waiting for the event loop.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

from .logger import Logger
from .metrics import mesh_metrics

#: How long the serving thread waits between looks at whether it is to stop (s): at most this
#: long is added to ``close`` (socketserver's serve_forever polls; its default is 0.5 s).
SHUTDOWN_POLL_S = 0.05

# host:port or [v6]:port (as admin.ts splitAddress); an empty host binds every interface.
_ADDRESS = re.compile(r"(?:\[([^\]]+)\]|([^:]*)):(\d+)")


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` into its parts; a ValueError names the expected shape."""
    match = _ADDRESS.fullmatch(address)
    port = int(match.group(3)) if match else -1
    if match is None or port > 65535:
        raise ValueError(f"admin address: expected host:port, got {address!r}")
    return match.group(1) or match.group(2) or "0.0.0.0", port


class _HttpServer(ThreadingMixIn, WSGIServer):
    # A scrape's thread does not hold the process up at exit, nor close() up (socketserver).
    daemon_threads = True


class _HttpServer6(_HttpServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """Writes no access log to stderr: Prometheus scrapes every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


StartResponse = Callable[..., Any]


def admin_app(registry: CollectorRegistry, logger: Logger | None = None) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The admin port's WSGI app: prometheus_client's metrics app at /metrics, 404 and 405 around it."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: the admin port serves /metrics\n"]
        method = environ.get("REQUEST_METHOD")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")])
            return [b"method not allowed\n"]
        answered: list[Any] = []
        try:
            # prometheus_client's app answers GET only: HEAD is its GET without the body.
            body = b"".join(metrics_app({**environ, "REQUEST_METHOD": "GET"}, lambda *answer: answered.append(answer)))
        except Exception as error:  # noqa: BLE001 - a collector's failure is this scrape's 500, not the server's end
            if logger is not None:
                logger.error("metrics scrape failed", err={"type": type(error).__name__, "message": str(error)})
            start_response("500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"metrics could not be collected\n"]
        status, headers = answered[0][:2]
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [] if method == "HEAD" else [body]

    return app


class AdminServer:
    """A process's admin HTTP port, serving on a thread of its own until ``close``."""

    def __init__(self, server: WSGIServer, logger: Logger | None) -> None:
        self._server = server
        self._logger = logger
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S}, name="protomesh-admin", daemon=True
        )
        self._thread.start()
        self._is_closed = False

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    async def close(self) -> None:
        """Stops listening (a scrape under way finishes on its own thread); idempotent."""
        if self._is_closed:
            return
        self._is_closed = True
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()
        self._thread.join()


def start_admin_server(address: str, registry: CollectorRegistry = REGISTRY, logger: Logger | None = None) -> AdminServer:
    """Binds ``address`` ("host:port"; port 0 picks a free one) and serves ``registry`` at /metrics.

    The mesh's metrics are made in ``registry`` now, so that they are there from the first scrape on.
    """
    host, port = split_address(address)
    mesh_metrics(registry)
    server_class = _HttpServer6 if ":" in host else _HttpServer
    server = make_server(host, port, admin_app(registry, logger), server_class=server_class, handler_class=_QuietHandler)
    admin = AdminServer(server, logger)
    if logger is not None:
        logger.info("admin port listening (/metrics)", address=address, port=admin.port)
    return admin
