"""Prometheus metrics (protomesh_kit/metrics.py) on the admin port (admin.py): real calls through a
real kit server and client, scraped over HTTP as Prometheus does, the exposition checked by
Prometheus' own promtool (Debian's prometheus package, `make promtool`)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import protomesh_kit as kit
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY, CollectorRegistry
from protomesh_testing import ControlPlane, require_promtool, sample, samples, scrape
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc

CATALOG = "shop.catalog.v1.CatalogService"
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
PRODUCTS = {
    "sku-1001": catalog_pb2.Product(id="sku-1001", name="Espresso beans", price_cents=2490, currency="EUR", tags=["coffee"]),
    "sku-1002": catalog_pb2.Product(id="sku-1002", name="Filter coffee", price_cents=1290, currency="EUR", tags=["coffee"]),
    "sku-1003": catalog_pb2.Product(id="sku-1003", name="Green tea", price_cents=890, currency="EUR", tags=["tea"]),
}


class Catalog(catalog_pb2_grpc.CatalogServiceServicer):
    """GetProduct (NOT_FOUND for an unknown id) and SearchProducts (a stream, one product per match)."""

    async def GetProduct(self, request, context):
        product = PRODUCTS.get(request.id)
        if product is None:
            raise kit.MeshError(grpc.StatusCode.NOT_FOUND, f"product {request.id!r} is not in the catalog")
        return catalog_pb2.GetProductResponse(product=product)

    async def SearchProducts(self, request, context):
        for product in PRODUCTS.values():
            if request.query in product.tags:
                yield catalog_pb2.SearchProductsResponse(product=product)


@dataclass
class Metered:
    server: kit.MeshServer
    channel: grpc.aio.Channel
    stub: catalog_pb2_grpc.CatalogServiceStub

    @property
    def admin_port(self) -> int:
        assert self.server.admin_port is not None
        return self.server.admin_port

    async def search(self, query: str) -> int:
        return len([response async for response in self.stub.SearchProducts(catalog_pb2.SearchProductsRequest(query=query), timeout=2)])

    async def get_product(self, product_id: str) -> grpc.StatusCode:
        try:
            await self.stub.GetProduct(catalog_pb2.GetProductRequest(id=product_id), timeout=2)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK


async def start_catalog(registry: CollectorRegistry | None = None) -> Metered:
    """A kit server with the catalog and an admin port on 127.0.0.1:0, and a kit client with metrics,
    both counting into ``registry`` (None: prometheus_client's REGISTRY, the servers' default)."""
    logger = kit.Logger(name="catalog", level="warn", stream=io.StringIO())
    server = kit.create_server("catalog", logger=logger, admin_address="127.0.0.1:0", metrics=registry)
    server.add_service(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Catalog())
    port = await server.listen("127.0.0.1:0")
    channel = kit.dial(f"127.0.0.1:{port}", logger=logger, metrics=True if registry is None else registry)
    return Metered(server, channel, catalog_pb2_grpc.CatalogServiceStub(channel))


@pytest.fixture
async def metered() -> AsyncIterator[Metered]:
    started = await start_catalog(CollectorRegistry())
    yield started
    await started.channel.close()
    await started.server.drain(grace_s=0)


async def test_counts_each_sides_calls_by_method_type_and_code_their_messages_and_handling_time(metered: Metered) -> None:
    for product_id in ("sku-1001", "sku-1002", "sku-1003"):
        assert await metered.get_product(product_id) == grpc.StatusCode.OK
    assert await metered.get_product("sku-none") == grpc.StatusCode.NOT_FOUND
    found = await metered.search("coffee")
    assert found == 2
    # A call whose deadline has passed fails unsent: started and handled, no message out.
    with pytest.raises(grpc.aio.AioRpcError):
        await metered.stub.ListProducts(catalog_pb2.ListProductsRequest(), timeout=0)

    code, headers, body = await scrape(metered.admin_port)
    assert code == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    unary = {"grpc_type": "unary", "grpc_service": CATALOG, "grpc_method": "GetProduct"}
    stream = {"grpc_type": "server_stream", "grpc_service": CATALOG, "grpc_method": "SearchProducts"}
    for side in ("server", "client"):
        assert sample(body, f"grpc_{side}_started_total", unary) == 4, side
        assert sample(body, f"grpc_{side}_handled_total", {**unary, "grpc_code": "OK"}) == 3, side
        assert sample(body, f"grpc_{side}_handled_total", {**unary, "grpc_code": "NotFound"}) == 1, side
        assert sample(body, f"grpc_{side}_handling_seconds_count", unary) == 4, side
        assert sample(body, f"grpc_{side}_handling_seconds_bucket", {**unary, "le": "+Inf"}) == 4, side
        assert sample(body, f"grpc_{side}_handling_seconds_bucket", {**unary, "le": "10.0"}) == 4, side
        assert sample(body, f"grpc_{side}_handled_total", {**stream, "grpc_code": "OK"}) == 1, side
        requests, responses = ("received", "sent") if side == "server" else ("sent", "received")
        assert sample(body, f"grpc_{side}_msg_{requests}_total", stream) == 1, f"{side}: one request"
        assert sample(body, f"grpc_{side}_msg_{responses}_total", stream) == found, f"{side}: every streamed response"
        assert sample(body, f"grpc_{side}_msg_{requests}_total", unary) == 4, f"{side}: every request"
        assert sample(body, f"grpc_{side}_msg_{responses}_total", unary) == 3, f"{side}: a response for each OK call"
    buckets = [s.labels["le"] for s in samples(body, "grpc_server_handling_seconds_bucket", unary)]
    assert buckets == ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"]
    unsent = {"grpc_type": "unary", "grpc_service": CATALOG, "grpc_method": "ListProducts"}
    assert sample(body, "grpc_client_handled_total", {**unsent, "grpc_code": "DeadlineExceeded"}) == 1
    assert sample(body, "grpc_client_msg_sent_total", unsent) == 0
    assert sample(body, "grpc_server_started_total", unsent) is None
    assert sample(body, "process_cpu_seconds_total") is not None, "Python's own, in a registry of the kit's making"


async def test_counts_the_messages_of_the_mesh_services_streams(metered: Metered) -> None:
    health = health_pb2_grpc.HealthStub(metered.channel)
    assert await metered.get_product("sku-1001") == grpc.StatusCode.OK
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=2)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    watch = health.Watch(health_pb2.HealthCheckRequest(service=CATALOG), timeout=5)
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    # A bidi stream through a plain channel (the kit's client observes unary and server-stream calls).
    plain = grpc.aio.insecure_channel(f"127.0.0.1:{metered.server.port}")
    try:
        reflection = reflection_pb2_grpc.ServerReflectionStub(plain).ServerReflectionInfo(timeout=2)
        for _ in range(2):
            await reflection.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            await reflection.read()
        await reflection.done_writing()
        assert await reflection.read() is grpc.aio.EOF
        _, _, body = await scrape(metered.admin_port)
    finally:
        watch.cancel()
        await plain.close()
    check = {"grpc_type": "unary", "grpc_service": HEALTH, "grpc_method": "Check"}
    for side in ("server", "client"):
        assert sample(body, f"grpc_{side}_handled_total", {**check, "grpc_code": "NotFound"}) == 1, side
    watching = {"grpc_type": "server_stream", "grpc_service": HEALTH, "grpc_method": "Watch"}
    # Counted as they pass, while the stream is open: the server wrote SERVING, the client read it.
    assert sample(body, "grpc_server_started_total", watching) == 1
    assert sample(body, "grpc_server_msg_received_total", watching) == 1
    assert sample(body, "grpc_server_msg_sent_total", watching) == 1
    assert sample(body, "grpc_client_msg_received_total", watching) == 1
    bidi = {"grpc_type": "bidi_stream", "grpc_service": REFLECTION, "grpc_method": "ServerReflectionInfo"}
    assert sample(body, "grpc_server_msg_received_total", bidi) == 2
    assert sample(body, "grpc_server_msg_sent_total", bidi) == 2
    assert sample(body, "grpc_server_handled_total", {**bidi, "grpc_code": "OK"}) == 1


async def test_passes_promtool_check_metrics(metered: Metered) -> None:
    promtool = require_promtool()
    assert await metered.get_product("sku-1001") == grpc.StatusCode.OK
    assert await metered.get_product("sku-none") == grpc.StatusCode.NOT_FOUND
    assert await metered.search("tea") == 1
    _, _, body = await scrape(metered.admin_port)
    # Python's own (python_gc_*, python_info, process_*) and prometheus_client's <name>_created
    # gauges are in the exposition too; promtool's lint finds nothing in them.
    checked = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(checked.communicate(body.encode()), 10)
    assert checked.returncode == 0, f"promtool: {output.decode()}"
    assert output.decode().strip() == "", "no lint findings"


async def test_answers_a_path_other_than_metrics_404_and_a_post_405(metered: Metered) -> None:
    assert (await scrape(metered.admin_port, "/"))[0] == 404
    assert (await scrape(metered.admin_port, "/metrics/"))[0] == 404
    code, headers, _ = await scrape(metered.admin_port, "/metrics", "POST")
    assert (code, headers["Allow"]) == (405, "GET, HEAD")
    code, headers, body = await scrape(metered.admin_port, "/metrics", "HEAD")
    assert (code, body) == (200, "")
    assert int(headers["Content-Length"]) > 0 and headers["Content-Type"].startswith("text/plain; version=0.0.4")


async def test_servers_of_one_process_count_into_one_registry_that_each_admin_port_serves() -> None:
    first, second = await start_catalog(), await start_catalog()
    quiet = kit.create_server("quiet", logger=kit.Logger(level="silent"))
    try:
        ok = {"grpc_type": "unary", "grpc_service": CATALOG, "grpc_method": "GetProduct", "grpc_code": "OK"}
        before = REGISTRY.get_sample_value("grpc_server_handled_total", ok) or 0
        assert await first.get_product("sku-1001") == grpc.StatusCode.OK
        assert await second.get_product("sku-1002") == grpc.StatusCode.OK
        for each in (first, second):
            _, _, body = await scrape(each.admin_port)
            assert sample(body, "grpc_server_handled_total", ok) == before + 2
            assert sample(body, "grpc_client_handled_total", ok) is not None
        assert first.server.metrics is second.server.metrics and first.server.metrics.registry is REGISTRY
        assert (quiet.metrics, quiet.admin_port) == (None, None), "no admin address, no metrics"
    finally:
        for each in (first, second):
            await each.channel.close()
            await each.server.drain(grace_s=0)
        await quiet.drain(grace_s=0)
    with pytest.raises(OSError):
        await scrape(first.admin_port)  # the drain closed the admin port



async def test_registers_its_admin_port_with_the_control_plane(control_plane: ControlPlane) -> None:
    server = kit.create_server("kit-admin", logger=kit.Logger(level="silent"), control_plane=control_plane.address, admin_address="127.0.0.1:0")
    server.add_service(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, Catalog())
    try:
        await server.listen("127.0.0.1:0")
        [endpoint] = await control_plane.wait_healthy("kit-admin")
        assert endpoint.endpoint.metadata["admin_port"] == str(server.admin_port)
    finally:
        await server.drain(grace_s=0)
