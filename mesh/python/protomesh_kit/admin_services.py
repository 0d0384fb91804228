"""grpc's admin services on a server's gRPC port (mesh/admin-services.ts): channelz (gRFC A14).

grpcio-channelz's servicer reads gRPC core's channelz (``grpc.enable_channelz`` is on by default):
the process's channels, subchannels, servers and sockets with their call counts, what grpcdebug
and ``grpcurl ... grpc.channelz.v1.Channelz/GetServers`` read. ``add_channelz_servicer`` picks its
asyncio servicer (``grpc_channelz.v1._async``) for a grpc.aio server; each call is one JSON dump of
core's channelz, parsed on the event loop.

Unlike the TypeScript kit's, reflection describes it: channelz_pb2's file and its imports are
added to the reflection pool (server.py ``reflection_pool``), so grpcurl needs no proto files.

CSDS (envoy.service.status.v3, gRFC A40) is left out, though this process model would allow it:
the kit's xds: channels are gRPC core's own xDS client, which grpcio-csds dumps. grpcio-csds needs
xds-protos, whose wheel carries google/api/*_pb2.py of its own, written over the files of
googleapis-common-protos that the generated stubs import.
"""

from __future__ import annotations

import grpc
from google.protobuf.descriptor import FileDescriptor
from grpc_channelz.v1 import channelz, channelz_pb2

#: grpc.channelz.v1: the channels, subchannels, servers and sockets of the process (gRFC A14).
CHANNELZ_SERVICE_NAME = "grpc.channelz.v1.Channelz"

#: The proto files reflection needs for the admin services, their imports found from them.
ADMIN_SERVICE_FILES: tuple[FileDescriptor, ...] = (channelz_pb2.DESCRIPTOR,)


def add_admin_services(server: grpc.aio.Server) -> list[str]:
    """Adds channelz to ``server`` and returns the full names of the services added."""
    channelz.add_channelz_servicer(server)
    return [CHANNELZ_SERVICE_NAME]
