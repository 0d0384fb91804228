"""Channelz on a kit server's gRPC port (protomesh_kit/admin_services.py): read through a real kit
client with grpcio-channelz's generated stub, and by grpcurl through reflection alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import protomesh_kit as kit
import pytest
from grpc_channelz.v1 import channelz_pb2, channelz_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry
from protomesh_testing import START_TIMEOUT_S, require_grpcurl

CHANNELZ = "grpc.channelz.v1.Channelz"


@dataclass
class Admin:
    server: kit.MeshServer
    channel: grpc.aio.Channel
    channelz: channelz_pb2_grpc.ChannelzStub
    health: health_pb2_grpc.HealthStub


async def start_server(**options: object) -> Admin:
    logger = kit.Logger(level="silent")
    server = kit.create_server("admin", logger=logger, metrics=CollectorRegistry(), **options)
    port = await server.listen("127.0.0.1:0")
    channel = kit.dial(f"127.0.0.1:{port}", logger=logger)
    return Admin(server, channel, channelz_pb2_grpc.ChannelzStub(channel), health_pb2_grpc.HealthStub(channel))


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    started = await start_server(admin_address="127.0.0.1:0")
    yield started
    await started.channel.close()
    await started.server.drain(grace_s=0)


async def grpcurl(*args: str) -> tuple[int, str]:
    run = await asyncio.create_subprocess_exec(
        require_grpcurl(), "-plaintext", "-max-time", "10", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(run.communicate(), 15)
    assert run.returncode is not None
    return run.returncode, output.decode()


async def test_lists_the_server_in_channelz_with_its_calls_counted(admin: Admin) -> None:
    assert admin.server.admin_services == [CHANNELZ]
    listed = await admin.channelz.GetServers(channelz_pb2.GetServersRequest(), timeout=2)
    made = 1
    # Core names a listener by the address it was given (":0"); the accepted socket has the port.
    server_id = None
    for server in listed.server:
        sockets = await admin.channelz.GetServerSockets(channelz_pb2.GetServerSocketsRequest(server_id=server.ref.server_id), timeout=2)
        made += 1
        for ref in sockets.socket_ref:
            socket = await admin.channelz.GetSocket(channelz_pb2.GetSocketRequest(socket_id=ref.socket_id), timeout=2)
            made += 1
            if socket.socket.local.tcpip_address.port == admin.server.port:
                server_id = server.ref.server_id
    assert server_id is not None, f"the kit server is not among {[server.ref for server in listed.server]}"

    for _ in range(3):
        await admin.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
    with pytest.raises(grpc.aio.AioRpcError):
        await admin.health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=2)
    made += 4

    async def settled() -> channelz_pb2.ServerData:
        # Core counts a call's end as the server's status write completes, which may come after the client has it.
        nonlocal made
        while True:
            data = (await admin.channelz.GetServer(channelz_pb2.GetServerRequest(server_id=server_id), timeout=2)).server.data
            made += 1
            if data.calls_succeeded + data.calls_failed == made - 1:
                return data
            await asyncio.sleep(0.01)

    data = await asyncio.wait_for(settled(), START_TIMEOUT_S)
    assert data.calls_started == made, "every call, the GetServer that read them included"
    assert (data.calls_succeeded, data.calls_failed) == (made - 2, 1), "only the NOT_FOUND check failed"


async def test_describes_channelz_to_grpcurl_through_reflection(admin: Admin) -> None:
    address = f"127.0.0.1:{admin.server.port}"
    code, output = await grpcurl(address, "list")
    assert code == 0, output
    assert CHANNELZ in output.split()
    code, output = await grpcurl("-d", "{}", address, f"{CHANNELZ}/GetServers")
    assert code == 0, output
    listed = json.loads(output)
    assert listed["end"] is True and listed["server"], output
    assert "callsStarted" in output and "calls_started" not in output, "proto3 JSON names, as the descriptor set's"


async def test_serves_no_channelz_when_admin_services_are_off() -> None:
    for options in ({}, {"admin_address": "127.0.0.1:0", "admin_services": False}):
        off = await start_server(**options)
        try:
            assert off.server.admin_services == [], options
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await off.channelz.GetServers(channelz_pb2.GetServersRequest(), timeout=2)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED, options
        finally:
            await off.channel.close()
            await off.server.drain(grace_s=0)
