"""A client channel that follows the workload's certificate files (the TypeScript kit's client re-reads them).

grpcio's channel credentials are made from bytes and keep them: every connection a channel makes,
however late, presents the certificate it was made with, so once that certificate expires a new
connection (a reconnect after a GOAWAY or a restart, a new endpoint from xDS) fails its handshake.
:class:`RenewingChannel` is a ``grpc.aio.Channel`` made of channels: a new call goes on a channel
made from the files as they are now. Its CertificateFileWatcher (tls_certificate_files.py) looks
at them at most every ``refresh_interval_s`` and passes on only files that read well, the key
matching the certificate, so files caught between two renames keep the current channel. When they
changed, the call gets a new channel, and the one it replaces is closed once its calls in flight
have ended: no call fails because of the switch, and a stream holds its channel for as long as it lasts.

A generated stub takes its multi-callables from the channel when it is made, so the multi-callables
here are the ones that pick the channel, call by call; each keeps the one it made on the channel in use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc
from cryptography import x509

from .logger import Logger
from .tls import channel_credentials
from .tls_certificate_files import CertificateFileWatcher, CertificatePems, TlsFiles

_MultiCallable = TypeVar("_MultiCallable")


class _Generation:
    """One channel of the files as one read found them, and how many calls it has in flight."""

    def __init__(self, channel: grpc.aio.Channel, serial_number: str) -> None:
        self.channel = channel
        self.serial_number = serial_number
        self.inflight = 0


class RenewingChannel(grpc.aio.Channel):
    """A channel to ``target`` presenting ``files``' certificate as the files are at each new call.

    Made with the event loop running (grpc.aio binds channels to it); raises OSError or ssl.SSLError
    when the files cannot be used now. ``options`` and ``interceptors`` are those of every channel
    it makes. ``now`` is injected so tests can pin the watcher's clock.
    """

    def __init__(
        self,
        target: str,
        files: TlsFiles,
        logger: Logger,
        *,
        options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._target = target
        self._files = files
        self._logger = logger
        self._options = list(options)
        self._interceptors = list(interceptors)
        self._watcher = CertificateFileWatcher(files, logger, now)
        self._current = self._dial(self._watcher.current)
        self._replaced: set[_Generation] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._is_closed = False

    async def __aenter__(self) -> RenewingChannel:
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self.close(None)

    async def close(self, grace: float | None = None) -> None:
        """Closes the channel in use and the replaced ones still open, as ``grpc.aio.Channel.close`` does each."""
        self._is_closed = True
        channels = [self._current.channel, *(generation.channel for generation in self._replaced)]
        self._replaced.clear()
        await asyncio.gather(*(channel.close(grace) for channel in channels), *self._closing, return_exceptions=True)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """The state of the channel in use."""
        return self._current.channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        """Returns when the state of the channel in use changes from ``last_observed_state``."""
        await self._current.channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        """Returns when the channel the next call would take is READY."""
        await self._generation_for_call().channel.channel_ready()

    def unary_unary(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, _registered_method: bool | None = False
    ) -> grpc.aio.UnaryUnaryMultiCallable:
        return _UnaryUnary(self, lambda channel: channel.unary_unary(method, request_serializer, response_deserializer, _registered_method))

    def unary_stream(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, _registered_method: bool | None = False
    ) -> grpc.aio.UnaryStreamMultiCallable:
        return _UnaryStream(self, lambda channel: channel.unary_stream(method, request_serializer, response_deserializer, _registered_method))

    def stream_unary(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, _registered_method: bool | None = False
    ) -> grpc.aio.StreamUnaryMultiCallable:
        return _StreamUnary(self, lambda channel: channel.stream_unary(method, request_serializer, response_deserializer, _registered_method))

    def stream_stream(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None, _registered_method: bool | None = False
    ) -> grpc.aio.StreamStreamMultiCallable:
        return _StreamStream(self, lambda channel: channel.stream_stream(method, request_serializer, response_deserializer, _registered_method))

    def _generation_for_call(self) -> _Generation:
        """The channel of the files as they are now: a new one when they changed and read well."""
        pems = None if self._is_closed else self._watcher.changed()
        if pems is not None:
            replaced, self._current = self._current, self._dial(pems)
            self._logger.info(
                "client channel made with the renewed certificate files",
                certFile=self._files.cert_file,
                serialNumber=self._current.serial_number,
                replacedInflight=replaced.inflight,
            )
            if replaced.inflight == 0:
                self._close_replaced(replaced)
            else:
                self._replaced.add(replaced)
        return self._current

    def _track(self, generation: _Generation, call: Any) -> Any:
        """Counts ``call`` on its channel until it ends; returns it."""
        generation.inflight += 1
        call.add_done_callback(lambda _: self._release(generation))
        return call

    def _release(self, generation: _Generation) -> None:
        generation.inflight -= 1
        if generation.inflight == 0 and generation in self._replaced:
            self._replaced.discard(generation)
            self._close_replaced(generation)

    def _close_replaced(self, generation: _Generation) -> None:
        task = asyncio.ensure_future(self._close_generation(generation))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_generation(self, generation: _Generation) -> None:
        await generation.channel.close()
        self._logger.debug("replaced client channel closed", serialNumber=generation.serial_number)

    def _dial(self, pems: CertificatePems) -> _Generation:
        serial_number = format(x509.load_pem_x509_certificate(pems.cert).serial_number, "X")  # before the channel: nothing to close if it raises
        channel = grpc.aio.secure_channel(self._target, channel_credentials(pems), options=self._options, interceptors=self._interceptors)
        return _Generation(channel, serial_number)


class _Picker(Generic[_MultiCallable]):
    """The multi-callable of one method on the channel each call takes, made again when that channel changes."""

    def __init__(self, owner: RenewingChannel, make: Callable[[grpc.aio.Channel], _MultiCallable]) -> None:
        self._owner = owner
        self._make = make
        self._made: tuple[_Generation, _MultiCallable] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Makes the call, with the arguments of grpc.aio's multi-callable, on the channel of the files as they are now."""
        generation = self._owner._generation_for_call()
        if self._made is None or self._made[0] is not generation:
            self._made = (generation, self._make(generation.channel))
        multi_callable: Any = self._made[1]
        return self._owner._track(generation, multi_callable(*args, **kwargs))


class _UnaryUnary(_Picker[grpc.aio.UnaryUnaryMultiCallable], grpc.aio.UnaryUnaryMultiCallable):
    pass


class _UnaryStream(_Picker[grpc.aio.UnaryStreamMultiCallable], grpc.aio.UnaryStreamMultiCallable):
    pass


class _StreamUnary(_Picker[grpc.aio.StreamUnaryMultiCallable], grpc.aio.StreamUnaryMultiCallable):
    pass


class _StreamStream(_Picker[grpc.aio.StreamStreamMultiCallable], grpc.aio.StreamStreamMultiCallable):
    pass
