"""A kit client channel that follows its certificate files (protomesh_kit/tls_channel.py): real servers
on 127.0.0.1:0, the real TypeScript control plane on mTLS renewing the client's certificate, and
certificates from the openssl CLI as the TypeScript kit makes them (protomesh_testing/identity.py)."""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import protomesh_kit as kit
import pytest
from cryptography import x509
from protomesh.interop.v1 import interop_pb2, interop_pb2_grpc
from protomesh_testing import ControlPlane, call_repeatedly, log_lines
from protomesh_testing.identity import MeshCa, WorkloadCertificate, create_mesh_ca, issue_workload_certificate, replace_file, tls_files

TRUST_DOMAIN = "protomesh.test"
DEADLINE_S = 5.0
WAIT_S = 10.0


@dataclass(frozen=True)
class Served:
    """One call as the server saw it: the method, the caller's address and its certificate's serial."""

    method: str
    peer: str
    serial_number: int
    at: float


class Recording(interop_pb2_grpc.InteropServiceServicer):
    """Echo answers; Hold waits for ``release``. Both record the caller's certificate."""

    def __init__(self) -> None:
        self.served: list[Served] = []
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    def _record(self, method: str, context: grpc.aio.ServicerContext) -> None:
        [pem] = context.auth_context()["x509_pem_cert"]
        serial_number = x509.load_pem_x509_certificate(pem).serial_number
        self.served.append(Served(method, context.peer(), serial_number, time.time()))

    async def Echo(self, request, context):
        self._record("Echo", context)
        return interop_pb2.EchoResponse(payload=request.payload, language="python")

    async def Hold(self, request, context):
        self._record("Hold", context)
        self.holding.set()
        await self.release.wait()
        return interop_pb2.HoldResponse()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> MeshCa:
    return create_mesh_ca(tmp_path_factory.mktemp("mesh-ca"), TRUST_DOMAIN)


def serial_of(workload: WorkloadCertificate) -> int:
    return x509.load_pem_x509_certificate(workload.cert_file.read_bytes()).serial_number


def lines_of(log: io.StringIO, msg: str) -> list[dict]:
    return [line for line in log_lines(log) if line.get("msg") == msg]


async def serve(cleanups: list, tls: kit.TlsFiles, **options) -> tuple[kit.MeshServer, Recording]:
    servicer = Recording()
    server = kit.create_server("catalog", logger=kit.Logger(name="catalog", stream=io.StringIO()), tls=tls, drain_grace_s=0.2, **options)
    server.add_service(interop_pb2_grpc.add_InteropServiceServicer_to_server, servicer)
    await server.listen("127.0.0.1:0")
    cleanups.append(lambda: server.drain(0.2))
    return server, servicer


async def wait_for_line(log: io.StringIO, msg: str, timeout_s: float = WAIT_S) -> dict:
    deadline = time.monotonic() + timeout_s
    while not (found := lines_of(log, msg)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {msg!r} line within {timeout_s} s")
        await asyncio.sleep(0.02)
    return found[0]


async def test_new_calls_take_a_channel_of_the_replaced_files_and_the_old_one_closes_once_its_call_in_flight_ends(
    ca: MeshCa, cleanups: list, tmp_path: Path
) -> None:
    server, servicer = await serve(cleanups, tls_files(ca, issue_workload_certificate(ca, "catalog", tmp_path / "catalog")))
    orders = issue_workload_certificate(ca, "orders", tmp_path / "orders")
    first = serial_of(orders)
    log = io.StringIO()
    # refresh_interval_s=0: every call looks at the files, so the test needs no clock.
    tls = tls_files(ca, orders, refresh_interval_s=0)
    channel = kit.dial("catalog", fallback_target=f"127.0.0.1:{server.port}", logger=kit.Logger(level="debug", stream=log), tls=tls)
    cleanups.append(channel.close)
    stub = interop_pb2_grpc.InteropServiceStub(channel)
    held = stub.Hold(interop_pb2.HoldRequest(), timeout=WAIT_S)
    await asyncio.wait_for(servicer.holding.wait(), WAIT_S)
    # A key that does not match the certificate (the instant between two renames) keeps the channel.
    replace_file(orders.key_file, issue_workload_certificate(ca, "orders", tmp_path / "stray").key_file.read_bytes())
    await stub.Echo(interop_pb2.EchoRequest(), timeout=DEADLINE_S)
    assert lines_of(log, "client channel made with the renewed certificate files") == []
    renewed = issue_workload_certificate(ca, "orders", tmp_path / "orders")
    second = serial_of(renewed)
    await stub.Echo(interop_pb2.EchoRequest(), timeout=DEADLINE_S)
    [switched] = lines_of(log, "client channel made with the renewed certificate files")
    assert (switched["serialNumber"], switched["replacedInflight"]) == (format(second, "X"), 1)
    # The call in flight on the old channel is not cut: it ends, then that channel closes.
    assert lines_of(log, "replaced client channel closed") == []
    servicer.release.set()
    await held
    closed = await wait_for_line(log, "replaced client channel closed")
    assert closed["serialNumber"] == format(first, "X")
    await stub.Echo(interop_pb2.EchoRequest(), timeout=DEADLINE_S)
    assert [(call.method, call.serial_number) for call in servicer.served] == [("Hold", first), ("Echo", first), ("Echo", second), ("Echo", second)]


async def test_a_client_whose_certificate_is_renewed_keeps_calling_past_its_expiry_on_new_connections(
    ca: MeshCa, cleanups: list, tmp_path: Path
) -> None:
    plane = await ControlPlane(tmp_path, "lease_ttl_ms: 3000\n", ca=ca).start()
    cleanups.append(plane.stop)
    catalog = tls_files(ca, issue_workload_certificate(ca, "catalog", tmp_path / "catalog"))
    old_server, old_servicer = await serve(cleanups, catalog, control_plane=plane.address)
    await plane.wait_healthy("catalog")
    short = issue_workload_certificate(ca, "orders", tmp_path / "orders", ttl=timedelta(seconds=6))
    first = x509.load_pem_x509_certificate(short.cert_file.read_bytes())
    orders = tls_files(ca, short, refresh_interval_s=0.1)
    renewals = io.StringIO()
    renewer = kit.CertificateRenewer(plane.address, orders, kit.Logger(stream=renewals))
    await renewer.start()
    cleanups.append(renewer.stop)
    log = io.StringIO()
    channel = kit.dial("catalog", control_plane=plane.address, logger=kit.Logger(stream=log), tls=orders)
    cleanups.append(channel.close)
    stub = interop_pb2_grpc.InteropServiceStub(channel)
    failures: list[grpc.aio.AioRpcError] = []
    is_done = asyncio.Event()
    calls = asyncio.create_task(call_repeatedly(lambda: stub.Echo(interop_pb2.EchoRequest(), timeout=DEADLINE_S), is_done, failures, 0.02))
    # Once the client's first certificate has expired, the catalog is replaced: the calls need a new connection.
    expiry = first.not_valid_after_utc.timestamp()
    await asyncio.sleep(max(0.0, expiry + 0.5 - time.time()))
    _, new_servicer = await serve(cleanups, catalog, control_plane=plane.address)
    await plane.wait_healthy("catalog", count=2)
    await old_server.drain(0.2)

    async def new_server_serves() -> None:
        while len(new_servicer.served) < 20:
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(new_server_serves(), WAIT_S)
    except asyncio.TimeoutError:
        raise AssertionError(f"the new server served {len(new_servicer.served)} calls in {WAIT_S} s; failed calls: {failures[-1:]}") from None
    is_done.set()
    count = await calls
    assert failures == []
    assert count == len(old_servicer.served) + len(new_servicer.served) and len(old_servicer.served) > 50
    renewed = [int(line["serialNumber"], 16) for line in lines_of(renewals, "certificate renewed")]
    assert renewed, "the client's certificate was renewed before it expired"
    switches = [int(line["serialNumber"], 16) for line in lines_of(log, "client channel made with the renewed certificate files")]
    assert switches and set(switches) <= set(renewed)
    # The calls began with the first certificate; the new server's connection presented a renewed one.
    assert old_servicer.served[0].serial_number == first.serial_number
    assert {call.serial_number for call in new_servicer.served} <= set(renewed)
    assert min(call.at for call in new_servicer.served) > expiry
