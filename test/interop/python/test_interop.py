"""The Python interop program as the other languages' tests drive it: real processes, real mesh."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from protomesh_testing import PYTHON, REPO, ControlPlane, Process
from protomesh_testing.identity import MeshCa, create_mesh_ca, issue_workload_certificate

INTEROP = str(REPO / "test/interop/python/interop.py")
HOLD = "/protomesh.interop.v1.InteropService/Hold"


async def serve(control_plane: ControlPlane, name: str, env: dict[str, str] | None = None) -> Process:
    process = await Process.start(
        PYTHON, INTEROP, "serve",
        env={"PORT": "0", "PROTOMESH_CONTROL_PLANE": control_plane.address, "INTEROP_SERVICE": name, "PROTOMESH_LOG_LEVEL": "info", **(env or {})},
    )
    await process.wait_line(lambda line: line.get("msg") == "registered")
    return process


async def call(control_plane: ControlPlane, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[dict], str]:
    proc = await asyncio.create_subprocess_exec(
        PYTHON, INTEROP, "call", *args, env={"PROTOMESH_CONTROL_PLANE": control_plane.address, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode or 0, [json.loads(line) for line in out.decode().splitlines()], err.decode()


async def call_until_ok(control_plane: ControlPlane, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    """Calls until the call answers OK, or 40 times: the control plane's warm-up publishes no endpoints for one lease TTL."""
    for _ in range(40):
        code, [line], _ = await call(control_plane, *args, env=env)
        if line["codeName"] == "OK":
            break
        await asyncio.sleep(0.1)
    return code, line


async def test_usage_errors_name_the_flag(control_plane: ControlPlane) -> None:
    code, lines, err = await call(control_plane, "--target", "x", "--method", HOLD, "--request", "{}", "--count", "0")
    assert (code, lines) == (2, []) and "--count" in err
    code, _, err = await call(control_plane, "--target", "x", "--method", HOLD, "--request", '{"nope": 1}')
    assert code == 2 and "--request" in err


async def test_relays_by_name_with_the_deadline_and_request_id_and_drains_on_sigterm(control_plane: ControlPlane) -> None:
    front, back = await serve(control_plane, "interop-py-front"), await serve(control_plane, "interop-py-back")
    try:
        await control_plane.wait_healthy("interop-py-front")
        await control_plane.wait_healthy("interop-py-back")
        request = json.dumps({"holdMs": 1, "relayTo": ["interop-py-back"]})
        code, line = await call_until_ok(
            control_plane, "--target", "interop-py-front", "--method", HOLD, "--request", request,
            "--deadline-ms", "2000", "--request-id", "rid-77",
        )
        assert (code, line["codeName"]) == (0, "OK"), line
        front_hop, back_hop = line["response"]["hops"]
        assert (front_hop["language"], back_hop["language"]) == ("python", "python")
        assert front_hop["requestId"] == back_hop["requestId"] == "rid-77"
        assert int(front_hop["remainingMs"]) - int(back_hop["remainingMs"]) >= 10
        assert {"key": "x-request-id", "text": "rid-77"} in line["headers"]

        # SIGTERM while a call is in flight: the call finishes OK, the endpoint leaves, exit 0.
        in_flight = asyncio.ensure_future(
            call(control_plane, "--target", "interop-py-back", "--method", HOLD, "--request", '{"holdMs": 1500}')
        )
        await asyncio.sleep(0.8)
        back.signal()
        code, [held], _ = await in_flight
        assert held["codeName"] == "OK", held
        assert await asyncio.wait_for(back.proc.wait(), 12) == 0
        await control_plane.wait_gone("interop-py-back")
        messages = [l["msg"] for l in back.lines]
        assert messages.index("deregistered") < messages.index("stopped")
    finally:
        await front.stop()
        await back.stop()


def tls_env(ca: MeshCa, service: str, directory: Path) -> dict[str, str]:
    workload = issue_workload_certificate(ca, service, directory)
    return {"PROTOMESH_TLS_CA_FILE": str(ca.cert_file), "PROTOMESH_TLS_CERT_FILE": str(workload.cert_file), "PROTOMESH_TLS_KEY_FILE": str(workload.key_file)}


async def test_relays_by_name_over_mtls_with_a_control_plane_on_mtls_each_hop_seeing_its_callers_spiffe_id(tmp_path: Path) -> None:
    ca = create_mesh_ca(tmp_path / "ca", "protomesh.test")
    # Only interop-py-front may call interop-py-back; anyone of the mesh may call the front.
    (tmp_path / "authz.yaml").write_text(
        "services:\n  interop-py-back:\n    authorization:\n      rules:\n        - { action: allow, callers: [interop-py-front], methods: ['*'] }\n"
    )
    plane = await ControlPlane(tmp_path, "lease_ttl_ms: 900\n", ca=ca).start()
    config = {"PROTOMESH_MESH_CONFIG": str(tmp_path / "authz.yaml")}
    front = await serve(plane, "interop-py-front", tls_env(ca, "interop-py-front", tmp_path / "front"))
    back = await serve(plane, "interop-py-back", {**tls_env(ca, "interop-py-back", tmp_path / "back"), **config})
    caller = tls_env(ca, "interop-caller", tmp_path / "caller")
    try:
        await plane.wait_healthy("interop-py-front")
        await plane.wait_healthy("interop-py-back")
        request = json.dumps({"holdMs": 1, "relayTo": ["interop-py-back"]})
        code, line = await call_until_ok(
            plane, "--target", "interop-py-front", "--method", HOLD, "--request", request, "--deadline-ms", "2000", env=caller
        )
        assert (code, line["codeName"]) == (0, "OK"), line
        assert [hop["language"] for hop in line["response"]["hops"]] == ["python", "python"]
        # The back's policy refuses a direct call from the caller; with TLS a target must be a mesh service name.
        _, [direct], _ = await call(plane, "--target", "interop-py-back", "--method", HOLD, "--request", "{}", "--deadline-ms", "2000", env=caller)
        assert direct["codeName"] == "PERMISSION_DENIED", direct
        assert "spiffe://protomesh.test/service/interop-caller may not call" in direct["details"]
        code, _, err = await call(plane, "--target", "127.0.0.1:1", "--method", HOLD, "--request", "{}", env=caller)
        assert code == 2 and "--target" in err
    finally:
        await front.stop()
        await back.stop()
        await plane.stop()
