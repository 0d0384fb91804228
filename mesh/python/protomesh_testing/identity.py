"""A development mesh CA and workload certificates for the Python suites, made by the openssl CLI
with the commands of mesh/identity.ts (EC P-256; the SPIFFE ID the only URI SAN, the service's name
a DNS SAN beside it; ``openssl ca`` for validity to the second, so that expired certificates can be made)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from protomesh_kit.tls_certificate_files import TlsFiles


@dataclass(frozen=True)
class MeshCa:
    trust_domain: str
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class WorkloadCertificate:
    spiffe_id: str
    cert_file: Path
    key_file: Path


def create_mesh_ca(directory: Path, trust_domain: str) -> MeshCa:
    """A self-signed CA (CA:TRUE, keyCertSign, SAN ``URI:spiffe://<trust_domain>``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / "ca.key", directory / "ca.crt"
    _generate_key(key)
    _openssl(
        "req", "-x509", "-new", "-sha256", "-key", str(key), "-out", str(cert), "-days", "30",
        "-subj", f"/O=protomesh/CN=protomesh mesh CA {trust_domain}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", f"subjectAltName=URI:spiffe://{trust_domain}",
    )
    return MeshCa(trust_domain, cert, key)


def issue_workload_certificate(
    ca: MeshCa,
    service: str,
    directory: Path,
    *,
    ttl: timedelta = timedelta(hours=1),
    not_before: datetime | None = None,
    file_stem: str | None = None,
    spiffe_id: str | None = None,
    dns_names: Sequence[str] | None = None,
    ip_addresses: Sequence[str] = (),
) -> WorkloadCertificate:
    """A key and a certificate for ``service`` (CN=<service>; SANs its SPIFFE ID, ``dns_names`` and
    ``ip_addresses``), replaced by rename, key first. ``spiffe_id`` replaces the service's
    (an admin identity); ``dns_names`` are ``[service]`` unless given, none with ``spiffe_id``."""
    names = list(dns_names) if dns_names is not None else ([] if spiffe_id is not None else [service])
    spiffe_id = spiffe_id or f"spiffe://{ca.trust_domain}/service/{service}"
    subject_alt_names = ", ".join([f"URI:{spiffe_id}", *(f"DNS:{name}" for name in names), *(f"IP:{address}" for address in ip_addresses)])
    start = (not_before or datetime.now(timezone.utc)).replace(microsecond=0)
    directory.mkdir(parents=True, exist_ok=True)
    stem = file_stem or service
    with tempfile.TemporaryDirectory(prefix="protomesh-issue-") as work_dir:
        work = Path(work_dir)
        key, csr, cert, config = work / "workload.key", work / "workload.csr", work / "workload.crt", work / "ca.cnf"
        _generate_key(key)
        _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/O=protomesh/CN={service}")
        (work / "index.txt").write_text("")
        config.write_text(_ca_config(work, ca, subject_alt_names))
        _openssl(
            "ca", "-batch", "-notext", "-rand_serial", "-preserveDN", "-config", str(config), "-in", str(csr),
            "-out", str(cert), "-startdate", _asn1_time(start), "-enddate", _asn1_time(start + ttl),
        )
        key_file, cert_file = directory / f"{stem}.key", directory / f"{stem}.crt"
        replace_file(key_file, key.read_bytes())
        replace_file(cert_file, cert.read_bytes())
    return WorkloadCertificate(spiffe_id, cert_file, key_file)


def tls_files(ca: MeshCa, workload: WorkloadCertificate, **options: Any) -> TlsFiles:
    """The kit's ``TlsFiles`` for ``workload`` trusting ``ca``; ``options`` as ``TlsFiles`` takes them."""
    return TlsFiles(str(ca.cert_file), str(workload.cert_file), str(workload.key_file), **options)


def served_certificate(port: int, ca: MeshCa, client: WorkloadCertificate) -> bytes:
    """The DER certificate a new TLS connection to ``port`` on 127.0.0.1 is given (the stdlib ssl client, as ``client``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(str(ca.cert_file))
    context.load_cert_chain(str(client.cert_file), str(client.key_file))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def issue_certificate_without_spiffe_id(ca: MeshCa, name: str, directory: Path) -> WorkloadCertificate:
    """A key and a certificate from ``ca`` whose only SAN is ``DNS:<name>``: it passes a STRICT
    handshake and its caller has no identity (``spiffe_id`` is ""). The mesh CA never issues one."""
    directory.mkdir(parents=True, exist_ok=True)
    key, csr, cert, extensions = (directory / f"{name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage=clientAuth,serverAuth\nsubjectAltName=DNS:{name}\n"
    )
    _generate_key(key)
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert_file), "-CAkey", str(ca.key_file), "-set_serial", "4242",
        "-days", "1", "-sha256", "-extfile", str(extensions), "-out", str(cert),
    )
    return WorkloadCertificate("", cert, key)


def replace_file(path: Path, content: bytes) -> None:
    """Writes ``content`` beside ``path`` and renames it over ``path``: readers see the old file or the new one."""
    following = path.with_name(f"{path.name}.{os.getpid()}.next")
    following.write_bytes(content)
    os.replace(following, path)


def _ca_config(work: Path, ca: MeshCa, subject_alt_names: str) -> str:
    return "\n".join([
        "[ca]", "default_ca = mesh", "[mesh]", f"dir = {work}", "database = $dir/index.txt", "serial = $dir/serial",
        "new_certs_dir = $dir", f"certificate = {ca.cert_file}", f"private_key = {ca.key_file}", "default_md = sha256",
        "policy = any", "unique_subject = no", "copy_extensions = none", "x509_extensions = svid",
        "[any]", "organizationName = optional", "commonName = optional",
        "[svid]", "basicConstraints = critical,CA:FALSE", "keyUsage = critical,digitalSignature,keyAgreement",
        "extendedKeyUsage = serverAuth,clientAuth", "authorityKeyIdentifier = keyid", f"subjectAltName = {subject_alt_names}", "",
    ])


def _asn1_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%y%m%d%H%M%SZ")


def _generate_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)
