"""The xDS bootstrap (gRFC A27) of a client of the protomesh control plane (mesh/xds-bootstrap.ts).

How it reaches grpcio: gRPC core reads ``GRPC_XDS_BOOTSTRAP`` (a file) or, failing that,
``GRPC_XDS_BOOTSTRAP_CONFIG`` (the JSON itself) with getenv() when it creates the xDS client of a
target, i.e. when the first channel to ``xds:///<name>`` starts resolving (GrpcXdsClient::GetOrCreate
in src/core/xds/grpc/xds_client_grpc.cc), not when grpc is imported or initialised. That client is
shared by the channels to that target while any is open. So the kit sets the variable in
``os.environ`` (which calls putenv) just before it creates an xds: channel, and clears
``GRPC_XDS_BOOTSTRAP``, which would otherwise win. Nothing has to be set before importing grpc.
(grpc-go differs: it reads the variables once, at package init, see the Go kit.)

With mTLS the xDS stream goes to the control plane's mTLS port with gRFC A65's "tls" channel
credentials: C-core watches the three files itself (a renewed certificate serves its next
connection) and checks the control plane's certificate against the host of ``server_uri`` (its
IP or DNS SAN, as the control plane's certificate carries for the addresses it is dialled at).
"""

from __future__ import annotations

import json
import os
import socket

from .tls_certificate_files import TlsFiles

#: The variables gRPC core reads the bootstrap from, file first.
BOOTSTRAP_FILE_ENV = "GRPC_XDS_BOOTSTRAP"
BOOTSTRAP_CONFIG_ENV = "GRPC_XDS_BOOTSTRAP_CONFIG"


def xds_bootstrap(control_plane: str, node_id: str | None = None, zone: str = "", tls: TlsFiles | None = None) -> str:
    """One xDS server (plaintext, or mTLS with ``tls``'s files), a node id unique to this process, and the process's zone."""
    return json.dumps(
        {
            "xds_servers": [{"server_uri": control_plane, "channel_creds": [channel_creds(tls)], "server_features": []}],
            "node": {
                "id": node_id or f"protomesh~{socket.gethostname()}~{os.getpid()}",
                "locality": {"zone": zone},
            },
        }
    )


def channel_creds(tls: TlsFiles | None) -> dict[str, object]:
    """The bootstrap's channel credentials: "insecure", or gRFC A65's "tls" with the workload's files."""
    if tls is None:
        return {"type": "insecure"}
    config = {"ca_certificate_file": tls.ca_file, "certificate_file": tls.cert_file, "private_key_file": tls.key_file}
    return {"type": "tls", "config": {**config, "refresh_interval": f"{tls.refresh_interval_s:g}s"}}


def install_bootstrap(control_plane: str, zone: str = "", tls: TlsFiles | None = None) -> None:
    """Makes the xDS channels created from now on use the control plane at ``control_plane``."""
    os.environ.pop(BOOTSTRAP_FILE_ENV, None)
    os.environ[BOOTSTRAP_CONFIG_ENV] = xds_bootstrap(control_plane, zone=zone, tls=tls)
