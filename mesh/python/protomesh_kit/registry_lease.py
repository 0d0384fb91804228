"""One endpoint's membership in the mesh (mesh/registry-lease.ts).

Registers with the control plane's RegistryService, sends KeepAlive every third of the granted TTL
(two may be lost before the lease expires, as etcd clients do), registers again on NOT_FOUND (the
control plane restarted or let the lease expire), retries failures with gRPC's jittered
exponential backoff capped at a keep-alive interval (REGISTER_RETRY_MAX_MS before any lease), and
deregisters on ``stop()``. Every registry call has a 2 s deadline. Failures are logged once per run,
never raised: a service keeps serving while the control plane is away. With ``tls`` the calls are
mTLS with the workload's own files, to a server that must be the control plane
(control_plane_channel.py): a control plane on mTLS accepts a registration only under the
caller's own service name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random as _random
from collections.abc import Callable

import grpc
from protomesh.registry.v1 import registry_pb2, registry_pb2_grpc

from .backoff import INITIAL_MS, Backoff
from .control_plane_channel import dial_control_plane
from .logger import Logger
from .tls_certificate_files import TlsFiles

#: Deadline of one registry call: the control plane answers from memory.
REGISTRY_CALL_DEADLINE_S = 2.0
#: Keep-alives go every this fraction of the lease TTL.
KEEPALIVE_FRACTION = 1 / 3
#: Longest wait between registration attempts before any lease was granted: a third of the control
#: plane's default 10 s lease, so a replica is back within the control plane's warm-up.
REGISTER_RETRY_MAX_MS = 3_000


class RegistryLease:
    """Keeps ``endpoint`` registered with the control plane at ``control_plane`` until ``stop()``."""

    def __init__(
        self,
        control_plane: str,
        endpoint: registry_pb2.Endpoint,
        logger: Logger,
        lease_ttl_ms: int = 0,
        random: Callable[[], float] = _random.random,
        tls: TlsFiles | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._logger = logger.child(component="registry-lease", controlPlane=control_plane, service=endpoint.service)
        self._lease_ttl_ms = lease_ttl_ms
        self._random = random
        retry_max_ms = lease_ttl_ms * KEEPALIVE_FRACTION if lease_ttl_ms > 0 else REGISTER_RETRY_MAX_MS
        self._backoff = self._backoff_up_to(retry_max_ms)
        # The channel's own reconnect backoff is bounded the same way (grpc grows it to 120 s), so
        # a replica reaches a restarted control plane within a keep-alive interval.
        self._channel = dial_control_plane(
            control_plane,
            tls,
            self._logger,
            options=[
                ("grpc.initial_reconnect_backoff_ms", int(min(INITIAL_MS, retry_max_ms))),
                ("grpc.max_reconnect_backoff_ms", int(retry_max_ms)),
                ("grpc.min_reconnect_backoff_ms", int(min(INITIAL_MS, retry_max_ms))),
            ],
        )
        self._registry = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._lease_id: str | None = None
        self._failures_in_a_row = 0
        self._is_stopped = False
        self._task: asyncio.Task[None] | None = None
        self._first_attempt = asyncio.Event()

    @property
    def is_registered(self) -> bool:
        """True while the control plane holds a lease for this endpoint, as far as this process knows."""
        return self._lease_id is not None

    async def start(self) -> None:
        """Registers once (returns whether or not that worked) and keeps the lease from then on."""
        self._task = asyncio.create_task(self._run(), name=f"registry-lease {self.endpoint.service}")
        await self._first_attempt.wait()

    async def stop(self) -> None:
        """Stops the keep-alives, deregisters (bounded by the deadline) and closes the channel."""
        if self._is_stopped:
            return
        self._is_stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        lease_id, self._lease_id = self._lease_id, None
        if lease_id:
            try:
                await self._registry.Deregister(registry_pb2.DeregisterRequest(lease_id=lease_id), timeout=REGISTRY_CALL_DEADLINE_S)
                self._logger.info("deregistered")
            except grpc.aio.AioRpcError as error:
                self._logger.warn("deregistration failed; the lease will expire", **_status_of(error))
        await self._channel.close()

    async def _run(self) -> None:
        delay_s = 0.0
        while not self._is_stopped:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            try:
                delay_s = await (self._keep_alive() if self._lease_id else self._register())
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the lease must outlive any one failed attempt
                # Not a gRPC status (a bug, or the channel closing under it): logged, and tried again
                # with backoff, so that neither listen() nor the keep-alives stop for good.
                self._failures_in_a_row += 1
                retry_in_ms = self._backoff.next_ms()
                self._logger.error(
                    "registry call failed unexpectedly; retrying with backoff",
                    err={"type": type(error).__name__, "message": str(error)},
                    retryInMs=retry_in_ms,
                )
                delay_s = retry_in_ms / 1000
            finally:
                self._first_attempt.set()

    async def _register(self) -> float:
        """One registration attempt; returns the wait before the next step (seconds)."""
        try:
            response = await self._registry.Register(
                registry_pb2.RegisterRequest(endpoint=self.endpoint, lease_ttl_ms=self._lease_ttl_ms),
                timeout=REGISTRY_CALL_DEADLINE_S,
            )
        except grpc.aio.AioRpcError as error:
            return self._retry(error, "registration failed; retrying with backoff")
        self._lease_id = response.lease_id
        keep_alive_ms = response.lease_ttl_ms * KEEPALIVE_FRACTION
        self._backoff = self._backoff_up_to(keep_alive_ms)
        self._logger.info(
            "registered",
            endpoint=f"{self.endpoint.address}:{self.endpoint.port}",
            leaseTtlMs=response.lease_ttl_ms,
            **self._after_failures(),
        )
        return keep_alive_ms / 1000

    async def _keep_alive(self) -> float:
        try:
            response = await self._registry.KeepAlive(
                registry_pb2.KeepAliveRequest(lease_id=self._lease_id or ""), timeout=REGISTRY_CALL_DEADLINE_S
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                self._logger.warn("lease lost (the control plane restarted or let it expire); registering again")
                self._lease_id = None
                self._failures_in_a_row = 0
                return 0.0
            return self._retry(error, "keep-alive failed; retrying with backoff")
        if self._failures_in_a_row > 0:
            self._logger.info("keep-alive restored", **self._after_failures())
        return response.lease_ttl_ms * KEEPALIVE_FRACTION / 1000

    def _retry(self, error: grpc.aio.AioRpcError, message: str) -> float:
        """The wait before retrying; the first failure of a run logs at warn, the rest at debug."""
        self._failures_in_a_row += 1
        retry_in_ms = self._backoff.next_ms()
        fields = {**_status_of(error), "retryInMs": retry_in_ms, "failuresInARow": self._failures_in_a_row}
        self._logger.log("warn" if self._failures_in_a_row == 1 else "debug", message, **fields)
        return retry_in_ms / 1000

    def _after_failures(self) -> dict[str, int]:
        failed = self._failures_in_a_row
        self._failures_in_a_row = 0
        self._backoff.reset()
        return {"failedAttempts": failed} if failed > 0 else {}

    def _backoff_up_to(self, max_ms: float) -> Backoff:
        cap_ms = max(1, round(max_ms))
        return Backoff(initial_ms=min(INITIAL_MS, cap_ms), max_ms=cap_ms, random=self._random)


def _status_of(error: grpc.aio.AioRpcError) -> dict[str, str]:
    return {"code": error.code().name, "details": error.details() or ""}


#: Endpoint metadata key of a server's admin HTTP port, on the registered address: the control
#: plane's dashboard scrapes its metrics there (mesh/registry-lease.ts ADMIN_PORT_METADATA).
ADMIN_PORT_METADATA = "admin_port"


def endpoint_for_server(
    service: str,
    listen_address: str,
    port: int,
    health_service_name: str,
    zone: str = "",
    advertise_host: str | None = None,
    admin_port: int | None = None,
) -> registry_pb2.Endpoint:
    """What a server bound to ``listen_address`` registers: the advertised host, else the bound host,
    else 127.0.0.1 for a wildcard or non-IP bind (as leaseForServer); its admin port, if it has one."""
    host = listen_address.rsplit(":", 1)[0].removeprefix("[").removesuffix("]")
    try:
        is_ip = bool(host) and ipaddress.ip_address(host) is not None
    except ValueError:
        is_ip = False
    is_wildcard = host in ("", "0.0.0.0", "::")
    address = advertise_host or ("127.0.0.1" if is_wildcard or not is_ip else host)
    return registry_pb2.Endpoint(
        service=service,
        address=address,
        port=port,
        zone=zone,
        weight=1,
        metadata={"pid": str(os.getpid()), **({ADMIN_PORT_METADATA: str(admin_port)} if admin_port is not None else {})},
        health_service_name=health_service_name,
    )
