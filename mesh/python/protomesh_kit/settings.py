"""A program's settings, read once from the environment at its edge (mesh/settings.ts).

Everything below the program takes plain arguments; only :func:`load_settings` reads ``os.environ``.
A value that cannot be used is refused with :class:`SettingsError` naming the variable, e.g.
``PORT: must be an integer from 0 to 65535, got 'http'``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .authorization import AuthorizationPolicy, load_authorization_policy
from .logger import DEFAULT_LOG_LEVEL, LEVEL_NAMES
from .tls_certificate_files import TlsFiles

CONTROL_PLANE_ENV = "PROTOMESH_CONTROL_PLANE"
ZONE_ENV = "PROTOMESH_ZONE"
ADVERTISE_HOST_ENV = "PROTOMESH_ADVERTISE_HOST"
LOG_LEVEL_ENV = "PROTOMESH_LOG_LEVEL"
ADMIN_ADDRESS_ENV = "PROTOMESH_ADMIN_ADDRESS"
#: A plaintext port of grpc.health.v1 alone, for probes that cannot do mTLS (health_port.py).
HEALTH_ADDRESS_ENV = "PROTOMESH_HEALTH_ADDRESS"
#: The mesh config file (YAML); with mTLS, a service reads its own authorization from it.
MESH_CONFIG_ENV = "PROTOMESH_MESH_CONFIG"
HOST_ENV = "HOST"
PORT_ENV = "PORT"
#: The mesh CA bundle, this workload's certificate and its key (PEM files); all three or none.
TLS_CA_FILE_ENV = "PROTOMESH_TLS_CA_FILE"
TLS_CERT_FILE_ENV = "PROTOMESH_TLS_CERT_FILE"
TLS_KEY_FILE_ENV = "PROTOMESH_TLS_KEY_FILE"

#: Host a service binds when HOST is unset: loopback only.
DEFAULT_HOST = "127.0.0.1"

# host:port or [v6]:port; the host a DNS name or an IP address (as settings.ts HOST_PORT).
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})")
#: A zone (xDS locality): empty, or a DNS label (mesh/names.ts ZONE_PATTERN).
ZONE_PATTERN = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)?")


class SettingsError(ValueError):
    """A setting that cannot be used; the message starts with the variable's name."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Settings:
    """A program's settings, typed and validated."""

    #: The control plane, "host:port"; set, servers register and clients dial services by name.
    control_plane: str | None = None
    #: This process's zone, the xDS locality; "" is the default locality.
    zone: str = ""
    #: The address a server registers when it differs from the bound host.
    advertise_host: str | None = None
    #: Log level (debug, info, warn, error...).
    log_level: str = DEFAULT_LOG_LEVEL
    #: The admin HTTP port, "host:port" (GET /metrics); None: no admin port, and no metrics.
    admin_address: str | None = None
    #: A plaintext grpc.health.v1-only port, "host:port", for probes that cannot do mTLS; None: none.
    health_address: str | None = None
    #: Host to listen on.
    host: str = DEFAULT_HOST
    #: Port to listen on; None means the program's own default.
    port: int | None = None
    #: mTLS for the program's server and clients (tls.py); None: plaintext.
    tls: TlsFiles | None = None
    #: The mesh config file; with ``tls``, a service's ``services.<name>.authorization`` is its
    #: server's policy (:meth:`authorization_of`).
    mesh_config_path: str | None = None

    def listen_address(self, default_port: int) -> str:
        """The address to bind: host and port (else ``default_port``); an IPv6 host in brackets."""
        port = self.port if self.port is not None else default_port
        return f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"

    def authorization_of(self, service: str) -> AuthorizationPolicy | None:
        """``service``'s authorization policy from the mesh config file, when mTLS is on (without it no
        caller has an identity); None without a file, without TLS, or when the file gives none.

        Raises MeshError INVALID_ARGUMENT naming the field of a block that is not valid, OSError
        for a file that cannot be read.
        """
        if self.tls is None or self.mesh_config_path is None:
            return None
        return load_authorization_policy(self.mesh_config_path, service)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Reads the PROTOMESH_* variables (PROTOMESH_TLS_* all three or none), HOST and PORT from ``env`` (default ``os.environ``); empty counts as unset."""
    source = os.environ if env is None else env

    def value(name: str) -> str | None:
        text = source.get(name)
        return text if text else None

    def address(name: str, minimum_port: int, example: str) -> str | None:
        text = value(name)
        if text is not None:
            match = _HOST_PORT.fullmatch(text)
            if match is None or not _is_port(match.group(3), minimum_port):
                raise SettingsError(name, f"must be host:port, e.g. {example}, got {text!r}")
        return text

    control_plane = address(CONTROL_PLANE_ENV, 1, "127.0.0.1:50050")
    zone = value(ZONE_ENV) or ""
    if not ZONE_PATTERN.fullmatch(zone):
        raise SettingsError(ZONE_ENV, f"must be a DNS label (lowercase letters, digits and '-'), got {zone!r}")
    advertise_host = value(ADVERTISE_HOST_ENV)
    if advertise_host is not None:
        try:
            ipaddress.ip_address(advertise_host)
        except ValueError:
            raise SettingsError(ADVERTISE_HOST_ENV, f"must be an IPv4 or IPv6 address, got {advertise_host!r}") from None
    log_level = value(LOG_LEVEL_ENV) or DEFAULT_LOG_LEVEL
    if log_level not in LEVEL_NAMES:
        raise SettingsError(LOG_LEVEL_ENV, f"must be one of {', '.join(LEVEL_NAMES)}, got {log_level!r}")
    admin_address = address(ADMIN_ADDRESS_ENV, 0, "127.0.0.1:9464")
    health_address = address(HEALTH_ADDRESS_ENV, 0, "127.0.0.1:8086")
    port_text = value(PORT_ENV)
    if port_text is not None and not _is_port(port_text, 0):
        raise SettingsError(PORT_ENV, f"must be an integer from 0 to 65535, got {port_text!r}")
    tls_files = {name: value(name) for name in (TLS_CA_FILE_ENV, TLS_CERT_FILE_ENV, TLS_KEY_FILE_ENV)}
    given = [name for name, file in tls_files.items() if file is not None]
    if given and len(given) < len(tls_files):
        missing = next(name for name, file in tls_files.items() if file is None)
        raise SettingsError(missing, f"must be set with {' and '.join(given)} (mTLS needs the CA, the certificate and the key)")
    ca_file, cert_file, key_file = tls_files.values()
    tls = TlsFiles(ca_file, cert_file, key_file) if ca_file and cert_file and key_file else None
    return Settings(
        control_plane=control_plane,
        zone=zone,
        advertise_host=advertise_host,
        log_level=log_level,
        admin_address=admin_address,
        health_address=health_address,
        host=value(HOST_ENV) or DEFAULT_HOST,
        port=int(port_text) if port_text is not None else None,
        tls=tls,
        mesh_config_path=value(MESH_CONFIG_ENV),
    )


def _is_port(text: str, minimum: int) -> bool:
    return re.fullmatch(r"\d{1,5}", text) is not None and minimum <= int(text) <= 65535
