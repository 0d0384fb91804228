"""Traces (protomesh_kit/tracing.py): real kit servers and clients on 127.0.0.1 (and the real
TypeScript control plane), their spans exported over OTLP/HTTP to a collector in process
(protomesh_testing.OtlpReceiver) and checked as a collector receives them."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import grpc
import protomesh_kit as kit
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace
from protomesh_testing import ControlPlane, OtlpReceiver, ReceivedSpan, log_lines
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from shop.pricing.v1 import pricing_pb2, pricing_pb2_grpc

CATALOG = "shop.catalog.v1.CatalogService"
PRICING = "shop.pricing.v1.PricingService"
#: How long a GetProduct of SLOW takes: longer than the deadline the test gives it.
SLOW_S = 2.0
SLOW = "sku-slow"
BROKEN = "sku-broken"
PRICES = {"sku-1001": 2490, "sku-1002": 1290}


class Catalog(catalog_pb2_grpc.CatalogServiceServicer):
    """GetProduct (NOT_FOUND for an unknown id, INTERNAL for BROKEN, slow for SLOW) and
    SearchProducts, a response stream written with ``context.write``."""

    async def GetProduct(self, request, context):
        if request.id == SLOW:
            await asyncio.sleep(SLOW_S)
        if request.id == BROKEN:
            raise RuntimeError("a bug")
        if request.id not in PRICES:
            raise kit.MeshError(grpc.StatusCode.NOT_FOUND, f"product {request.id!r} is not in the catalog")
        return catalog_pb2.GetProductResponse(product=catalog_pb2.Product(id=request.id, price_cents=PRICES[request.id]))

    async def SearchProducts(self, request, context):
        for product_id in PRICES:
            await context.write(catalog_pb2.SearchProductsResponse(product=catalog_pb2.Product(id=product_id)))


class Pricing(pricing_pb2_grpc.PricingServiceServicer):
    """QuoteBasket asks the catalog for each line's price, in parallel (as services/pricing does)."""

    def __init__(self, catalog: grpc.aio.Channel) -> None:
        self._catalog = catalog_pb2_grpc.CatalogServiceStub(catalog)
        #: The span current in each QuoteBasket handler, as handler code sees it.
        self.handler_span_ids: list[str] = []

    async def QuoteBasket(self, request, context):
        self.handler_span_ids.append(format(trace.get_current_span().get_span_context().span_id, "016x"))
        answers = await asyncio.gather(
            *(self._catalog.GetProduct(catalog_pb2.GetProductRequest(id=line.product_id)) for line in request.lines)
        )
        total = sum(answer.product.price_cents * line.quantity for answer, line in zip(answers, request.lines))
        return pricing_pb2.QuoteBasketResponse(total_cents=total, currency="EUR")


def traced(receiver: OtlpReceiver, service_name: str, **env: str) -> kit.ProcessTracing:
    """Tracing to ``receiver``, as a program configured by the environment ``env`` gets it."""
    tracing = kit.tracing_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, **env}, service_name)
    assert tracing is not None
    return tracing


async def serve(name: str, add: Callable[[Any, Any], None], servicer: Any, **options: Any) -> kit.MeshServer:
    logger = kit.Logger(name=name, level="debug", stream=io.StringIO())
    server = kit.create_server(name, logger=logger, **options)
    server.add_service(add, servicer)
    await server.listen("127.0.0.1:0")
    return server


def quiet_dial(target: str, **options: Any) -> grpc.aio.Channel:
    return kit.dial(target, logger=kit.Logger(level="warn", stream=io.StringIO()), **options)


def only(spans: list[ReceivedSpan], **fields: Any) -> ReceivedSpan:
    """The one span whose fields have the values given."""
    found = [span for span in spans if all(getattr(span, key) == value for key, value in fields.items())]
    assert len(found) == 1, f"{len(found)} spans with {fields}: {[(s.service, s.kind, s.name) for s in spans]}"
    return found[0]


#: The spans of one traced GetProduct call, as (kind, name) sorted: what is left when nothing else is traced.
ONE_GET_PRODUCT = [("CLIENT", f"{CATALOG}/GetProduct"), ("SERVER", f"{CATALOG}/GetProduct")]


async def close(channel: grpc.aio.Channel, server: kit.MeshServer, tracing: kit.ProcessTracing) -> None:
    """Closes the channel, drains the server, then flushes the spans (a program's order)."""
    await channel.close()
    await server.drain(grace_s=0)
    await tracing.shutdown()


def rpc_attributes(service: str, method: str, code: grpc.StatusCode) -> dict[str, Any]:
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method, "rpc.grpc.status_code": code.value[0]}


async def test_a_calls_server_span_is_the_child_of_its_client_span_in_one_trace(otlp_receiver: OtlpReceiver) -> None:
    server_tracing = traced(otlp_receiver, "catalog")
    client_tracing = traced(otlp_receiver, "shop", OTEL_SERVICE_NAME="storefront")
    server = await serve("catalog", catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Catalog(), tracing=server_tracing)
    channel = quiet_dial(f"127.0.0.1:{server.port}", tracing=client_tracing)
    stub = catalog_pb2_grpc.CatalogServiceStub(channel)
    codes = {}
    try:
        for product_id, timeout in (("sku-1001", 2.0), ("sku-none", 2.0), (BROKEN, 2.0), (SLOW, 0.2)):
            try:
                await stub.GetProduct(catalog_pb2.GetProductRequest(id=product_id), timeout=timeout)
                codes[product_id] = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as error:
                codes[product_id] = error.code()
        found = [response.product.id async for response in stub.SearchProducts(catalog_pb2.SearchProductsRequest(), timeout=2)]
    finally:
        await channel.close()
        await server.drain(grace_s=SLOW_S)
        await client_tracing.shutdown()
        await server_tracing.shutdown()
    assert codes == {
        "sku-1001": grpc.StatusCode.OK,
        "sku-none": grpc.StatusCode.NOT_FOUND,
        BROKEN: grpc.StatusCode.INTERNAL,
        SLOW: grpc.StatusCode.DEADLINE_EXCEEDED,
    }
    assert found == list(PRICES)
    spans = otlp_receiver.spans()
    assert len(spans) == 10, [(s.kind, s.name) for s in spans]
    assert {span.service for span in spans if span.kind == "CLIENT"} == {"storefront"}, "OTEL_SERVICE_NAME wins"
    assert {span.service for span in spans if span.kind == "SERVER"} == {"catalog"}
    for code, is_failure in (
        (grpc.StatusCode.OK, False),
        (grpc.StatusCode.NOT_FOUND, False),
        (grpc.StatusCode.INTERNAL, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, True),
    ):
        attributes = rpc_attributes(CATALOG, "GetProduct", code)
        client = only(spans, kind="CLIENT", attributes=attributes)
        server_span = only(spans, kind="SERVER", attributes=attributes)
        assert client.name == server_span.name == f"{CATALOG}/GetProduct"
        assert client.parent_span_id == "", "a call made outside any handler starts a trace"
        assert (server_span.trace_id, server_span.parent_span_id) == (client.trace_id, client.span_id)
        status = "STATUS_CODE_ERROR" if is_failure else "STATUS_CODE_UNSET"
        assert (client.status, server_span.status) == (status, status), code
    stream = rpc_attributes(CATALOG, "SearchProducts", grpc.StatusCode.OK)
    client = only(spans, kind="CLIENT", attributes=stream)
    assert only(spans, kind="SERVER", attributes=stream).parent_span_id == client.span_id
    assert len({span.trace_id for span in spans}) == 5, "one trace per call"


async def test_a_call_made_while_handling_one_is_the_child_of_its_server_span(otlp_receiver: OtlpReceiver) -> None:
    catalog_tracing, pricing_tracing, shop_tracing = (traced(otlp_receiver, name) for name in ("catalog", "pricing", "shop"))
    catalog = await serve("catalog", catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Catalog(), tracing=catalog_tracing)
    to_catalog = quiet_dial(f"127.0.0.1:{catalog.port}", tracing=pricing_tracing)
    pricing_servicer = Pricing(to_catalog)
    pricing = await serve("pricing", pricing_pb2_grpc.add_PricingServiceServicer_to_server, pricing_servicer, tracing=pricing_tracing)
    to_pricing = quiet_dial(f"127.0.0.1:{pricing.port}", tracing=shop_tracing)
    try:
        lines = [pricing_pb2.BasketLine(product_id=product_id, quantity=2) for product_id in PRICES]
        answer = await pricing_pb2_grpc.PricingServiceStub(to_pricing).QuoteBasket(
            pricing_pb2.QuoteBasketRequest(customer_id="c-1", lines=lines), timeout=3
        )
    finally:
        await to_pricing.close()
        await pricing.drain(grace_s=0)
        await to_catalog.close()
        await catalog.drain(grace_s=0)
        for tracing in (shop_tracing, pricing_tracing, catalog_tracing):
            await tracing.shutdown()
    assert answer.total_cents == 2 * sum(PRICES.values())
    spans = otlp_receiver.spans()
    quote = only(spans, service="shop", kind="CLIENT", name=f"{PRICING}/QuoteBasket")
    handling = only(spans, service="pricing", kind="SERVER", name=f"{PRICING}/QuoteBasket")
    assert handling.parent_span_id == quote.span_id
    assert pricing_servicer.handler_span_ids == [handling.span_id], "the server span is current in the handler"
    outbound = [span for span in spans if span.service == "pricing" and span.kind == "CLIENT"]
    assert [span.name for span in outbound] == [f"{CATALOG}/GetProduct"] * 2
    assert {span.parent_span_id for span in outbound} == {handling.span_id}, "children of the server span, across gather's tasks"
    served = [span for span in spans if span.service == "catalog" and span.kind == "SERVER"]
    assert sorted(span.parent_span_id for span in served) == sorted(span.span_id for span in outbound)
    assert {span.trace_id for span in spans} == {quote.trace_id}
    assert len(spans) == 6


async def test_health_checks_and_reflection_get_no_span(otlp_receiver: OtlpReceiver) -> None:
    tracing = traced(otlp_receiver, "catalog")
    server = await serve("catalog", catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Catalog(), tracing=tracing)
    channel = quiet_dial(f"127.0.0.1:{server.port}", tracing=tracing)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=CATALOG), timeout=2)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=CATALOG), timeout=2)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(timeout=2)
        await reflection.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        assert CATALOG in {s.name for s in (await reflection.read()).list_services_response.service}
        await reflection.done_writing()
        await catalog_pb2_grpc.CatalogServiceStub(channel).GetProduct(catalog_pb2.GetProductRequest(id="sku-1001"), timeout=2)
    finally:
        await close(channel, server, tracing)
    assert sorted((span.kind, span.name) for span in otlp_receiver.spans()) == ONE_GET_PRODUCT


async def test_the_control_planes_probes_and_the_kits_registry_calls_get_no_span(
    control_plane: ControlPlane, otlp_receiver: OtlpReceiver
) -> None:
    tracing = traced(otlp_receiver, "catalog")
    stream = io.StringIO()
    server = kit.create_server(
        "catalog", logger=kit.Logger(name="catalog", level="debug", stream=stream), control_plane=control_plane.address, tracing=tracing
    )
    server.add_service(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Catalog())
    await server.listen("127.0.0.1:0")
    # By name over xDS: the channel's xDS stream to the control plane is gRPC core's, outside the observer.
    channel = quiet_dial("catalog", control_plane=control_plane.address, tracing=tracing)
    try:
        await control_plane.wait_healthy("catalog")

        async def probed_twice() -> None:
            # Probes come every second and keep-alives every 0.3 s (0.9 s leases): two probes, several renewals.
            while sum(1 for line in log_lines(stream) if line.get("service") == "grpc.health.v1.Health") < 2:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(probed_twice(), 10)
        await catalog_pb2_grpc.CatalogServiceStub(channel).GetProduct(catalog_pb2.GetProductRequest(id="sku-1001"), timeout=5)
    finally:
        await close(channel, server, tracing)
    assert sorted((span.kind, span.name) for span in otlp_receiver.spans()) == ONE_GET_PRODUCT


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ""},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces", "OTEL_TRACES_EXPORTER": "console"},
    ],
)
def test_tracing_is_off_without_an_endpoint_when_disabled_or_with_no_otlp_exporter(env: dict[str, str]) -> None:
    assert kit.tracing_from_environment(env, "catalog") is None


async def test_without_tracing_no_span_is_made_and_no_traceparent_is_sent() -> None:
    seen: list[tuple[dict[str, str], bool]] = []

    class Looking(catalog_pb2_grpc.CatalogServiceServicer):
        async def GetProduct(self, request, context):
            metadata = {key: value for key, value in context.invocation_metadata() or ()}
            seen.append((metadata, trace.get_current_span().get_span_context().is_valid))
            return catalog_pb2.GetProductResponse()

    server = await serve("catalog", catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Looking())
    channel = quiet_dial(f"127.0.0.1:{server.port}")
    try:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        await stub.GetProduct(catalog_pb2.GetProductRequest(id="sku-1001"), timeout=2)
        # A caller's traceparent is passed to the handler as it is, but no span is made of it.
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        await stub.GetProduct(catalog_pb2.GetProductRequest(id="sku-1001"), timeout=2, metadata=(("traceparent", parent),))
    finally:
        await channel.close()
        await server.drain(grace_s=0)
    [(first, first_has_span), (second, second_has_span)] = seen
    assert "traceparent" not in first
    assert second["traceparent"] == parent
    assert (first_has_span, second_has_span) == (False, False)


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "{url}/v1/traces", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "{url}/"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "{url}", "OTEL_TRACES_EXPORTER": "console, otlp"},
    ],
)
async def test_exports_to_the_traces_endpoint_else_the_base_url_plus_v1_traces(otlp_receiver: OtlpReceiver, env: dict[str, str]) -> None:
    tracing = kit.tracing_from_environment({key: value.format(url=otlp_receiver.url) for key, value in env.items()}, "catalog")
    assert tracing is not None
    tracing.tracer.start_span("one").end()
    await tracing.shutdown()
    assert [(span.service, span.name) for span in otlp_receiver.spans()] == [("catalog", "one")]
    assert otlp_receiver.refused == []


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG"),
    ],
)
def test_a_bad_sampler_fails_at_start_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(kit.SettingsError, match=f"^{variable}: ") as raised:
        kit.tracing_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", **env}, "catalog")
    assert raised.value.variable == variable


@pytest.mark.parametrize(
    ("env", "description"),
    [
        ({}, "ParentBased{root:AlwaysOnSampler,"),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, "AlwaysOffSampler"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio"}, "TraceIdRatioBased{1.0}"),
        ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}, "ParentBased{root:TraceIdRatioBased{0.1},"),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, "ParentBased{root:AlwaysOffSampler,"),
    ],
)
def test_the_sampler_is_the_one_the_specification_names(env: dict[str, str], description: str) -> None:
    assert kit.sampler_from_environment(env).get_description().startswith(description)
