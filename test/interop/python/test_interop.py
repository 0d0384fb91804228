"""The Python interop program as the other languages' tests drive it: real processes, real mesh."""

from __future__ import annotations

import asyncio
import json

from protomesh_testing import PYTHON, REPO, ControlPlane, Process

INTEROP = str(REPO / "test/interop/python/interop.py")
HOLD = "/protomesh.interop.v1.InteropService/Hold"


async def serve(control_plane: ControlPlane, name: str) -> Process:
    process = await Process.start(
        PYTHON, INTEROP, "serve",
        env={"PORT": "0", "PROTOMESH_CONTROL_PLANE": control_plane.address, "INTEROP_SERVICE": name, "PROTOMESH_LOG_LEVEL": "info"},
    )
    await process.wait_line(lambda line: line.get("msg") == "registered")
    return process


async def call(control_plane: ControlPlane, *args: str) -> tuple[int, list[dict], str]:
    proc = await asyncio.create_subprocess_exec(
        PYTHON, INTEROP, "call", *args, env={"PROTOMESH_CONTROL_PLANE": control_plane.address},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode or 0, [json.loads(line) for line in out.decode().splitlines()], err.decode()


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
        for _ in range(40):  # the control plane's warm-up publishes no endpoints for one lease TTL
            code, [line], _ = await call(
                control_plane, "--target", "interop-py-front", "--method", HOLD, "--request", request,
                "--deadline-ms", "2000", "--request-id", "rid-77",
            )
            if line["codeName"] == "OK":
                break
            await asyncio.sleep(0.1)
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
