"""Channelz and CSDS on a kit server's gRPC port (protomesh_kit/admin_services.py). Channelz is read
through a real kit client with grpcio-channelz's generated stub, and by grpcurl through reflection
alone; CSDS, after a kit client dialled the real catalog through the real control plane, through a
kit client with the messages of the proto files grpc-js-xds ships, and by grpcurl with those files."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import protomesh_kit as kit
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_channelz.v1 import channelz_pb2, channelz_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc
from prometheus_client import CollectorRegistry
from protomesh_testing import IS_CI, REPO, START_TIMEOUT_S, ControlPlane, require_grpcurl, start_catalog
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc

CHANNELZ = "grpc.channelz.v1.Channelz"
CSDS = "envoy.service.status.v3.ClientStatusDiscoveryService"
#: The xDS proto files grpc-js-xds ships (what README's grpcurl example imports).
XDS_PROTOS = REPO / "node_modules/@grpc/grpc-js-xds/deps"
XDS_IMPORT_PATHS = tuple(XDS_PROTOS / name for name in ("envoy-api", "xds", "googleapis", "protoc-gen-validate"))
CSDS_PROTO = "envoy/service/status/v3/csds.proto"
#: What a gRPC xDS client holds of a service it dialled by name (gRFC A27).
RESOURCE_TYPES = {
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
}


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
    assert admin.server.admin_services == [CHANNELZ, CSDS]
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


async def test_serves_neither_channelz_nor_csds_when_admin_services_are_off() -> None:
    for options in ({}, {"admin_address": "127.0.0.1:0", "admin_services": False}):
        off = await start_server(**options)
        try:
            assert off.server.admin_services == [], options
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await off.channelz.GetServers(channelz_pb2.GetServersRequest(), timeout=2)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED, options
            fetch = off.channel.unary_unary(f"/{CSDS}/FetchClientStatus")
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await fetch(b"", timeout=2)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED, options
        finally:
            await off.channel.close()
            await off.server.drain(grace_s=0)


@dataclass
class Csds:
    """ClientStatusRequest and ClientStatusResponse built from grpc-js-xds' proto files, in a pool of
    their own: the default pool's google/api files are googleapis-common-protos' (admin_services.py)."""

    request: Any
    response: Any
    pool: descriptor_pool.DescriptorPool

    def status_name(self, number: int) -> str:
        return self.pool.FindEnumTypeByName("envoy.admin.v3.ClientResourceStatus").values_by_number[number].name


def require_xds_protos() -> None:
    """Skips (fails under CI) without grpc-js-xds' proto files."""
    if not (XDS_PROTOS / "envoy-api" / CSDS_PROTO).is_file():
        message = f"{XDS_PROTOS} lacks {CSDS_PROTO}: run `npm ci`"
        pytest.fail(message) if IS_CI else pytest.skip(message)


@pytest.fixture(scope="module")
def csds(tmp_path_factory: pytest.TempPathFactory) -> Csds:
    require_xds_protos()
    out = tmp_path_factory.mktemp("csds") / "csds.binpb"
    well_known = Path(protoc.__file__).parent / "_proto"
    includes = [f"-I{path}" for path in (*XDS_IMPORT_PATHS, well_known)]
    assert protoc.main(["protoc", *includes, "--include_imports", f"--descriptor_set_out={out}", CSDS_PROTO]) == 0
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:  # imports first
        pool.Add(file)

    def message(name: str) -> Any:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"envoy.service.status.v3.{name}"))

    return Csds(message("ClientStatusRequest"), message("ClientStatusResponse"), pool)


@pytest.fixture
async def catalog_dialled(control_plane: ControlPlane, admin: Admin) -> AsyncIterator[grpc.aio.Channel]:
    """A kit client of the real catalog by name, through the real control plane, after one answer.

    Dialled after the admin server started: CSDS reads core's xDS clients when it is called."""
    catalog, _ = await start_catalog(control_plane.address)
    channel = kit.dial("catalog", control_plane=control_plane.address, logger=kit.Logger(stream=io.StringIO()))
    try:
        await control_plane.wait_healthy("catalog")
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                await stub.ListProducts(catalog_pb2.ListProductsRequest(), timeout=2)
                break
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)  # the control plane's warm-up: no endpoints published yet
        yield channel
    finally:
        await channel.close()
        await catalog.stop()


#: The client_scope of the xDS client of xds:///catalog as gRPC core reports it: the channel's
#: target URI, its empty authority dropped.
CATALOG_SCOPE = "xds:/catalog"


def catalog_resources(csds: Csds, response: Any) -> dict[str, tuple[str, str]]:
    """type URL -> (name, status) of what the xDS client of xds:///catalog holds."""
    configs = [config for config in response.config if config.client_scope == CATALOG_SCOPE]
    assert len(configs) == 1, f"{CATALOG_SCOPE} not once in {[config.client_scope for config in response.config]}"
    return {
        resource.type_url: (resource.name, csds.status_name(resource.client_status))
        for resource in configs[0].generic_xds_configs
    }


async def test_shows_the_xds_resources_of_a_dialled_service_acked_in_csds(
    admin: Admin, catalog_dialled: grpc.aio.Channel, csds: Csds
) -> None:
    fetch = admin.channel.unary_unary(
        f"/{CSDS}/FetchClientStatus",
        request_serializer=csds.request.SerializeToString,
        response_deserializer=csds.response.FromString,
    )
    response = await fetch(csds.request(), timeout=2)
    resources = catalog_resources(csds, response)
    assert set(resources) == RESOURCE_TYPES, resources
    assert {status for _, status in resources.values()} == {"ACKED"}, resources
    assert resources["type.googleapis.com/envoy.config.listener.v3.Listener"][0] == "catalog"

    stream = admin.channel.stream_stream(
        f"/{CSDS}/StreamClientStatus",
        request_serializer=csds.request.SerializeToString,
        response_deserializer=csds.response.FromString,
    )
    call = stream()
    try:
        for _ in range(2):
            await call.write(csds.request())
            assert catalog_resources(csds, await asyncio.wait_for(call.read(), 2)) == resources, "one answer per request"
        await call.done_writing()
        assert await asyncio.wait_for(call.read(), 2) is grpc.aio.EOF
    finally:
        call.cancel()


async def test_answers_csds_to_grpcurl_with_the_xds_proto_files_not_reflection(
    admin: Admin, catalog_dialled: grpc.aio.Channel
) -> None:
    require_xds_protos()
    address = f"127.0.0.1:{admin.server.port}"
    code, output = await grpcurl(address, "list")
    assert code == 0, output
    assert CSDS not in output.split(), "reflection lists only what it can describe (admin_services.py)"
    imports = [flag for path in XDS_IMPORT_PATHS for flag in ("-import-path", str(path))]
    code, output = await grpcurl(*imports, "-proto", CSDS_PROTO, "-d", "{}", address, f"{CSDS}/FetchClientStatus")
    assert code == 0, output
    [config] = [config for config in json.loads(output)["config"] if config["clientScope"] == CATALOG_SCOPE]
    resources = {resource["typeUrl"]: resource["clientStatus"] for resource in config["genericXdsConfigs"]}
    assert resources == {type_url: "ACKED" for type_url in RESOURCE_TYPES}, output
