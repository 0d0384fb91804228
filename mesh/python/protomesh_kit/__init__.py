"""protomesh's Python kit: gRPC servers and clients that join a protomesh mesh, on grpc.aio.

The same behaviour as the TypeScript kit (mesh/): settings from the environment, servers with
health, reflection, registration, per-call logs and a drain; clients that dial services by name
over xDS with deadlines, request ids and cancellation carried from the inbound call (contextvars);
go-grpc-prometheus' metrics of both on an admin HTTP port (GET /metrics), and channelz and CSDS on a
server's gRPC port with it; OpenTelemetry traces of both, configured by the standard OTEL_* variables; opt-in STRICT mTLS
(``tls=TlsFiles(...)``, tls.py) and, over it, per-method authorization of callers by their SPIFFE ID
(``authorization=``, authorization.py).

Importing this package has no side effects; nothing needs setting before grpc is imported (the xDS
bootstrap is set when an xds: channel is dialled; see xds_bootstrap.py).
"""

from .admin import AdminServer, start_admin_server
from .admin_services import CHANNELZ_SERVICE_NAME, CSDS_SERVICE_NAME, add_admin_services
from .authorization import (
    AuthorizationDecision,
    AuthorizationPolicy,
    AuthorizationRule,
    Authorizer,
    MethodAuthorization,
    authorize,
    load_authorization_policy,
    parse_authorization_policy,
)
from .call_context import InboundCall, current_inbound_call, current_request_id, detached
from .certificate_renewal import RENEW_AT_FRACTION, CertificateRenewer, create_certificate_request, write_key_and_certificate
from .client import dial, mesh_target
from .errors import INTERNAL_DETAILS, MeshError, invalid_argument, is_server_failure
from .logger import Logger
from .metrics import GRPC_CODE_NAMES, HANDLING_SECONDS_BUCKETS, MeshMetrics, MetricsSink, grpc_code_name, mesh_metrics
from .names import CONTROL_PLANE_SERVICE, is_service_name
from .observer import CallRecord, CallSink, CallStart, CallType
from .observer_client import DEFAULT_DEADLINE_MARGIN_S, DEFAULT_DEADLINE_S
from .request_id import REQUEST_ID_KEY
from .server import DEFAULT_DRAIN_GRACE_S, MeshServer, create_server
from .settings import Settings, SettingsError, load_settings
from .shutdown import drain_on_signals
from .sink_log import LogSink
from .spiffe_id import spiffe_id_for, spiffe_id_of_certificate, trust_domain_of, trust_domain_of_ca_file
from .tls import peer_identity
from .tls_certificate_files import DEFAULT_CERTIFICATE_REFRESH_S, TlsFiles
from .tls_channel import RenewingChannel
from .tracing import ProcessTracing, sampler_from_environment, tracing_from_environment
from .xds_bootstrap import xds_bootstrap

__all__ = [
    "CHANNELZ_SERVICE_NAME",
    "CONTROL_PLANE_SERVICE",
    "CSDS_SERVICE_NAME",
    "DEFAULT_CERTIFICATE_REFRESH_S",
    "DEFAULT_DEADLINE_MARGIN_S",
    "DEFAULT_DEADLINE_S",
    "DEFAULT_DRAIN_GRACE_S",
    "GRPC_CODE_NAMES",
    "HANDLING_SECONDS_BUCKETS",
    "INTERNAL_DETAILS",
    "RENEW_AT_FRACTION",
    "REQUEST_ID_KEY",
    "AdminServer",
    "AuthorizationDecision",
    "AuthorizationPolicy",
    "AuthorizationRule",
    "Authorizer",
    "CallRecord",
    "CallSink",
    "CallStart",
    "CallType",
    "CertificateRenewer",
    "InboundCall",
    "LogSink",
    "Logger",
    "MeshError",
    "MeshMetrics",
    "MeshServer",
    "MethodAuthorization",
    "MetricsSink",
    "ProcessTracing",
    "RenewingChannel",
    "Settings",
    "SettingsError",
    "TlsFiles",
    "add_admin_services",
    "authorize",
    "create_certificate_request",
    "create_server",
    "current_inbound_call",
    "current_request_id",
    "detached",
    "dial",
    "drain_on_signals",
    "grpc_code_name",
    "invalid_argument",
    "is_server_failure",
    "is_service_name",
    "load_authorization_policy",
    "load_settings",
    "mesh_metrics",
    "mesh_target",
    "parse_authorization_policy",
    "peer_identity",
    "sampler_from_environment",
    "spiffe_id_for",
    "spiffe_id_of_certificate",
    "start_admin_server",
    "tracing_from_environment",
    "trust_domain_of",
    "trust_domain_of_ca_file",
    "write_key_and_certificate",
    "xds_bootstrap",
]
