"""pricing against the real TypeScript catalog (and control plane), in process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import sys
import time
from pathlib import Path

import grpc
import protomesh_kit as kit
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from protomesh_testing import PYTHON, ControlPlane, OtlpReceiver, Process, free_port, sample, scrape, start_catalog
from protomesh_testing.identity import create_mesh_ca, issue_workload_certificate, tls_files
from shop.pricing.v1 import pricing_pb2, pricing_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pricing_service import PricingService, quote  # noqa: E402

MAIN = str(Path(__file__).resolve().parents[1] / "main.py")
# The catalog's seed (services/catalog/seed.ts): sku-1001 2490, sku-1002 1290 cents.
ESPRESSO, FILTER = "sku-1001", "sku-1002"


def test_quote_arithmetic_in_cents() -> None:
    small = quote([(FILTER, 4, 1290)], now_ms=0)
    assert (small.subtotal_cents, small.discount_cents, small.total_cents) == (5160, 0, 5160)
    # 5 units: 10 % off the line, rounded down (999 * 5 = 4995 → 499); under 100.00, no basket discount.
    bulk = quote([("x", 5, 999)], now_ms=0)
    assert (bulk.lines[0].discount_cents, bulk.lines[0].line_total_cents, bulk.total_cents) == (499, 4496, 4496)
    # 100.00 exactly after line discounts: 5 % off the basket.
    threshold = quote([("x", 1, 10_000)], now_ms=0)
    assert (threshold.discount_cents, threshold.total_cents) == (500, 9500)
    just_under = quote([("x", 1, 9_999)], now_ms=0)
    assert just_under.discount_cents == 0
    both = quote([(ESPRESSO, 5, 2490), (FILTER, 1, 1290)], now_ms=1_000)
    # 12450 - 1245 = 11205; + 1290 = 12495 ≥ 10000 → 5 % = 624 (rounded down); 1245 + 624 = 1869.
    assert (both.subtotal_cents, both.discount_cents, both.total_cents) == (13740, 1869, 11871)
    assert (both.currency, both.valid_until_ms) == ("EUR", 1_000 + 15 * 60 * 1000)


@pytest.fixture
async def catalog():
    process, port = await start_catalog()
    yield port
    await process.stop()


async def pricing_with(catalog_target: str, **dial_options):
    stream = io.StringIO()
    logger = kit.Logger(name="pricing", stream=stream)
    channel = kit.dial(catalog_target, logger=logger, **dial_options)
    server = kit.create_server("pricing", logger=logger)
    server.add_service(pricing_pb2_grpc.add_PricingServiceServicer_to_server, PricingService(channel))
    port = await server.listen("127.0.0.1:0")
    client = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    async def close() -> None:
        await client.close()
        await server.drain(grace_s=0)
        await channel.close()

    return pricing_pb2_grpc.PricingServiceStub(client), close


def basket(*lines: tuple[str, int], customer: str = "c-1", currency: str = "") -> pricing_pb2.QuoteBasketRequest:
    return pricing_pb2.QuoteBasketRequest(
        customer_id=customer, currency=currency, lines=[pricing_pb2.BasketLine(product_id=p, quantity=q) for p, q in lines]
    )


async def test_quotes_a_basket_with_catalog_prices(catalog: int) -> None:
    stub, close = await pricing_with(f"127.0.0.1:{catalog}")
    try:
        before = int(time.time() * 1000)
        answer = await stub.QuoteBasket(basket((ESPRESSO, 5), (FILTER, 1), (ESPRESSO, 1), currency="EUR"), timeout=3)
        assert [(line.product_id, line.unit_price_cents, line.discount_cents) for line in answer.lines] == [
            (ESPRESSO, 2490, 1245),
            (FILTER, 1290, 0),
            (ESPRESSO, 2490, 0),
        ]
        # 11205 + 1290 + 2490 = 14985 → 5 % = 749.
        assert (answer.subtotal_cents, answer.discount_cents, answer.total_cents) == (16230, 1245 + 749, 16230 - 1994)
        assert answer.currency == "EUR"
        assert before + 15 * 60 * 1000 <= answer.valid_until_ms <= int(time.time() * 1000) + 15 * 60 * 1000
    finally:
        await close()


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (basket((ESPRESSO, 1), customer=""), "customer_id"),
        (basket(), "lines"),
        (basket(*[(ESPRESSO, 1)] * 101), "lines"),
        (basket((ESPRESSO, 1), ("", 1)), "lines[1].product_id"),
        (basket((ESPRESSO, 0)), "lines[0].quantity"),
        (basket((ESPRESSO, 1001)), "lines[0].quantity"),
        (basket((ESPRESSO, 1), currency="USD"), "currency"),
    ],
)
async def test_refuses_a_bad_request_naming_the_field(catalog: int, request_, field: str) -> None:
    stub, close = await pricing_with(f"127.0.0.1:{catalog}")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.QuoteBasket(request_, timeout=3)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(f"{field}: ")
    finally:
        await close()


async def test_an_unknown_product_is_not_found_naming_its_line(catalog: int) -> None:
    stub, close = await pricing_with(f"127.0.0.1:{catalog}")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.QuoteBasket(basket((ESPRESSO, 1), ("sku-nope", 2)), timeout=3)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert caught.value.details().startswith("lines[1].product_id: ")
        assert "Traceback" not in caught.value.details()
    finally:
        await close()


async def test_a_catalog_that_is_down_is_a_clear_status_within_the_deadline() -> None:
    stub, close = await pricing_with(f"127.0.0.1:{free_port()}")
    try:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.QuoteBasket(basket((ESPRESSO, 1)), timeout=1)
        assert time.monotonic() - started < 1.2
        assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        assert caught.value.details().startswith("catalog: ") or caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        await close()


async def test_finds_the_catalog_by_name_through_the_mesh(control_plane: ControlPlane) -> None:
    process, _ = await start_catalog(control_plane.address)
    await control_plane.wait_healthy("catalog")
    stub, close = await pricing_with("catalog", control_plane=control_plane.address)
    try:
        deadline = time.monotonic() + 8
        while True:
            try:
                answer = await stub.QuoteBasket(basket((FILTER, 2)), timeout=2)
                break
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)  # the control plane's warm-up
        assert answer.total_cents == 2580
    finally:
        await close()
        await process.stop()



async def test_main_serves_its_calls_and_the_catalogs_on_the_admin_port(catalog: int) -> None:
    port, admin_port = free_port(), free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "PROTOMESH_CONTROL_PLANE": "",
        "PROTOMESH_ADMIN_ADDRESS": f"127.0.0.1:{admin_port}",
        "CATALOG_TARGET": f"127.0.0.1:{catalog}",
    }
    pricing = await Process.start(PYTHON, MAIN, env=env)
    client = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await pricing.wait_line(lambda line: line.get("msg") == "listening")
        stub = pricing_pb2_grpc.PricingServiceStub(client)
        await stub.QuoteBasket(basket((ESPRESSO, 1), (FILTER, 2), (ESPRESSO, 3)), timeout=3)
        code, _, body = await scrape(admin_port)
    finally:
        await client.close()
        exit_code = await pricing.stop()
    assert exit_code == 0
    assert code == 200
    quote_basket = {"grpc_type": "unary", "grpc_service": "shop.pricing.v1.PricingService", "grpc_method": "QuoteBasket"}
    assert sample(body, "grpc_server_handled_total", {**quote_basket, "grpc_code": "OK"}) == 1
    get_product = {"grpc_type": "unary", "grpc_service": "shop.catalog.v1.CatalogService", "grpc_method": "GetProduct"}
    assert sample(body, "grpc_client_handled_total", {**get_product, "grpc_code": "OK"}) == 2, "one call per distinct product"


async def test_main_exports_its_spans_to_the_otlp_endpoint_when_it_drains(catalog: int, otlp_receiver: OtlpReceiver) -> None:
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "PROTOMESH_CONTROL_PLANE": "",
        "CATALOG_TARGET": f"127.0.0.1:{catalog}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.url,
        # A minute between batches: the spans can only arrive with the flush after the drain.
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
    }
    pricing = await Process.start(PYTHON, MAIN, env=env)
    client = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    trace_id, parent_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    try:
        await pricing.wait_line(lambda line: line.get("msg") == "listening")
        stub = pricing_pb2_grpc.PricingServiceStub(client)
        traceparent = (("traceparent", f"00-{trace_id}-{parent_id}-01"),)
        await stub.QuoteBasket(basket((ESPRESSO, 1), (FILTER, 2), (ESPRESSO, 3)), timeout=3, metadata=traceparent)
        assert otlp_receiver.spans() == [], "batched, not yet sent"
    finally:
        await client.close()
        exit_code = await pricing.stop()
    assert exit_code == 0
    spans = otlp_receiver.spans()
    assert {span.service for span in spans} == {"pricing"}
    [server] = [span for span in spans if span.kind == "SERVER"]
    assert (server.name, server.trace_id, server.parent_span_id) == ("shop.pricing.v1.PricingService/QuoteBasket", trace_id, parent_id)
    assert server.attributes["rpc.grpc.status_code"] == 0
    outbound = [span for span in spans if span.kind == "CLIENT"]
    assert [span.name for span in outbound] == ["shop.catalog.v1.CatalogService/GetProduct"] * 2, "one call per distinct product"
    assert {(span.trace_id, span.parent_span_id) for span in outbound} == {(trace_id, server.span_id)}


async def start_up_error(env: dict[str, str]) -> str:
    """The message pricing logs when it refuses to start with ``env``, having asserted that it exits 1."""
    pricing = await Process.start(PYTHON, MAIN, env={"PORT": str(free_port()), **env})
    try:
        line = await pricing.wait_line(lambda line: line.get("msg") == "pricing failed to start")
        assert await asyncio.wait_for(pricing.proc.wait(), 10) == 1
    finally:
        await pricing.stop()
    return line["err"]["message"]


async def test_main_refuses_a_sampler_it_does_not_know() -> None:
    message = await start_up_error({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER": "sometimes"})
    assert message.startswith("OTEL_TRACES_SAMPLER: must be always_on, always_off")


async def test_main_refuses_an_admin_address_that_is_not_host_port() -> None:
    message = await start_up_error({"PROTOMESH_ADMIN_ADDRESS": "9464"})
    assert message.startswith("PROTOMESH_ADMIN_ADDRESS: must be host:port")


async def test_main_refuses_a_health_address_that_is_not_host_port() -> None:
    message = await start_up_error({"PROTOMESH_HEALTH_ADDRESS": "8086"})
    assert message == "PROTOMESH_HEALTH_ADDRESS: must be host:port, e.g. 127.0.0.1:8086, got '8086'"


async def test_main_with_tls_answers_plaintext_health_checks_on_its_health_address(tmp_path: Path) -> None:
    ca = create_mesh_ca(tmp_path / "ca", "protomesh.test")
    workload = issue_workload_certificate(ca, "pricing", tmp_path / "pricing")
    health_port = free_port()
    env = {
        "PORT": str(free_port()),
        "HOST": "127.0.0.1",
        "PROTOMESH_CONTROL_PLANE": "",
        "PROTOMESH_TLS_CA_FILE": str(ca.cert_file),
        "PROTOMESH_TLS_CERT_FILE": str(workload.cert_file),
        "PROTOMESH_TLS_KEY_FILE": str(workload.key_file),
        "PROTOMESH_HEALTH_ADDRESS": f"127.0.0.1:{health_port}",
        "CATALOG_TARGET": f"127.0.0.1:{free_port()}",
    }
    pricing = await Process.start(PYTHON, MAIN, env=env)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{health_port}")
    try:
        listening = await pricing.wait_line(lambda line: line.get("msg") == "listening")
        assert (listening["tls"], listening["healthPort"]) == (True, health_port)
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="shop.pricing.v1.PricingService"), timeout=3)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pricing_pb2_grpc.PricingServiceStub(channel).QuoteBasket(basket((ESPRESSO, 1)), timeout=3)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await channel.close()
        exit_code = await pricing.stop()
    assert exit_code == 0


PRICING_POLICY = """services:
  pricing:
    authorization:
      rules:
        - { action: allow, callers: [orders], methods: [QuoteBasket] }
"""


async def test_main_with_tls_and_a_mesh_config_authorizes_its_callers_by_the_files_policy(tmp_path: Path) -> None:
    ca = create_mesh_ca(tmp_path / "ca", "protomesh.test")
    certs = {service: issue_workload_certificate(ca, service, tmp_path / service) for service in ("pricing", "orders", "billing")}
    config = tmp_path / "mesh.yaml"
    config.write_text(PRICING_POLICY)
    port = free_port()
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "PROTOMESH_CONTROL_PLANE": "",
        "PROTOMESH_TLS_CA_FILE": str(ca.cert_file),
        "PROTOMESH_TLS_CERT_FILE": str(certs["pricing"].cert_file),
        "PROTOMESH_TLS_KEY_FILE": str(certs["pricing"].key_file),
        "PROTOMESH_MESH_CONFIG": str(config),
        # Nothing listens there: a call the policy lets through reaches the handler and fails on the catalog.
        "CATALOG_TARGET": f"127.0.0.1:{free_port()}",
    }
    pricing = await Process.start(PYTHON, MAIN, env=env)
    channels = [
        kit.dial("pricing", fallback_target=f"127.0.0.1:{port}", logger=kit.Logger(stream=io.StringIO()), tls=tls_files(ca, certs[caller]))
        for caller in ("orders", "billing")
    ]
    try:
        await pricing.wait_line(lambda line: line.get("msg") == "listening")
        orders, billing = (pricing_pb2_grpc.PricingServiceStub(channel) for channel in channels)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await billing.QuoteBasket(basket((ESPRESSO, 1)), timeout=3)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert refused.value.details() == "spiffe://protomesh.test/service/billing may not call /shop.pricing.v1.PricingService/QuoteBasket (no rule allows it)"
        with pytest.raises(grpc.aio.AioRpcError) as allowed:
            await orders.QuoteBasket(basket((ESPRESSO, 1)), timeout=3)
        assert allowed.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), allowed.value.details()
    finally:
        for channel in channels:
            await channel.close()
        exit_code = await pricing.stop()
    assert exit_code == 0
    # The server's line of each call: the refusal is the caller's doing ("call"), the catalog's absence is not ("call failed").
    served = {line["code"]: line["msg"] for line in pricing.lines if line.get("component") == "server" and line.get("method") == "QuoteBasket"}
    assert served == {"PERMISSION_DENIED": "call", allowed.value.code().name: "call failed"}


async def test_main_refuses_a_bad_authorization_block_naming_the_field(tmp_path: Path) -> None:
    ca = create_mesh_ca(tmp_path / "ca", "protomesh.test")
    workload = issue_workload_certificate(ca, "pricing", tmp_path / "pricing")
    config = tmp_path / "mesh.yaml"
    config.write_text(PRICING_POLICY.replace("action: allow", "action: permit"))
    env = {
        "PROTOMESH_CONTROL_PLANE": "",
        "PROTOMESH_TLS_CA_FILE": str(ca.cert_file),
        "PROTOMESH_TLS_CERT_FILE": str(workload.cert_file),
        "PROTOMESH_TLS_KEY_FILE": str(workload.key_file),
        "PROTOMESH_MESH_CONFIG": str(config),
    }
    assert "services.pricing.authorization.rules[0].action: must be allow or deny" in await start_up_error(env)


async def test_main_refuses_a_mesh_config_that_is_not_text_and_a_key_file_that_is_not_a_key_with_one_line(tmp_path: Path) -> None:
    ca = create_mesh_ca(tmp_path / "ca", "protomesh.test")
    workload = issue_workload_certificate(ca, "pricing", tmp_path / "pricing")
    binary = tmp_path / "mesh.yaml"
    binary.write_bytes(b"\xff\xfe services: {}")
    not_a_key = tmp_path / "not-a.key"
    not_a_key.write_text("not a key\n")
    cases = [
        ({"PROTOMESH_MESH_CONFIG": str(binary)}, "utf-8"),
        ({"PROTOMESH_TLS_KEY_FILE": str(not_a_key)}, ""),
    ]
    for extra, fragment in cases:
        env = {
            "PROTOMESH_CONTROL_PLANE": "",
            "PROTOMESH_TLS_CA_FILE": str(ca.cert_file),
            "PROTOMESH_TLS_CERT_FILE": str(workload.cert_file),
            "PROTOMESH_TLS_KEY_FILE": str(workload.key_file),
            **extra,
        }
        message = await start_up_error(env)
        assert fragment in message.lower(), message
