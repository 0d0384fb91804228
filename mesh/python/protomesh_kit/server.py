"""A grpc.aio server with what every protomesh service needs (mesh/server.ts).

grpc.health.v1 and server reflection, one log line per call and handlers that never leak an
exception (observer_server.py), go-grpc-prometheus' metrics (metrics.py) on an admin HTTP port
(admin.py) and channelz and CSDS on the gRPC port with it (admin_services.py), a trace span per call
(tracing.py), registration with the control plane (registry_lease.py), mTLS with certificate
renewal (tls.py, certificate_renewal.py) and authorization (authorization.py), a plaintext port of
health alone for probes (health_port.py), and a drain: deregister, NOT_SERVING, end health Watch
streams, refuse new calls, let the calls in flight finish within the grace period, then stop.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, FileDescriptor
from grpc_reflection.v1alpha import reflection
from prometheus_client import REGISTRY, CollectorRegistry

from .admin import AdminServer, start_admin_server
from .admin_services import ADMIN_SERVICE_FILES, REFLECTED_ADMIN_SERVICES, add_admin_services
from .authorization import AuthorizationPolicy, Authorizer, parse_authorization_policy
from .certificate_renewal import CertificateRenewer
from .health import HEALTH_SERVICE_NAME, HealthReporter
from .health_port import HealthPort
from .interceptor_authorization import AuthorizationInterceptor
from .logger import Logger
from .metrics import MeshMetrics, MetricsSink, metrics_of
from .observer import CallSink
from .observer_server import ServerObserver
from .registry_lease import RegistryLease, endpoint_for_server
from .sink_log import LogSink
from .spiffe_id import trust_domain_of_ca_file
from .tls import server_credentials
from .tls_certificate_files import CertificateFileWatcher, TlsFiles
from .tracing import ProcessTracing

#: How long a drain lets in-flight calls finish before it cancels them (s).
DEFAULT_DRAIN_GRACE_S = 10.0

#: The descriptor set `make gen` writes (buf build, with JSON names), beside generated/python.
DEFAULT_DESCRIPTOR_SET = Path(__file__).resolve().parents[3] / "generated" / "descriptor.binpb"


@functools.lru_cache(maxsize=8)
def reflection_pool(descriptor_set: Path | None, also: tuple[FileDescriptor, ...] = ()) -> descriptor_pool.DescriptorPool | None:
    """A descriptor pool of the descriptor set for reflection, or None (the default pool) without one.

    The generated modules' descriptors carry no JSON names, so grpcurl would print snake_case
    fields; buf's descriptor set has them, as the TypeScript and Go servers' reflection does. Read
    once per file: every server of a process shares the pool. ``also``: files from outside the set
    (channelz, admin_services.py), added with those of their imports the set lacks.
    """
    if descriptor_set is None or not descriptor_set.is_file():
        return None
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    pending = list(files)
    while pending:  # in dependency order, whatever order the set has them in
        ready = [file for file in pending if all(dep in added for dep in file.dependency)]
        if not ready:
            return None
        for file in ready:
            pool.Add(file)
            added.add(file.name)
        pending = [file for file in pending if file.name not in added]
    for file in also:
        _add_with_imports(pool, file, added)
    return pool


def _add_with_imports(pool: descriptor_pool.DescriptorPool, file: FileDescriptor, added: set[str]) -> None:
    if file.name in added:
        return
    for imported in file.dependencies:
        _add_with_imports(pool, imported, added)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    for message_proto, message in zip(proto.message_type, file.message_types_by_name.values()):
        _set_json_names(message_proto, message)
    pool.Add(proto)
    added.add(file.name)


def _set_json_names(proto: descriptor_pb2.DescriptorProto, message: Descriptor) -> None:
    # CopyToProto leaves json_name out; without it grpcurl prints snake_case (as reflection_pool says).
    for field_proto, field in zip(proto.field, message.fields):
        field_proto.json_name = field.json_name
    for nested_proto, nested in zip(proto.nested_type, message.nested_types):
        _set_json_names(nested_proto, nested)


class _ServiceRecorder:
    """Stands in for the server in a generated ``add_XServicer_to_server`` to learn the service's name."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self.names: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: Any) -> None:
        self.names.append(service_name)
        self._server.add_registered_method_handlers(service_name, handlers)


class MeshServer:
    """Add services, ``await listen()``, and ``await drain()`` (drain_on_signals does it on SIGTERM).

    ``metrics``: go-grpc-prometheus' grpc_server_* per method (metrics.py), in prometheus_client's
    REGISTRY (True) or the registry given; on when ``admin_address`` is set, unless False.
    ``admin_address``: "host:port" of the admin HTTP port (admin.py: GET /metrics), opened by
    ``listen`` and closed by the drain; none unless set. ``admin_services``: channelz and CSDS on the
    gRPC port (admin_services.py), channelz described by reflection; on when ``admin_address`` is
    set, unless False. ``sinks``: more consumers of every call (observer.py), after the log line and the metrics.
    ``tracing``: a SERVER span per inbound call (tracing.py), the mesh's own services excepted;
    none without it. The program shuts it down after the drain (it may serve its clients too).
    ``tls``: STRICT mTLS (tls.py): the port presents ``cert_file`` and accepts only clients with a
    certificate from ``ca_file``'s CA; the files are looked at every ``refresh_interval_s`` and new
    handshakes use replaced ones (open connections keep theirs). Plaintext unless given. With
    ``control_plane`` too, the server registers over mTLS (the control plane must prove it is
    ``control-plane``; it takes a registration only under the caller's own service name) and, unless
    ``renew_certificate`` is False, renews the files through the control plane's
    CertificateService once half their validity has passed (certificate_renewal.py); the renewed
    files serve the next handshake.
    ``authorization``: per-method authorization of callers by their SPIFFE ID (authorization.py), an
    AuthorizationPolicy or the raw ``authorization`` block (validated here, the error naming
    ``authorization.<field>``), enforced before the handler and ``interceptors``: deny wins, default
    deny PERMISSION_DENIED, UNAUTHENTICATED without a caller identity, health, reflection and ORCA exempt.
    Needs ``tls``; a caller named by service name matches in ``tls.trust_domain``, else the CA's.
    ``health_address``: "host:port" of a plaintext port serving grpc.health.v1 alone, with this
    server's statuses (health_port.py), for probes that cannot present a mesh certificate (a
    Kubernetes gRPC probe) when the gRPC port is mTLS; every other method is UNIMPLEMENTED there.
    Opened by ``listen``; NOT_SERVING from the start of the drain, closed once the server has
    stopped. None unless set.
    """

    def __init__(
        self,
        name: str,
        *,
        logger: Logger | None = None,
        control_plane: str | None = None,
        mesh_service: str | None = None,
        zone: str = "",
        advertise_host: str | None = None,
        lease_ttl_ms: int = 0,
        drain_grace_s: float = DEFAULT_DRAIN_GRACE_S,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        options: Sequence[tuple[str, Any]] = (),
        descriptor_set: Path | None = DEFAULT_DESCRIPTOR_SET,
        metrics: bool | CollectorRegistry | None = None,
        admin_address: str | None = None,
        admin_services: bool | None = None,
        sinks: Sequence[CallSink] = (),
        tracing: ProcessTracing | None = None,
        tls: TlsFiles | None = None,
        authorization: AuthorizationPolicy | Mapping[str, Any] | None = None,
        renew_certificate: bool = True,
        health_address: str | None = None,
    ) -> None:
        self.name = name
        self._descriptor_set = descriptor_set
        self.root_logger = logger or Logger(name=name)
        self.logger = self.root_logger.child(server=name, component="server")
        self.health = HealthReporter()
        self._control_plane = control_plane
        self._mesh_service = mesh_service or name
        self._zone = zone
        self._advertise_host = advertise_host
        self._lease_ttl_ms = lease_ttl_ms
        self._tls = tls
        self._renews_certificate = renew_certificate
        # Read now, so that unusable files fail create_server rather than the first handshake.
        self._watcher = CertificateFileWatcher(tls, self.root_logger.child(component="tls")) if tls is not None else None
        self._credentials = server_credentials(self._watcher) if self._watcher is not None else None
        self._drain_grace_s = drain_grace_s
        self._draining = asyncio.Event()
        #: The metrics this server counts into; None when they are off.
        self.metrics: MeshMetrics | None = metrics_of(metrics, admin_address)
        self._admin_address = admin_address
        self._admin: AdminServer | None = None
        self._health_address = health_address
        self._health_port: HealthPort | None = None
        metric_sinks = [MetricsSink(self.metrics)] if self.metrics is not None else []
        tracer = tracing.tracer if tracing is not None else None
        self._observer = ServerObserver(self.logger, self._draining, [LogSink(self.logger), *metric_sinks, *sinks], tracer)
        #: This server's authorization, compiled per method; None without a policy.
        self.authorizer = _authorizer_of(name, authorization, tls)
        authorizing = [AuthorizationInterceptor(self.authorizer)] if self.authorizer is not None else []
        self._server = grpc.aio.server(interceptors=[self._observer, *authorizing, *interceptors], options=list(options))
        self.health.add_to_server(self._server)
        is_admin = admin_address is not None if admin_services is None else admin_services
        #: The full names of the admin services this server hosts (channelz); empty when they are off.
        self.admin_services: list[str] = add_admin_services(self._server) if is_admin else []
        self._services: list[str] = []
        self._port: int | None = None
        self._lease: RegistryLease | None = None
        self._renewer: CertificateRenewer | None = None
        self._drained: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    def add_service(self, add_to_server: Callable[[Any, Any], None], servicer: Any) -> MeshServer:
        """Adds a servicer with its generated ``add_XServicer_to_server`` function; reports its health."""
        if self._port is not None:
            raise RuntimeError(f"{self.name}: add_service must be called before listen")
        recorder = _ServiceRecorder(self._server)
        add_to_server(servicer, recorder)
        for service in recorder.names:
            self._services.append(service)
            self.health.track(service)
        return self

    @property
    def service_names(self) -> list[str]:
        """Full names of the application services added."""
        return list(self._services)

    @property
    def port(self) -> int:
        """The bound port; raises before ``listen``."""
        if self._port is None:
            raise RuntimeError(f"{self.name}: not listening")
        return self._port

    @property
    def admin_port(self) -> int | None:
        """The bound admin HTTP port (GET /metrics); None without ``admin_address`` or before ``listen``."""
        return None if self._admin is None else self._admin.port

    @property
    def health_port(self) -> int | None:
        """The bound plaintext health port; None without ``health_address`` or before ``listen``."""
        return None if self._health_port is None else self._health_port.port

    @property
    def inflight_calls(self) -> int:
        """Calls in flight now (health Watch streams included)."""
        return self._observer.inflight

    @property
    def renewer(self) -> CertificateRenewer | None:
        """The certificate's renewal through the control plane, when there is one (tls and control_plane)."""
        return self._renewer

    @property
    def lease(self) -> RegistryLease | None:
        """The registration with the control plane, when there is one."""
        return self._lease

    async def listen(self, address: str = "127.0.0.1:0") -> int:
        """Adds reflection, binds ``address`` (port 0 picks one), starts, reports SERVING and registers."""
        if self._port is not None:
            raise RuntimeError(f"{self.name}: already listening")
        described = [name for name in self.admin_services if name in REFLECTED_ADMIN_SERVICES]
        reflected = [*self._services, HEALTH_SERVICE_NAME, *described, reflection.SERVICE_NAME]
        also = ADMIN_SERVICE_FILES if self.admin_services else ()
        reflection.enable_server_reflection(reflected, self._server, pool=reflection_pool(self._descriptor_set, also))
        if self._credentials is not None:
            port = self._server.add_secure_port(address, self._credentials)
        else:
            port = self._server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"{self.name}: could not bind {address}")
        self._port = port
        if self._health_address is not None:
            # Bound before the first await too: a drain begun during start-up closes it.
            try:
                self._health_port = HealthPort(self._health_address, self.health)
            except OSError as error:
                await self._server.stop(None)
                raise OSError(f"{self.name}: {error}") from error
        if self._admin_address is not None:
            # Before the first await, so that a drain begun during start-up finds it to close.
            registry = self.metrics.registry if self.metrics is not None else REGISTRY
            self._admin = start_admin_server(self._admin_address, registry, self.logger)
        await self._server.start()
        if self._health_port is not None:
            await self._health_port.start()
        await self.health.set_serving(True)
        health_port = {"healthPort": self.health_port} if self.health_port is not None else {}
        self.logger.info("listening", address=address, port=port, services=self._services, tls=self._credentials is not None, **health_port)
        # A drain that began while this was binding (a SIGTERM during start-up) must not be
        # followed by a registration nobody would ever remove.
        if self._control_plane and self._drained is None:
            endpoint = endpoint_for_server(
                self._mesh_service,
                address,
                port,
                health_service_name=self._services[0] if self._services else "",
                zone=self._zone,
                advertise_host=self._advertise_host,
                admin_port=self.admin_port,
            )
            self._lease = RegistryLease(self._control_plane, endpoint, self.root_logger, lease_ttl_ms=self._lease_ttl_ms, tls=self._tls)
            if self._tls is not None and self._renews_certificate and self._watcher is not None:
                watcher = self._watcher
                self._renewer = CertificateRenewer(self._control_plane, self._tls, self.root_logger, on_renewed=lambda _: watcher.look_soon())
                await self._renewer.start()
            await self._lease.start()
        return port

    def drain(self, grace_s: float | None = None) -> asyncio.Task[None]:
        """Starts the drain (once; later calls return the same task) and returns it to await."""
        if self._drained is None:
            self._drained = asyncio.ensure_future(self._run_drain(self._drain_grace_s if grace_s is None else grace_s))
        return self._drained

    async def wait_stopped(self) -> None:
        """Returns once a drain has stopped the server."""
        await self._stopped.wait()

    async def _run_drain(self, grace_s: float) -> None:
        started = time.monotonic()
        self.logger.info("draining", inflight=self._observer.inflight, graceMs=round(grace_s * 1000))
        # Renewal stops first: one under way is abandoned before it writes (certificate_renewal.py).
        if self._renewer is not None:
            await self._renewer.stop()
        # Then leave the mesh, so that clients stop picking this server before it refuses calls.
        if self._lease is not None:
            await self._lease.stop()
        await self.health.set_serving(False)
        self._draining.set()
        await self._server.stop(grace_s)
        # Probes of the plaintext health port have seen NOT_SERVING since the drain began.
        if self._health_port is not None:
            await self._health_port.stop()
        if self._admin is not None:
            await self._admin.close()
        self.logger.info("stopped", durationMs=round((time.monotonic() - started) * 1000))
        self._stopped.set()


def _authorizer_of(name: str, authorization: AuthorizationPolicy | Mapping[str, Any] | None, tls: TlsFiles | None) -> Authorizer | None:
    """The authorizer of the ``authorization`` option, in the ``tls`` trust domain; refused without ``tls``."""
    if authorization is None:
        return None
    if tls is None:
        raise ValueError(f"{name}: authorization needs tls: without mTLS no caller has an identity to authorize")
    policy = authorization if isinstance(authorization, AuthorizationPolicy) else parse_authorization_policy(authorization, "authorization")
    trust_domain = tls.trust_domain
    if trust_domain is None:
        try:
            trust_domain = trust_domain_of_ca_file(tls.ca_file)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"authorization: tls.ca_file ({tls.ca_file}) must be a readable CA certificate, to learn the trust domain (or give tls.trust_domain)"
            ) from error
    # A CA that names no trust domain: a caller given as a service name matches in any the CA signs for.
    return Authorizer(policy, trust_domain)


def create_server(name: str, **options: Any) -> MeshServer:
    """Creates a protomesh server (see MeshServer for the options). Add services, then ``listen``."""
    return MeshServer(name, **options)
