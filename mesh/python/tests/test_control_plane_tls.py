"""The kit with mTLS and the real TypeScript control plane on mTLS (dist/cli/protomesh.js control-plane
with PROTOMESH_TLS_* and PROTOMESH_CA_KEY_FILE): registration over mTLS under the caller's own
name only, xDS over mTLS (gRFC A65 "tls" channel credentials), and certificate renewal through
protomesh.certificate.v1.CertificateService at half life. Certificates from the openssl CLI as the
TypeScript kit makes them (protomesh_testing/identity.py)."""

from __future__ import annotations

import asyncio
import io
import json
import ssl
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import protomesh_kit as kit
import pytest
from cryptography import x509
from protomesh.registry.v1 import registry_pb2
from protomesh_testing import ControlPlane, log_lines
from protomesh_testing.identity import MeshCa, WorkloadCertificate, create_mesh_ca, issue_workload_certificate, served_certificate, tls_files
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc

TRUST_DOMAIN = "protomesh.test"
DEADLINE_S = 5.0
WAIT_S = 10.0


class Catalog(catalog_pb2_grpc.CatalogServiceServicer):
    """GetProduct answers and records each caller's SPIFFE ID."""

    def __init__(self) -> None:
        self.callers: list[str | None] = []

    async def GetProduct(self, request, context):
        self.callers.append(kit.peer_identity(context))
        return catalog_pb2.GetProductResponse(product=catalog_pb2.Product(id=request.id, name="over mTLS"))


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> MeshCa:
    return create_mesh_ca(tmp_path_factory.mktemp("mesh-ca"), TRUST_DOMAIN)


@pytest.fixture
async def plane(tmp_path: Path, ca: MeshCa) -> AsyncIterator[ControlPlane]:
    started = await ControlPlane(tmp_path, "lease_ttl_ms: 3000\n", ca=ca).start()
    yield started
    await started.stop()


async def serve(cleanups: list, plane: ControlPlane, tls: kit.TlsFiles, log: io.StringIO, mesh_service: str | None = None) -> tuple[kit.MeshServer, Catalog]:
    servicer = Catalog()
    server = kit.create_server(
        "catalog", logger=kit.Logger(name="catalog", stream=log), control_plane=plane.address, tls=tls, mesh_service=mesh_service, drain_grace_s=0.2
    )
    server.add_service(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, servicer)
    await server.listen("127.0.0.1:0")
    cleanups.append(lambda: server.drain(0.2))
    return server, servicer


async def wait_for(what: str, condition, timeout_s: float = WAIT_S) -> None:
    """Polls ``condition`` (a coroutine function) until it is true, failing after ``timeout_s`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


async def health_of(plane: ControlPlane, service: str) -> list[int]:
    return [endpoint.health for endpoint in await plane.endpoints(service)]


def served_serial(port: int, ca: MeshCa, client: WorkloadCertificate) -> int:
    """The serial of the certificate a new TLS connection to ``port`` is given (the stdlib ssl client)."""
    return x509.load_der_x509_certificate(served_certificate(port, ca, client)).serial_number


async def test_a_tls_server_registers_over_mtls_and_the_control_plane_probes_it_healthy(
    plane: ControlPlane, ca: MeshCa, cleanups: list, tmp_path: Path
) -> None:
    workload = issue_workload_certificate(ca, "catalog", tmp_path)
    server, _ = await serve(cleanups, plane, tls_files(ca, workload), io.StringIO())
    assert server.lease is not None
    await plane.wait_healthy("catalog")
    [endpoint] = await plane.endpoints("catalog")
    assert endpoint.endpoint.port == server.port
    assert server.lease.is_registered


async def test_a_registration_under_another_services_name_is_refused_permission_denied(
    plane: ControlPlane, ca: MeshCa, cleanups: list, tmp_path: Path
) -> None:
    workload = issue_workload_certificate(ca, "catalog", tmp_path)
    log = io.StringIO()
    server, _ = await serve(cleanups, plane, tls_files(ca, workload), log, mesh_service="orders")
    assert server.lease is not None and not server.lease.is_registered
    [refused] = [line for line in log_lines(log) if line.get("msg") == "registration failed; retrying with backoff"]
    assert refused["code"] == "PERMISSION_DENIED"
    assert refused["details"].startswith(f"spiffe://{TRUST_DOMAIN}/service/catalog may not ")
    assert await plane.endpoints("orders") == []


async def test_a_client_dials_xds_name_over_mtls_with_xds_from_the_control_planes_mtls_port(
    plane: ControlPlane, ca: MeshCa, cleanups: list, tmp_path: Path
) -> None:
    catalog_cert = issue_workload_certificate(ca, "catalog", tmp_path / "catalog")
    orders_cert = issue_workload_certificate(ca, "orders", tmp_path / "orders")
    _, servicer = await serve(cleanups, plane, tls_files(ca, catalog_cert), io.StringIO())
    await plane.wait_healthy("catalog")
    channel = kit.dial("catalog", control_plane=plane.address, logger=kit.Logger(stream=io.StringIO()), tls=tls_files(ca, orders_cert))
    cleanups.append(channel.close)
    response = await catalog_pb2_grpc.CatalogServiceStub(channel).GetProduct(catalog_pb2.GetProductRequest(id="sku-1"), timeout=WAIT_S)
    assert response.product.name == "over mTLS"
    assert servicer.callers == [f"spiffe://{TRUST_DOMAIN}/service/orders"]


def test_the_xds_bootstrap_names_the_workloads_files_as_a65_tls_channel_credentials(ca: MeshCa, tmp_path: Path) -> None:
    files = tls_files(ca, issue_workload_certificate(ca, "orders", tmp_path), refresh_interval_s=30)
    [server] = json.loads(kit.xds_bootstrap("127.0.0.1:50050", tls=files))["xds_servers"]
    assert server["server_uri"] == "127.0.0.1:50050"
    assert server["channel_creds"] == [
        {
            "type": "tls",
            "config": {
                "ca_certificate_file": files.ca_file,
                "certificate_file": files.cert_file,
                "private_key_file": files.key_file,
                "refresh_interval": "30s",
            },
        }
    ]
    assert json.loads(kit.xds_bootstrap("127.0.0.1:50050"))["xds_servers"][0]["channel_creds"] == [{"type": "insecure"}]


async def test_a_short_lived_certificate_is_renewed_at_half_life_and_calls_keep_succeeding_across_its_expiry(
    plane: ControlPlane, ca: MeshCa, cleanups: list, tmp_path: Path
) -> None:
    short = issue_workload_certificate(ca, "catalog", tmp_path / "catalog", ttl=timedelta(seconds=6))
    first = x509.load_pem_x509_certificate(short.cert_file.read_bytes())
    orders_cert = issue_workload_certificate(ca, "orders", tmp_path / "orders")
    log = io.StringIO()
    server, servicer = await serve(cleanups, plane, tls_files(ca, short, refresh_interval_s=0.1), log)
    assert server.renewer is not None
    await plane.wait_healthy("catalog")
    channel = kit.dial("catalog", control_plane=plane.address, logger=kit.Logger(stream=io.StringIO()), tls=tls_files(ca, orders_cert))
    cleanups.append(channel.close)
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    failures: list[grpc.aio.AioRpcError] = []
    calls = 0
    # Calls until a second past the first certificate's end, on the connection opened before it.
    until = first.not_valid_after_utc.timestamp() + 1
    while time.time() < until:
        try:
            await stub.GetProduct(catalog_pb2.GetProductRequest(id="sku-1"), timeout=DEADLINE_S)
            calls += 1
        except grpc.aio.AioRpcError as error:
            failures.append(error)
        await asyncio.sleep(0.02)
    assert failures == []
    assert calls > 50 and len(servicer.callers) == calls
    renewals = [line for line in log_lines(log) if line.get("msg") == "certificate renewed"]
    assert renewals, "renewed before the first certificate expired"
    first_renewal_ms = renewals[0]["time"]
    half_life_ms = (first.not_valid_before_utc.timestamp() + 3) * 1000
    assert half_life_ms - 100 <= first_renewal_ms < first.not_valid_after_utc.timestamp() * 1000
    assert renewals[0]["spiffeId"] == f"spiffe://{TRUST_DOMAIN}/service/catalog"
    # The files on disk are the renewed pair, and a new connection is served the renewed certificate.
    renewed = x509.load_pem_x509_certificate(short.cert_file.read_bytes())
    assert renewed.serial_number != first.serial_number
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    assert kit.spiffe_id_of_certificate(short.cert_file.read_bytes()) == f"spiffe://{TRUST_DOMAIN}/service/catalog"
    assert await asyncio.to_thread(served_serial, server.port, ca, orders_cert) in {
        renewed.serial_number,
        *(int(line["serialNumber"], 16) for line in renewals),
    }
    # The lease and the prober carried on with the renewed certificate: still registered and HEALTHY.
    assert server.lease is not None and server.lease.is_registered
    assert await health_of(plane, "catalog") == [registry_pb2.HEALTH_STATE_HEALTHY]
    # A channel dialled now, after the first certificate expired, is served too.
    late = kit.dial("catalog", control_plane=plane.address, logger=kit.Logger(stream=io.StringIO()), tls=tls_files(ca, orders_cert))
    cleanups.append(late.close)
    await catalog_pb2_grpc.CatalogServiceStub(late).GetProduct(catalog_pb2.GetProductRequest(id="sku-1"), timeout=DEADLINE_S)


async def test_renew_writes_a_new_key_and_certificate_for_the_callers_own_identity(plane: ControlPlane, ca: MeshCa, tmp_path: Path) -> None:
    workload = issue_workload_certificate(ca, "inventory", tmp_path)
    first = x509.load_pem_x509_certificate(workload.cert_file.read_bytes())
    key_before = workload.key_file.read_bytes()
    renewed_serials: list[int] = []
    renewer = kit.CertificateRenewer(
        plane.address, tls_files(ca, workload), kit.Logger(stream=io.StringIO()), on_renewed=lambda cert: renewed_serials.append(cert.serial_number)
    )
    try:
        renewed = await renewer.renew()
    finally:
        await renewer.stop()
    assert renewed_serials == [renewed.serial_number] and renewed.serial_number != first.serial_number
    assert workload.key_file.read_bytes() != key_before
    assert workload.key_file.stat().st_mode & 0o777 == 0o600
    # The pair on disk matches, names the same SPIFFE ID and DNS name, and lasts as long as the first.
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(workload.cert_file), str(workload.key_file))
    names = renewed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TRUST_DOMAIN}/service/inventory"]
    assert names.get_values_for_type(x509.DNSName) == ["inventory"]
    assert renewed.not_valid_after_utc - renewed.not_valid_before_utc == first.not_valid_after_utc - first.not_valid_before_utc


async def test_renewal_ends_with_one_warning_when_the_control_plane_issues_no_certificates(ca: MeshCa, cleanups: list, tmp_path: Path) -> None:
    plane = await ControlPlane(tmp_path, "lease_ttl_ms: 3000\n", ca=ca, signs_certificates=False).start()
    cleanups.append(plane.stop)
    short = issue_workload_certificate(ca, "catalog", tmp_path / "catalog", ttl=timedelta(seconds=4))
    before = short.cert_file.read_bytes()
    log = io.StringIO()
    server, _ = await serve(cleanups, plane, tls_files(ca, short), log)
    await plane.wait_healthy("catalog")
    warning = "the control plane issues no certificates (it holds no CA key): this certificate will not be renewed"

    async def warned() -> bool:
        return any(line.get("msg") == warning for line in log_lines(log))

    await wait_for("the renewal's warning, at half life", warned)
    assert server.renewer is not None and server.renewer.is_renewing is False
    assert [line["msg"] for line in log_lines(log) if line.get("component") == "certificate-renewal"] == [warning]
    assert short.cert_file.read_bytes() == before
    assert await health_of(plane, "catalog") == [registry_pb2.HEALTH_STATE_HEALTHY]
