"""The channel a workload's own machinery keeps to the control plane (registry lease, certificate renewal).

Plaintext, or mTLS with the workload's files requiring the control plane's identity: its
certificate must chain to the mesh CA and name ``control-plane`` (``DNS:control-plane`` beside
``spiffe://<td>/service/control-plane``; tls.py says what grpcio can check). With mTLS it is a
RenewingChannel (tls_channel.py): when the files change (a renewal, or ``protomesh up`` issuing
anew) the next call goes on a new channel made from them, and the old one is closed once its calls
have ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from .logger import Logger
from .names import CONTROL_PLANE_SERVICE
from .tls import channel_options as tls_options
from .tls_certificate_files import TlsFiles
from .tls_channel import RenewingChannel


def dial_control_plane(address: str, tls: TlsFiles | None, logger: Logger, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A channel to the control plane at ``address``: plaintext without ``tls``, else mTLS following the files.

    Must be called with the event loop running; raises OSError or ssl.SSLError for files that cannot be used."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return RenewingChannel(address, tls, logger, options=[*tls_options(CONTROL_PLANE_SERVICE), *options])
