"""The names the mesh gives things (mesh/names.ts).

A mesh service name is a DNS label (RFC 1123), so that ``xds:///<name>``, the registry and
Kubernetes Service names agree.
"""

from __future__ import annotations

import re

#: A mesh service name, the name clients dial as xds:///<name>: a DNS label.
SERVICE_NAME_PATTERN = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")


def is_service_name(name: str) -> bool:
    """True when ``name`` is a mesh service name ("catalog")."""
    return SERVICE_NAME_PATTERN.fullmatch(name) is not None


#: The mesh service name of the control plane's identity (mesh/names.ts CONTROL_PLANE_SERVICE): over
#: mTLS its certificate names spiffe://<trust domain>/service/control-plane and DNS:control-plane,
#: which the kit's registry lease and certificate renewal require.
CONTROL_PLANE_SERVICE = "control-plane"
