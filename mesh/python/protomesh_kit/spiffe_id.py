"""SPIFFE IDs of mesh workloads (mesh/identity.ts): their shape, and the one a certificate carries.

A workload's ID is ``spiffe://<trust domain>/service/<name>``; the mesh CA's certificate names the
trust domain alone (``spiffe://<trust domain>``). Certificates are read with ``cryptography``, as
the TypeScript kit reads them with node's X509Certificate.
"""

from __future__ import annotations

import re

from cryptography import x509

#: A trust domain (SPIFFE ID spec, 2.1): lowercase letters, digits, ".", "-" and "_".
TRUST_DOMAIN_PATTERN = re.compile(r"[a-z0-9._-]{1,255}")
_TRUST_DOMAIN_OF = re.compile(r"spiffe://([^/]+)")


def spiffe_id_for(trust_domain: str, service: str) -> str:
    """The SPIFFE ID of the mesh service ``service``: ``spiffe://<trust_domain>/service/<service>``."""
    return f"spiffe://{trust_domain}/service/{service}"


def trust_domain_of(spiffe_id: str) -> str | None:
    """The trust domain a SPIFFE ID names ("spiffe://td/service/x" → "td"); None for anything else."""
    match = _TRUST_DOMAIN_OF.match(spiffe_id)
    return match.group(1) if match else None


def spiffe_id_of_certificate(pem: bytes) -> str | None:
    """The SPIFFE ID of the first certificate in ``pem``: its one URI SAN, when that is a spiffe:// URI.

    The rule of the TypeScript kit's ``spiffeIdOf`` (and of C-core's ``peer_spiffe_id``): a
    certificate with several URI SANs has none. Raises ValueError when ``pem`` holds no certificate.
    """
    certificate = x509.load_pem_x509_certificates(pem)[0]
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if len(uris) == 1 and uris[0].startswith("spiffe://") else None


def trust_domain_of_ca_file(ca_file: str) -> str | None:
    """The trust domain the SPIFFE SAN of the CA certificate in ``ca_file`` names; None when it names none.

    An unreadable file raises OSError, one with no certificate ValueError.
    """
    with open(ca_file, "rb") as file:
        spiffe_id = spiffe_id_of_certificate(file.read())
    return None if spiffe_id is None else trust_domain_of(spiffe_id)
