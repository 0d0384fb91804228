"""The channel a workload's own machinery keeps to the control plane (registry lease, certificate renewal).

Plaintext, or mTLS with the workload's files requiring the control plane's identity: its
certificate must chain to the mesh CA and name ``control-plane`` (``DNS:control-plane`` beside
``spiffe://<td>/service/control-plane``; tls.py says what grpcio can check). grpcio's channel
credentials keep the certificate they were made with, so when the files change (a renewal, or
``protomesh up`` issuing anew) the next call gets a new channel made from them, and the old one is
closed once the calls on it had their deadline to finish.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Any

import grpc

from .logger import Logger
from .names import CONTROL_PLANE_SERVICE
from .tls import channel_options as tls_options
from .tls_certificate_files import TlsFiles, files_signature, read_certificate_files


class ControlPlaneChannel:
    """``channel()`` is a channel to ``address`` with the files as they are now; ``close()`` closes every one made."""

    def __init__(
        self, address: str, tls: TlsFiles | None, logger: Logger, options: Sequence[tuple[str, Any]] = (), close_grace_s: float = 2.0
    ) -> None:
        self.address = address
        self._tls = tls
        self._logger = logger
        self._options = list(options)
        self._close_grace_s = close_grace_s
        self._closing: set[asyncio.Task[None]] = set()
        self._signature = files_signature(tls) if tls is not None else None
        self._channel = self._dial()

    def channel(self) -> grpc.aio.Channel:
        """The channel for the next call: a new one when the files changed and read well since the last."""
        if self._tls is None:
            return self._channel
        try:
            signature = files_signature(self._tls)
            if signature != self._signature:
                replaced, self._channel = self._channel, self._dial()
                self._signature = signature
                self._close_later(replaced)
                self._logger.info("control plane channel made with the renewed certificate files", certFile=self._tls.cert_file)
        except (OSError, ssl.SSLError) as error:
            # Files caught between two renames: the channel made before serves, the next call looks again.
            self._logger.debug("certificate files not usable yet; the current channel serves", err={"type": type(error).__name__, "message": str(error)})
        return self._channel

    async def close(self) -> None:
        """Closes the current channel at once and waits for the replaced ones to close."""
        await self._channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _dial(self) -> grpc.aio.Channel:
        if self._tls is None:
            return grpc.aio.insecure_channel(self.address, options=self._options)
        pems = read_certificate_files(self._tls)
        credentials = grpc.ssl_channel_credentials(root_certificates=pems.ca, private_key=pems.key, certificate_chain=pems.cert)
        return grpc.aio.secure_channel(self.address, credentials, options=[*tls_options(CONTROL_PLANE_SERVICE), *self._options])

    def _close_later(self, channel: grpc.aio.Channel) -> None:
        task = asyncio.ensure_future(channel.close(self._close_grace_s))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
