"""A kit server's plaintext health port (protomesh_kit/health_port.py, ``health_address``,
PROTOMESH_HEALTH_ADDRESS): real servers on 127.0.0.1:0, the gRPC port on mTLS with certificates from
the openssl CLI (protomesh_testing/identity.py)."""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

import grpc
import protomesh_kit as kit
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from protomesh.interop.v1 import interop_pb2, interop_pb2_grpc
from protomesh_testing import log_lines
from protomesh_testing.identity import MeshCa, create_mesh_ca, issue_workload_certificate, tls_files

SERVICE = "protomesh.interop.v1.InteropService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
DEADLINE_S = 5.0


class Holding(interop_pb2_grpc.InteropServiceServicer):
    """Echo answers; Hold waits for ``release``."""

    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def Echo(self, request, context):
        return interop_pb2.EchoResponse(payload=request.payload, language="python")

    async def Hold(self, request, context):
        self.holding.set()
        await self.release.wait()
        return interop_pb2.HoldResponse()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> MeshCa:
    return create_mesh_ca(tmp_path_factory.mktemp("mesh-ca"), "protomesh.test")


def issued_tls_files(ca: MeshCa, service: str, directory: Path) -> kit.TlsFiles:
    return tls_files(ca, issue_workload_certificate(ca, service, directory))


async def serve(cleanups: list, ca: MeshCa, tmp_path: Path, log: io.StringIO | None = None) -> tuple[kit.MeshServer, Holding]:
    servicer = Holding()
    tls = issued_tls_files(ca, "catalog", tmp_path / "catalog")
    server = kit.create_server("catalog", logger=kit.Logger(name="catalog", stream=log or io.StringIO()), tls=tls, health_address="127.0.0.1:0")
    server.add_service(interop_pb2_grpc.add_InteropServiceServicer_to_server, servicer)
    await server.listen("127.0.0.1:0")
    cleanups.append(lambda: server.drain(0))
    return server, servicer


def plaintext(cleanups: list, port: int | None) -> grpc.aio.Channel:
    assert port is not None
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    cleanups.append(channel.close)
    return channel


async def check(channel: grpc.aio.Channel, service: str = "") -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE_S)
    return response.status


async def test_a_tls_server_answers_plaintext_health_checks_on_its_health_address_and_nothing_else(
    ca: MeshCa, cleanups: list, tmp_path: Path
) -> None:
    log = io.StringIO()
    server, _ = await serve(cleanups, ca, tmp_path, log)
    assert server.health_port is not None and server.health_port != server.port
    [listening] = [line for line in log_lines(log) if line["msg"] == "listening"]
    assert (listening["tls"], listening["healthPort"]) == (True, server.health_port)
    health = plaintext(cleanups, server.health_port)
    assert [await check(health), await check(health, SERVICE)] == [SERVING, SERVING]
    # Only health answers there: the application's methods and reflection are UNIMPLEMENTED.
    with pytest.raises(grpc.aio.AioRpcError) as echo:
        await interop_pb2_grpc.InteropServiceStub(health).Echo(interop_pb2.EchoRequest(), timeout=DEADLINE_S)
    assert echo.value.code() == grpc.StatusCode.UNIMPLEMENTED
    reflection = reflection_pb2_grpc.ServerReflectionStub(health).ServerReflectionInfo(timeout=DEADLINE_S)
    await reflection.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    with pytest.raises(grpc.aio.AioRpcError) as listed:
        await reflection.read()
    assert listed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # The gRPC port stays mTLS: a plaintext health check there fails.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await check(plaintext(cleanups, server.port))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_health_port_reports_not_serving_when_the_server_drains_and_closes_with_it(
    ca: MeshCa, cleanups: list, tmp_path: Path
) -> None:
    server, servicer = await serve(cleanups, ca, tmp_path)
    health = plaintext(cleanups, server.health_port)
    watch = health_pb2_grpc.HealthStub(health).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    assert (await asyncio.wait_for(watch.read(), DEADLINE_S)).status == SERVING
    # A call in flight on the mTLS port holds the drain open while the health port is watched.
    orders = issued_tls_files(ca, "orders", tmp_path / "orders")
    client = kit.dial("catalog", fallback_target=f"127.0.0.1:{server.port}", logger=kit.Logger(stream=io.StringIO()), tls=orders)
    cleanups.append(client.close)
    held = interop_pb2_grpc.InteropServiceStub(client).Hold(interop_pb2.HoldRequest(), timeout=DEADLINE_S * 2)
    await asyncio.wait_for(servicer.holding.wait(), DEADLINE_S)
    drained = server.drain(grace_s=DEADLINE_S)
    assert (await asyncio.wait_for(watch.read(), DEADLINE_S)).status == NOT_SERVING
    assert [await check(health), await check(health, SERVICE)] == [NOT_SERVING, NOT_SERVING]
    servicer.release.set()
    await held
    await drained
    # Stopped with the server: the Watch has ended and the port no longer answers.
    with pytest.raises(grpc.aio.AioRpcError):
        while await watch.read() is not grpc.aio.EOF:
            pass
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        await check(health)
    assert closed.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_health_address_that_cannot_be_bound_fails_listen_naming_it(ca: MeshCa, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        server = kit.create_server("catalog", logger=kit.Logger(stream=io.StringIO()), tls=issued_tls_files(ca, "catalog", tmp_path), health_address=address)
        with pytest.raises(OSError, match=f"^catalog: health port: could not bind {address}$"):
            await server.listen("127.0.0.1:0")


@pytest.mark.parametrize("value", ["8086", "127.0.0.1:70000", "http://127.0.0.1:8086", "127.0.0.1"])
def test_settings_refuse_a_health_address_that_is_not_host_port_naming_the_variable(value: str) -> None:
    with pytest.raises(kit.SettingsError, match="^PROTOMESH_HEALTH_ADDRESS: must be host:port, e.g. 127.0.0.1:8086, got ") as caught:
        kit.load_settings({"PROTOMESH_HEALTH_ADDRESS": value})
    assert caught.value.variable == "PROTOMESH_HEALTH_ADDRESS"


def test_settings_read_the_health_address() -> None:
    assert kit.load_settings({}).health_address is None
    assert kit.load_settings({"PROTOMESH_HEALTH_ADDRESS": ""}).health_address is None
    for address in ("127.0.0.1:8086", "[::1]:0", "localhost:8086"):
        assert kit.load_settings({"PROTOMESH_HEALTH_ADDRESS": address}).health_address == address

