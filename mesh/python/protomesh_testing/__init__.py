"""Test support for the Python suites (a pytest plugin, loaded with ``-p protomesh_testing``).

Real processes, no mocks: the TypeScript control plane and catalog from dist/, started on free
127.0.0.1 ports, and an OTLP/HTTP trace collector in process (otlp_receiver.py). Without node (or
dist/), outside CI, a test that needs them is skipped saying why; under CI (CI=true or 1) it fails.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from protomesh.registry.v1 import registry_pb2, registry_pb2_grpc
from protomesh_kit.names import CONTROL_PLANE_SERVICE

from .identity import MeshCa, WorkloadCertificate, issue_workload_certificate
from .otlp_receiver import OtlpReceiver as OtlpReceiver
from .otlp_receiver import ReceivedSpan as ReceivedSpan

REPO = Path(__file__).resolve().parents[3]
PYTHON = sys.executable
IS_CI = os.environ.get("CI", "") in ("true", "1")
#: Longest wait for a process to say it serves, or for a state the mesh converges to.
START_TIMEOUT_S = 10.0
#: Prometheus' promtool, from Debian's prometheus package (`make promtool`).
PROMTOOL = "/usr/bin/promtool"
#: grpcurl, as `make tools` installs it.
GRPCURL = REPO / ".tools/bin/grpcurl"


def require_tool(path: str | None, what: str) -> str:
    """``path`` if it names an executable, else skip (fail under CI) naming what is missing."""
    if path and os.access(path, os.X_OK):
        return path
    message = f"{what} not found: install it (CI={os.environ.get('CI', '')})"
    if IS_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_promtool() -> str:
    """promtool; skipped (failed under CI) without it, saying how to install it."""
    if os.access(PROMTOOL, os.X_OK):
        return PROMTOOL
    reason = f"promtool is not installed at {PROMTOOL}: run `make promtool` (Debian's prometheus package)"
    if IS_CI:
        pytest.fail(f"{reason} (CI={os.environ.get('CI', '')}: a missing tool fails the run)")
    pytest.skip(reason)


def require_grpcurl() -> str:
    """grpcurl; skipped (failed under CI) without it."""
    return require_tool(str(GRPCURL), f"grpcurl at {GRPCURL} (`make tools`)")


def require_node() -> str:
    """node, with dist/ built; skipped (failed under CI) without them."""
    node = require_tool(shutil.which("node"), "node (Node.js 20)")
    if not (REPO / "dist/cli/protomesh.js").exists():
        message = "dist/ is not built: run `make build`"
        pytest.fail(message) if IS_CI else pytest.skip(message)
    return node


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A child process whose stdout lines (JSON logs) are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, *argv: str, env: dict[str, str]) -> Process:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=REPO, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                continue
            self._changed.set()

    async def wait_line(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        """The first line ``predicate`` accepts, waiting for it."""
        async def find() -> dict[str, Any]:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                self._changed.clear()
                if self._reader.done():
                    raise AssertionError(f"process exited ({self.proc.returncode}) before the line; last: {self.lines[-3:]}")
                await self._changed.wait()
        return await asyncio.wait_for(find(), timeout)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def stop(self) -> int:
        self.signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), 12)
        except asyncio.TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)
        return code


class ControlPlane:
    """The real TypeScript control plane on a free port, with a mesh config written for the test.

    With ``ca``, its port is STRICT mTLS with that mesh CA (PROTOMESH_TLS_*), with a certificate for
    ``spiffe://<td>/service/control-plane`` and ``DNS:control-plane``, ``DNS:localhost`` and
    ``IP:127.0.0.1``, and it signs renewals with the CA's key (PROTOMESH_CA_KEY_FILE) unless
    ``signs_certificates`` is False; the test's own
    registry calls (``endpoints``) present an admin identity, ``spiffe://<td>/admin/tests``.
    """

    def __init__(self, tmp: Path, mesh_yaml: str, ca: MeshCa | None = None, signs_certificates: bool = True) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.config = tmp / "mesh.yaml"
        self.config.write_text(mesh_yaml)
        self.process: Process | None = None
        self._channel: grpc.aio.Channel | None = None
        self._env = {"PORT": str(self.port), "HOST": "127.0.0.1"}
        self._admin_identity: WorkloadCertificate | None = None
        self.ca = ca
        if ca is not None:
            own = issue_workload_certificate(
                ca, CONTROL_PLANE_SERVICE, tmp / "control-plane", dns_names=[CONTROL_PLANE_SERVICE, "localhost"], ip_addresses=["127.0.0.1"]
            )
            self._admin_identity = issue_workload_certificate(ca, "tests", tmp / "control-plane", spiffe_id=f"spiffe://{ca.trust_domain}/admin/tests")
            self._env |= {
                "PROTOMESH_TLS_CA_FILE": str(ca.cert_file),
                "PROTOMESH_TLS_CERT_FILE": str(own.cert_file),
                "PROTOMESH_TLS_KEY_FILE": str(own.key_file),
                **({"PROTOMESH_CA_KEY_FILE": str(ca.key_file)} if signs_certificates else {}),
            }

    async def start(self) -> ControlPlane:
        node = require_node()
        self.process = await Process.start(node, "dist/cli/protomesh.js", "control-plane", str(self.config), env=self._env)
        await self.process.wait_line(lambda line: line.get("msg") == "listening")
        return self

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        if self.process is not None:
            await self.process.stop()
            self.process = None

    async def endpoints(self, service: str) -> list[registry_pb2.EndpointStatus]:
        """The service's endpoints as ListServices shows them now."""
        if self._channel is None:
            self._channel = self._dial()
        stub = registry_pb2_grpc.RegistryServiceStub(self._channel)
        response = await stub.ListServices(registry_pb2.ListServicesRequest(service=service), timeout=2)
        return [endpoint for s in response.services if s.name == service for endpoint in s.endpoints]

    def _dial(self) -> grpc.aio.Channel:
        if self.ca is None or self._admin_identity is None:
            return grpc.aio.insecure_channel(self.address)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert_file.read_bytes(),
            private_key=self._admin_identity.key_file.read_bytes(),
            certificate_chain=self._admin_identity.cert_file.read_bytes(),
        )
        return grpc.aio.secure_channel(self.address, credentials, options=[("grpc.ssl_target_name_override", CONTROL_PLANE_SERVICE)])

    async def wait_healthy(self, service: str, count: int = 1, timeout: float = START_TIMEOUT_S) -> list[registry_pb2.EndpointStatus]:
        """Waits until ``count`` endpoints of ``service`` are HEALTHY."""
        async def poll() -> list[registry_pb2.EndpointStatus]:
            while True:
                healthy = [e for e in await self.endpoints(service) if e.health == registry_pb2.HEALTH_STATE_HEALTHY]
                if len(healthy) >= count:
                    return healthy
                await asyncio.sleep(0.05)
        return await asyncio.wait_for(poll(), timeout)

    async def wait_gone(self, service: str, timeout: float = START_TIMEOUT_S) -> None:
        async def poll() -> None:
            while await self.endpoints(service):
                await asyncio.sleep(0.05)
        await asyncio.wait_for(poll(), timeout)


async def start_catalog(control_plane: str | None = None) -> tuple[Process, int]:
    """The real TypeScript catalog on a free port (registered when ``control_plane`` is given)."""
    node = require_node()
    port = free_port()
    env = {"PORT": str(port), "HOST": "127.0.0.1", "PROTOMESH_CONTROL_PLANE": control_plane or ""}
    process = await Process.start(node, "dist/services/catalog/main.js", env=env)
    await process.wait_line(lambda line: line.get("msg") == "listening")
    return process, port


async def scrape(port: int, path: str = "/metrics", method: str = "GET") -> tuple[int, dict[str, str], str]:
    """One HTTP request to 127.0.0.1:``port``, as Prometheus scrapes: status, headers and body."""

    def fetch() -> tuple[int, dict[str, str], str]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read().decode()

    return await asyncio.to_thread(fetch)


def samples(exposition: str, name: str, labels: dict[str, str] | None = None) -> list[Sample]:
    """The samples ``name`` whose labels include ``labels``, in a text exposition, in its order."""
    return [
        found
        for family in text_string_to_metric_families(exposition)
        for found in family.samples
        if found.name == name and all(found.labels.get(key) == value for key, value in (labels or {}).items())
    ]


def sample(exposition: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of the one sample ``name`` whose labels include ``labels``; None without one."""
    found = samples(exposition, name, labels)
    assert len(found) <= 1, f"{len(found)} samples of {name} with {labels}"
    return found[0].value if found else None


async def call_repeatedly(
    call: Callable[[], Awaitable[object]], is_done: asyncio.Event, failures: list[grpc.aio.AioRpcError], interval_s: float
) -> int:
    """Makes ``call`` every ``interval_s`` until ``is_done`` is set, adding each failed call's error to
    ``failures``; the number of calls that succeeded."""
    succeeded = 0
    while not is_done.is_set():
        try:
            await call()
            succeeded += 1
        except grpc.aio.AioRpcError as error:
            failures.append(error)
        await asyncio.sleep(interval_s)
    return succeeded


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The JSON lines a Logger wrote to ``stream``."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


@pytest.fixture
async def control_plane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    """A started control plane with short leases (0.9 s) and round_robin everywhere."""
    plane = ControlPlane(tmp_path, "lease_ttl_ms: 900\n")
    await plane.start()
    yield plane
    await plane.stop()


@pytest.fixture
async def cleanups() -> AsyncIterator[list[Callable[[], Awaitable[object]]]]:
    """Closers a test appends (``server.drain``, ``channel.close``, ...), awaited last first after it."""
    pending: list[Callable[[], Awaitable[object]]] = []
    yield pending
    for close in reversed(pending):
        await close()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP trace collector on 127.0.0.1 (otlp_receiver.py), closed after the test."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()
