"""The xDS bootstrap (gRFC A27) of a client of the protomesh control plane (mesh/xds-bootstrap.ts).

How it reaches grpcio: gRPC core reads ``GRPC_XDS_BOOTSTRAP`` (a file) or, failing that,
``GRPC_XDS_BOOTSTRAP_CONFIG`` (the JSON itself) with getenv() when it creates the xDS client of a
target, i.e. when the first channel to ``xds:///<name>`` starts resolving (GrpcXdsClient::GetOrCreate
in src/core/xds/grpc/xds_client_grpc.cc), not when grpc is imported or initialised. That client is
shared by the channels to that target while any is open. So the kit sets the variable in
``os.environ`` (which calls putenv) just before it creates an xds: channel, and clears
``GRPC_XDS_BOOTSTRAP``, which would otherwise win. Nothing has to be set before importing grpc.
(grpc-go differs: it reads the variables once, at package init, see the Go kit.)
"""

from __future__ import annotations

import json
import os
import socket

#: The variables gRPC core reads the bootstrap from, file first.
BOOTSTRAP_FILE_ENV = "GRPC_XDS_BOOTSTRAP"
BOOTSTRAP_CONFIG_ENV = "GRPC_XDS_BOOTSTRAP_CONFIG"


def xds_bootstrap(control_plane: str, node_id: str | None = None, zone: str = "") -> str:
    """One insecure xDS server, a node id unique to this process, and the process's zone."""
    return json.dumps(
        {
            "xds_servers": [{"server_uri": control_plane, "channel_creds": [{"type": "insecure"}], "server_features": []}],
            "node": {
                "id": node_id or f"protomesh~{socket.gethostname()}~{os.getpid()}",
                "locality": {"zone": zone},
            },
        }
    )


def install_bootstrap(control_plane: str, zone: str = "") -> None:
    """Makes the xDS channels created from now on use the control plane at ``control_plane``."""
    os.environ.pop(BOOTSTRAP_FILE_ENV, None)
    os.environ[BOOTSTRAP_CONFIG_ENV] = xds_bootstrap(control_plane, zone=zone)
