"""STRICT mutual TLS of the kit's servers and clients (mesh/tls.ts), opt-in through ``tls=TlsFiles(...)``.

A server requires a client certificate from the mesh CA and re-reads its files for new handshakes
(tls_certificate_files.py); open connections keep theirs. A client presents its certificate and
accepts only a server whose certificate chains to the mesh CA and names the service it dials; its
new calls go on a channel made from the files as they are then (tls_channel.py).

What grpcio can check on the client: its public API has no hook to verify a peer certificate, and
C-core's host-name check matches DNS and IP SANs only, never a URI SAN (the SPIFFE ID). The mesh CA
(mesh/identity.ts) issues each workload ``DNS:<service>`` beside ``URI:spiffe://<td>/service/<service>``
(the control plane ``DNS:control-plane``), so the client checks, through
``grpc.ssl_target_name_override``, that the server's certificate names the service by its DNS SAN
(C-core falls back to the subject's common name, ``CN=<service>``, for a certificate without DNS
SANs). It does not check the SPIFFE ID nor its trust domain: a certificate from the mesh CA with the
right DNS name and another URI would pass. The TypeScript kit's client checks the SPIFFE ID.
"""

from __future__ import annotations

from typing import Any

import grpc

from .tls_certificate_files import CertificateFileWatcher, CertificatePems

#: The auth-context property C-core sets to the peer's SPIFFE ID: its one URI SAN, when that is a valid SPIFFE ID.
PEER_SPIFFE_ID_PROPERTY = "peer_spiffe_id"


def server_credentials(watcher: CertificateFileWatcher) -> grpc.ServerCredentials:
    """Server credentials requiring a client certificate from the watched CA, the files re-read for new handshakes.

    The credentials hold their fetcher (the CertificateFileWatcher) for as long as they live."""
    return grpc.dynamic_ssl_server_credentials(watcher.initial_configuration(), watcher, require_client_authentication=True)


def channel_credentials(pems: CertificatePems) -> grpc.ChannelCredentials:
    """Channel credentials presenting ``pems.cert`` and trusting ``pems.ca``.

    grpcio has no channel credentials that re-read files: a channel keeps these bytes for every
    connection it makes, so a RenewingChannel (tls_channel.py) makes a new channel when the files change.
    """
    return grpc.ssl_channel_credentials(root_certificates=pems.ca, private_key=pems.key, certificate_chain=pems.cert)


def channel_options(server_service: str) -> list[tuple[str, Any]]:
    """The options that make C-core check the server's certificate names ``server_service`` (see the module doc).

    The name is also the TLS server name sent (SNI) and the calls' authority, as the TypeScript kit sends.
    """
    return [("grpc.ssl_target_name_override", server_service)]


def peer_identity(context: grpc.aio.ServicerContext | grpc.ServicerContext) -> str | None:
    """The SPIFFE ID of the workload that made the call, from the certificate it presented; None on a plaintext port.

    C-core sets it only when the certificate has exactly one URI SAN and it is a SPIFFE ID, the rule
    of the TypeScript kit's ``peerIdentity``.
    """
    values = context.auth_context().get(PEER_SPIFFE_ID_PROPERTY) or []
    return values[0].decode("utf-8") if len(values) == 1 else None
