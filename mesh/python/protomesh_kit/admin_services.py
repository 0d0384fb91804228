"""grpc's admin services on a server's gRPC port (mesh/admin-services.ts): channelz (gRFC A14) and
CSDS (gRFC A40).

grpcio-channelz's servicer reads gRPC core's channelz (``grpc.enable_channelz`` is on by default):
the process's channels, subchannels, servers and sockets with their call counts, what grpcdebug
and ``grpcurl ... grpc.channelz.v1.Channelz/GetServers`` read. ``add_channelz_servicer`` picks its
asyncio servicer (``grpc_channelz.v1._async``) for a grpc.aio server; each call is one JSON dump of
core's channelz, parsed on the event loop. Reflection describes it: channelz_pb2's file and its
imports are added to the reflection pool (server.py ``reflection_pool``), so grpcurl needs no
proto files.

CSDS (``envoy.service.status.v3.ClientStatusDiscoveryService``) answers with what gRPC core's xDS
clients hold: the kit's xds: channels are core's own, one xDS client per target, and
``cygrpc.dump_xds_configs()`` serializes a ``ClientStatusResponse`` for all of them (one
``ClientConfig`` per target, each resource with its type URL, version and ACKED/NACKED status).
That is all grpcio-csds' servicer does, but grpcio-csds needs xds-protos, whose wheel carries
google/api/*_pb2.py (and opentelemetry/) of its own, written over those of googleapis-common-protos
and opentelemetry-proto that the kit imports. So the methods here pass core's bytes through
without envoy's messages: the request (its ``node_matchers``, which grpcio-csds ignores too) is
not decoded and the response is already serialized. Without the descriptors reflection cannot
describe CSDS, so it does not list it (``REFLECTED_ADMIN_SERVICES``); grpcurl takes the proto files
grpc-js-xds ships, as for the TypeScript kit (README "Channels and xDS config").
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf.descriptor import FileDescriptor
from grpc._cython import cygrpc
from grpc_channelz.v1 import channelz, channelz_pb2

#: grpc.channelz.v1: the channels, subchannels, servers and sockets of the process (gRFC A14).
CHANNELZ_SERVICE_NAME = "grpc.channelz.v1.Channelz"

#: envoy.service.status.v3: the xDS resources the process's xDS clients hold (gRFC A40).
CSDS_SERVICE_NAME = "envoy.service.status.v3.ClientStatusDiscoveryService"

#: The admin services reflection describes, and so lists: those whose files are in ADMIN_SERVICE_FILES.
REFLECTED_ADMIN_SERVICES = frozenset({CHANNELZ_SERVICE_NAME})

#: The proto files reflection needs for the admin services, their imports found from them.
ADMIN_SERVICE_FILES: tuple[FileDescriptor, ...] = (channelz_pb2.DESCRIPTOR,)


def client_status() -> bytes:
    """The process's xDS clients' resources now: a serialized envoy.service.status.v3.ClientStatusResponse.

    Empty (the empty message) before any xds: channel has started resolving.
    """
    dumped: bytes = cygrpc.dump_xds_configs()
    return dumped


async def _fetch_client_status(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return client_status()


async def _stream_client_status(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield client_status()


def add_csds(server: grpc.aio.Server) -> None:
    """Adds CSDS's two methods to ``server``, bytes in and out (no deserializer, no serializer)."""
    handlers = {
        "FetchClientStatus": grpc.unary_unary_rpc_method_handler(_fetch_client_status),
        "StreamClientStatus": grpc.stream_stream_rpc_method_handler(_stream_client_status),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(CSDS_SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(CSDS_SERVICE_NAME, handlers)


def add_admin_services(server: grpc.aio.Server) -> list[str]:
    """Adds channelz and CSDS to ``server`` and returns the full names of the services added."""
    channelz.add_channelz_servicer(server)
    add_csds(server)
    return [CHANNELZ_SERVICE_NAME, CSDS_SERVICE_NAME]
