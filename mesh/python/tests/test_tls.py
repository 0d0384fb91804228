"""The kit's opt-in STRICT mTLS (protomesh_kit/tls.py): real servers on 127.0.0.1:0, certificates from
the openssl CLI as the TypeScript kit makes them (protomesh_testing/identity.py)."""

from __future__ import annotations

import asyncio
import io
import ssl
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import protomesh_kit as kit
import pytest
from protomesh.interop.v1 import interop_pb2, interop_pb2_grpc
from protomesh_testing import call_repeatedly
from protomesh_testing.identity import MeshCa, WorkloadCertificate, create_mesh_ca, issue_workload_certificate, replace_file, served_certificate, tls_files

TRUST_DOMAIN = "protomesh.test"
#: What "fails fast" means here: the handshake's failure, not a deadline (calls get 10 s).
FAST_S = 1.0
DEADLINE_S = 10.0


class Counting(interop_pb2_grpc.InteropServiceServicer):
    """Echo counts its calls and records each caller's SPIFFE ID."""

    def __init__(self) -> None:
        self.peers: list[str | None] = []

    async def Echo(self, request, context):
        self.peers.append(kit.peer_identity(context))
        return interop_pb2.EchoResponse(payload=request.payload, language="python")


class Pki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = create_mesh_ca(root / "ca", TRUST_DOMAIN)
        self.other_ca = create_mesh_ca(root / "other-ca", TRUST_DOMAIN)
        self.catalog = issue_workload_certificate(self.ca, "catalog", root / "catalog")
        self.orders = issue_workload_certificate(self.ca, "orders", root / "orders")

    def files(self, workload: WorkloadCertificate, ca: MeshCa | None = None, **extra) -> kit.TlsFiles:
        return tls_files(ca or self.ca, workload, **extra)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("mtls"))


async def serve(cleanups: list, tls: kit.TlsFiles | None) -> tuple[int, Counting]:
    servicer = Counting()
    server = kit.create_server("catalog", logger=kit.Logger(name="catalog", stream=io.StringIO()), tls=tls)
    server.add_service(interop_pb2_grpc.add_InteropServiceServicer_to_server, servicer)
    port = await server.listen("127.0.0.1:0")
    cleanups.append(lambda: server.drain(0))
    return port, servicer


def dial(cleanups: list, port: int, tls: kit.TlsFiles | None, **options) -> grpc.aio.Channel:
    channel = kit.dial("catalog", fallback_target=f"127.0.0.1:{port}", logger=kit.Logger(stream=io.StringIO()), tls=tls, **options)
    cleanups.append(channel.close)
    return channel


async def echo(channel: grpc.aio.Channel) -> interop_pb2.EchoResponse:
    return await interop_pb2_grpc.InteropServiceStub(channel).Echo(interop_pb2.EchoRequest(), timeout=DEADLINE_S)


async def assert_fails_fast(channel: grpc.aio.Channel) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await echo(channel)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE, failure.value.details()
    assert time.monotonic() - started < FAST_S


def served_to_orders(port: int, pki: Pki) -> bytes:
    """The DER certificate a new TLS connection to ``port`` is given, with the orders identity."""
    return served_certificate(port, pki.ca, pki.orders)


def der_of(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


async def test_a_client_with_a_certificate_from_the_mesh_ca_is_served_and_its_spiffe_id_is_seen(pki: Pki, cleanups: list) -> None:
    port, servicer = await serve(cleanups, pki.files(pki.catalog))
    await echo(dial(cleanups, port, pki.files(pki.orders)))
    assert servicer.peers == [f"spiffe://{TRUST_DOMAIN}/service/orders"]


async def test_a_plaintext_server_sees_no_peer_identity(cleanups: list) -> None:
    port, servicer = await serve(cleanups, None)
    await echo(dial(cleanups, port, None))
    assert servicer.peers == [None]


async def test_a_client_from_another_ca_fails_fast_and_reaches_no_handler(pki: Pki, cleanups: list) -> None:
    port, servicer = await serve(cleanups, pki.files(pki.catalog))
    stranger = issue_workload_certificate(pki.other_ca, "orders", pki.root / "stranger")
    await assert_fails_fast(dial(cleanups, port, pki.files(stranger)))
    assert servicer.peers == []


async def test_a_client_without_a_certificate_fails_fast_and_reaches_no_handler(pki: Pki, cleanups: list) -> None:
    port, servicer = await serve(cleanups, pki.files(pki.catalog))
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert_file.read_bytes())
    channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", "catalog")])
    cleanups.append(channel.close)
    await assert_fails_fast(channel)
    assert servicer.peers == []


async def test_a_client_with_an_expired_certificate_fails_fast_and_reaches_no_handler(pki: Pki, cleanups: list) -> None:
    port, servicer = await serve(cleanups, pki.files(pki.catalog))
    expired = issue_workload_certificate(
        pki.ca, "orders", pki.root / "expired", ttl=timedelta(seconds=60), not_before=datetime.now(timezone.utc) - timedelta(hours=1)
    )
    await assert_fails_fast(dial(cleanups, port, pki.files(expired)))
    assert servicer.peers == []


async def test_a_plaintext_client_on_a_tls_port_fails_fast_and_reaches_no_handler(pki: Pki, cleanups: list) -> None:
    port, servicer = await serve(cleanups, pki.files(pki.catalog))
    await assert_fails_fast(dial(cleanups, port, None))
    assert servicer.peers == []


async def test_a_tls_client_on_a_plaintext_port_fails_fast_and_reaches_no_handler(pki: Pki, cleanups: list) -> None:
    port, servicer = await serve(cleanups, None)
    await assert_fails_fast(dial(cleanups, port, pki.files(pki.orders)))
    assert servicer.peers == []


async def test_the_client_refuses_a_server_with_another_services_certificate(pki: Pki, cleanups: list) -> None:
    port, servicer = await serve(cleanups, pki.files(pki.orders))
    await assert_fails_fast(dial(cleanups, port, pki.files(pki.orders)))
    assert servicer.peers == []
    # The same server, dialled as the service its certificate names, is served.
    await echo(dial(cleanups, port, pki.files(pki.orders), server_service="orders"))
    assert len(servicer.peers) == 1


def test_tls_for_another_target_needs_server_service(pki: Pki) -> None:
    with pytest.raises(ValueError, match="server_service"):
        kit.dial("127.0.0.1:1", tls=pki.files(pki.orders))


async def test_replaced_server_files_serve_new_connections_with_no_failed_call(pki: Pki, cleanups: list, tmp_path: Path) -> None:
    served = issue_workload_certificate(pki.ca, "catalog", tmp_path)
    port, servicer = await serve(cleanups, pki.files(served, refresh_interval_s=0.05))
    channel = dial(cleanups, port, pki.files(pki.orders))
    first = der_of(served.cert_file)
    assert served_to_orders(port, pki) == first
    failures: list[grpc.aio.AioRpcError] = []
    stop = asyncio.Event()
    calls = asyncio.create_task(call_repeatedly(lambda: echo(channel), stop, failures, 0.005))
    await asyncio.sleep(0.05)
    # A key that does not match the certificate (the instant between two renames) is held back.
    stray = issue_workload_certificate(pki.ca, "catalog", tmp_path / "stray")
    replace_file(served.key_file, stray.key_file.read_bytes())
    await asyncio.sleep(0.2)
    assert served_to_orders(port, pki) == first
    await echo(dial(cleanups, port, pki.files(pki.orders)))
    rotated = issue_workload_certificate(pki.ca, "catalog", tmp_path)
    second = der_of(rotated.cert_file)
    assert second != first

    async def new_connection_sees_it() -> None:
        while await asyncio.to_thread(served_to_orders, port, pki) != second:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(new_connection_sees_it(), 5)
    await echo(dial(cleanups, port, pki.files(pki.orders)))
    await asyncio.sleep(0.05)
    stop.set()
    count = await calls
    assert failures == []
    assert count > 0
    assert len(servicer.peers) == count + 2


@pytest.mark.parametrize("missing", ["PROTOMESH_TLS_CA_FILE", "PROTOMESH_TLS_CERT_FILE", "PROTOMESH_TLS_KEY_FILE"])
def test_settings_refuse_part_of_the_tls_files_naming_the_missing_variable(missing: str) -> None:
    env = {"PROTOMESH_TLS_CA_FILE": "ca.crt", "PROTOMESH_TLS_CERT_FILE": "w.crt", "PROTOMESH_TLS_KEY_FILE": "w.key"}
    del env[missing]
    with pytest.raises(kit.SettingsError, match=f"^{missing}: must be set with"):
        kit.load_settings(env)


def test_settings_read_the_tls_files() -> None:
    env = {"PROTOMESH_TLS_CA_FILE": "ca.crt", "PROTOMESH_TLS_CERT_FILE": "w.crt", "PROTOMESH_TLS_KEY_FILE": "w.key"}
    assert kit.load_settings(env).tls == kit.TlsFiles("ca.crt", "w.crt", "w.key")
    assert kit.load_settings({}).tls is None
