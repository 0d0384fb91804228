"""The Python kit against real grpc.aio servers and clients, and the real TypeScript control plane."""

from __future__ import annotations

import asyncio
import io
import time

import grpc
import protomesh_kit as kit
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from protomesh.interop.v1 import interop_pb2, interop_pb2_grpc
from protomesh.registry.v1 import registry_pb2
from protomesh_testing import ControlPlane, log_lines

SERVICE = "protomesh.interop.v1.InteropService"


class Relay(interop_pb2_grpc.InteropServiceServicer):
    """Echo answers with its endpoint; Hold relays to ``downstream`` when given, else holds."""

    def __init__(self, downstream: grpc.aio.Channel | None = None) -> None:
        self.downstream = downstream
        self.endpoint = ""
        self.cancelled = asyncio.Event()

    async def Echo(self, request, context):
        return interop_pb2.EchoResponse(payload=request.payload, language="python", endpoint=self.endpoint)

    async def Hold(self, request, context):
        remaining = context.time_remaining()
        hop = interop_pb2.Hop(
            endpoint=self.endpoint,
            remaining_ms=-1 if remaining is None else int(remaining * 1000),
            request_id=kit.current_request_id() or "",
        )
        if self.downstream is not None:
            stub = interop_pb2_grpc.InteropServiceStub(self.downstream)
            response = await stub.Hold(interop_pb2.HoldRequest(hold_ms=request.hold_ms))
            return interop_pb2.HoldResponse(hops=[hop, *response.hops])
        if request.hold_ms == 999:
            raise RuntimeError("a bug with a secret in its message")
        try:
            await asyncio.sleep(request.hold_ms / 1000)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return interop_pb2.HoldResponse(hops=[hop])


async def start(servicer: Relay, name: str = "relay", **options) -> tuple[kit.MeshServer, io.StringIO]:
    stream = io.StringIO()
    server = kit.create_server(name, logger=kit.Logger(name=name, level="debug", stream=stream), **options)
    server.add_service(interop_pb2_grpc.add_InteropServiceServicer_to_server, servicer)
    port = await server.listen("127.0.0.1:0")
    servicer.endpoint = f"127.0.0.1:{port}"
    return server, stream


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("PROTOMESH_CONTROL_PLANE", "nohost"),
        ("PROTOMESH_ZONE", "Zone_A"),
        ("PROTOMESH_ADVERTISE_HOST", "example.com"),
        ("PROTOMESH_LOG_LEVEL", "loud"),
        ("PROTOMESH_ADMIN_ADDRESS", "9464"),
        ("PROTOMESH_ADMIN_ADDRESS", "127.0.0.1:70000"),
        ("PROTOMESH_ADMIN_ADDRESS", "http://127.0.0.1:9464"),
    ],
)
def test_settings_refuse_a_bad_value_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(kit.SettingsError, match=f"^{variable}: ") as caught:
        kit.load_settings({variable: value})
    assert caught.value.variable == variable


def test_settings_defaults_and_values() -> None:
    assert kit.load_settings({}) == kit.Settings()
    settings = kit.load_settings({"PORT": "0", "HOST": "::1", "PROTOMESH_CONTROL_PLANE": "127.0.0.1:50050", "PROTOMESH_ZONE": "zone-a"})
    assert (settings.port, settings.control_plane, settings.zone) == (0, "127.0.0.1:50050", "zone-a")
    assert settings.listen_address(50054) == "[::1]:0"
    assert kit.load_settings({"PROTOMESH_ADMIN_ADDRESS": ""}).admin_address is None
    for admin_address in ("127.0.0.1:9464", "[::1]:0", "localhost:9464"):
        assert kit.load_settings({"PROTOMESH_ADMIN_ADDRESS": admin_address}).admin_address == admin_address


async def test_serves_health_check_watch_and_reflection() -> None:
    server, _ = await start(Relay())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        stream = reflection.ServerReflectionInfo(timeout=2)
        await stream.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        listed = {s.name for s in (await stream.read()).list_services_response.service}
        await stream.done_writing()
        assert {SERVICE, "grpc.health.v1.Health"} <= listed
        # A drain ends the Watch at once (NOT_SERVING, then UNAVAILABLE), not after the grace period.
        started = time.monotonic()
        await server.drain(grace_s=5)
        statuses = []
        with pytest.raises(grpc.aio.AioRpcError):
            while (item := await watch.read()) is not grpc.aio.EOF:
                statuses.append(item.status)
        assert time.monotonic() - started < 2
        assert statuses == [health_pb2.HealthCheckResponse.NOT_SERVING]
        assert await watch.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()
        await server.drain(grace_s=0)


async def test_logs_one_line_per_call_and_echoes_the_request_id() -> None:
    server, stream = await start(Relay())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub = interop_pb2_grpc.InteropServiceStub(channel)
    try:
        call = stub.Echo(interop_pb2.EchoRequest(), metadata=(("x-request-id", "req-1"),), timeout=2)
        await call
        assert ("x-request-id", "req-1") in tuple(await call.initial_metadata())
        made = stub.Echo(interop_pb2.EchoRequest(), timeout=2)
        await made
        made_id = dict(await made.initial_metadata())["x-request-id"]
        failing = stub.Hold(interop_pb2.HoldRequest(hold_ms=999), metadata=(("x-request-id", "req-2"),), timeout=2)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await failing
        # Anything unexpected is INTERNAL with generic details; the request id rides the trailers.
        assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INTERNAL, "internal error")
        assert ("x-request-id", "req-2") in tuple(caught.value.trailing_metadata())
    finally:
        await channel.close()
        await server.drain(grace_s=0)
    calls = [line for line in log_lines(stream) if line["msg"] in ("call", "call failed") and line["service"] == SERVICE]
    assert [(c["method"], c["code"], c["requestId"]) for c in calls] == [
        ("Echo", "OK", "req-1"),
        ("Echo", "OK", made_id),
        ("Hold", "INTERNAL", "req-2"),
    ]
    first = calls[0]
    assert list(first) == ["level", "time", "pid", "name", "server", "component", "service", "method", "code", "durationMs", "peer", "requestId", "msg"]
    assert (first["level"], first["name"], first["server"], first["component"]) == (30, "relay", "relay", "server")
    assert isinstance(first["time"], int) and isinstance(first["durationMs"], float) and isinstance(first["pid"], int)
    assert first["peer"].startswith("127.0.0.1:")
    assert (calls[2]["level"], calls[2]["msg"], calls[2]["details"]) == (50 - 10, "call failed", "internal error")
    failure = next(line for line in log_lines(stream) if line["msg"] == "handler failed")
    assert "secret" in failure["err"]["message"] and failure["level"] == 50


async def test_outbound_calls_inherit_the_budget_the_request_id_and_the_cancellation() -> None:
    back = Relay()
    back_server, _ = await start(back, "back")
    client_stream = io.StringIO()
    downstream = kit.dial(f"127.0.0.1:{back_server.port}", logger=kit.Logger(name="front", stream=client_stream))
    front_server, _ = await start(Relay(downstream), "front")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{front_server.port}")
    stub = interop_pb2_grpc.InteropServiceStub(channel)
    try:
        response = await stub.Hold(interop_pb2.HoldRequest(hold_ms=1), metadata=(("x-request-id", "rid-9"),), timeout=1.5)
        front_hop, back_hop = response.hops
        # grpc-timeout goes in whole units and is rounded up on the way (1.5 s can arrive as 1508 ms).
        assert 1300 < front_hop.remaining_ms <= 1550
        # Less the 10 ms margin and the hop's time; grpc-timeout's rounding on each hop (up to ~10 ms,
        # 1508 for 1500 seen) can hide part of the margin, so the budget is only seen to shrink here.
        assert back_hop.remaining_ms < front_hop.remaining_ms
        assert front_hop.remaining_ms - back_hop.remaining_ms < 200
        assert back_hop.request_id == front_hop.request_id == "rid-9"
        outbound = [line for line in log_lines(client_stream) if line["msg"] == "outbound call"]
        assert [(o["method"], o["code"], o["requestId"], o["component"]) for o in outbound] == [("Hold", "OK", "rid-9", "client")]

        # Cancelling the inbound call cancels the call it made.
        call = stub.Hold(interop_pb2.HoldRequest(hold_ms=5000), timeout=10)
        await asyncio.sleep(0.3)
        call.cancel()
        await asyncio.wait_for(back.cancelled.wait(), 2)

        # A budget already spent (under the margin) fails DEADLINE_EXCEEDED without being sent.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Hold(interop_pb2.HoldRequest(hold_ms=1), timeout=0.005)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        await channel.close()
        await downstream.close()
        await front_server.drain(grace_s=0)
        await back_server.drain(grace_s=0)


async def test_a_call_outside_a_handler_gets_the_default_deadline() -> None:
    back = Relay()
    server, _ = await start(back)
    channel = kit.dial(f"127.0.0.1:{server.port}", default_deadline_s=0.3, logger=kit.Logger(stream=io.StringIO()))
    try:
        response = await interop_pb2_grpc.InteropServiceStub(channel).Hold(interop_pb2.HoldRequest(hold_ms=1))
        assert 200 < response.hops[0].remaining_ms <= 300
    finally:
        await channel.close()
        await server.drain(grace_s=0)


async def test_a_server_stream_call_gets_the_default_deadline_and_a_log_line() -> None:
    server, _ = await start(Relay())
    client_stream = io.StringIO()
    channel = kit.dial(f"127.0.0.1:{server.port}", default_deadline_s=0.3, logger=kit.Logger(stream=client_stream))
    try:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(watch.read(), 5)  # without the kit's deadline it would hold on
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        await channel.close()
        await server.drain(grace_s=0)
    [line] = [line for line in log_lines(client_stream) if line["msg"] == "outbound call failed"]
    assert (line["method"], line["code"]) == ("Watch", "DEADLINE_EXCEEDED")
    assert 250 < line["durationMs"] < 1000


async def test_an_unusable_request_id_of_the_caller_is_replaced_not_passed_on() -> None:
    back = Relay()
    server, _ = await start(back)
    channel = kit.dial(f"127.0.0.1:{server.port}", logger=kit.Logger(stream=io.StringIO()))
    try:
        stub = interop_pb2_grpc.InteropServiceStub(channel)
        response = await stub.Hold(interop_pb2.HoldRequest(hold_ms=1), metadata=(("x-request-id", "has spaces in it"),))
        seen = response.hops[0].request_id
        assert seen != "has spaces in it" and len(seen) == 36
    finally:
        await channel.close()
        await server.drain(grace_s=0)


async def test_registers_renews_and_registers_again_after_a_control_plane_restart(control_plane: ControlPlane) -> None:
    server, stream = await start(Relay(), "kit-lease", control_plane=control_plane.address)
    try:
        [endpoint] = await control_plane.wait_healthy("kit-lease")
        assert (endpoint.endpoint.address, endpoint.endpoint.port) == ("127.0.0.1", server.port)
        assert endpoint.endpoint.health_service_name == SERVICE
        # Leases of 0.9 s: still there after three TTLs means the keep-alives renew it.
        await asyncio.sleep(2.7)
        assert len(await control_plane.endpoints("kit-lease")) == 1
        await control_plane.stop()
        await control_plane.start()
        await control_plane.wait_healthy("kit-lease")
        messages = [line["msg"] for line in log_lines(stream) if line.get("component") == "registry-lease"]
        assert messages[0] == "registered" and messages.count("registered") >= 2
    finally:
        await server.drain(grace_s=0)
    await control_plane.wait_gone("kit-lease")


async def test_dials_a_service_by_name_over_xds_balancing_over_replicas(control_plane: ControlPlane) -> None:
    control_plane.config.write_text("lease_ttl_ms: 900\nservices:\n  kit-echo:\n    lb_policy: round_robin\n")
    await control_plane.stop()
    await control_plane.start()
    replicas = [await start(Relay(), "kit-echo", control_plane=control_plane.address) for _ in range(2)]
    await control_plane.wait_healthy("kit-echo", count=2)
    channel = kit.dial("kit-echo", control_plane=control_plane.address, logger=kit.Logger(stream=io.StringIO()))
    try:
        stub = interop_pb2_grpc.InteropServiceStub(channel)
        seen: set[str] = set()
        deadline = time.monotonic() + 8
        while len(seen) < 2 and time.monotonic() < deadline:
            try:
                seen.add((await stub.Echo(interop_pb2.EchoRequest(), timeout=2)).endpoint)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)  # the control plane's warm-up: no endpoints published yet
        assert seen == {f"127.0.0.1:{server.port}" for server, _ in replicas}
    finally:
        await channel.close()
        for server, _ in replicas:
            await server.drain(grace_s=0)
