"""Per-method authorization (protomesh_kit/authorization.py): the shared cases every kit decides, real
servers over mTLS with certificates from the openssl CLI (protomesh_testing/identity.py), and the
config's errors naming the field (as test/mesh/authorization.test.ts)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import grpc
import protomesh_kit as kit
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from protomesh_testing import REPO
from protomesh_testing.identity import (
    MeshCa,
    WorkloadCertificate,
    create_mesh_ca,
    issue_certificate_without_spiffe_id,
    issue_workload_certificate,
    tls_files,
)
from shop.catalog.v1 import catalog_pb2, catalog_pb2_grpc

TRUST_DOMAIN = "protomesh.test"
DEADLINE_S = 10.0
CATALOG = "/shop.catalog.v1.CatalogService"
GET_PRODUCT = f"{CATALOG}/GetProduct"
LIST_PRODUCTS = f"{CATALOG}/ListProducts"
SEARCH_PRODUCTS = f"{CATALOG}/SearchProducts"
CASES_FILE = REPO / "test" / "fixtures" / "authorization-cases.yaml"

#: orders and gateway may read and search products; gateway may not list them (deny wins); nobody else may call.
POLICY_BLOCK: dict[str, Any] = {
    "rules": [
        {"action": "allow", "callers": ["orders", "gateway"], "methods": ["GetProduct", LIST_PRODUCTS, "SearchProducts"]},
        {"action": "deny", "callers": ["gateway"], "methods": ["ListProducts"]},
    ]
}


def spiffe(service: str, trust_domain: str = TRUST_DOMAIN) -> str:
    return f"spiffe://{trust_domain}/service/{service}"


class Pki:
    def __init__(self, root: Path) -> None:
        self.ca = create_mesh_ca(root / "ca", TRUST_DOMAIN)
        self.certs = {service: issue_workload_certificate(self.ca, service, root / service) for service in ("catalog", "orders", "gateway", "billing")}
        self.anonymous = issue_certificate_without_spiffe_id(self.ca, "anonymous", root / "anonymous")

    def files(self, workload: WorkloadCertificate, ca: MeshCa | None = None) -> kit.TlsFiles:
        return tls_files(ca or self.ca, workload)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("authz"))


class CountingCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    """GetProduct, ListProducts and SearchProducts (a stream) count the calls that reach them."""

    def __init__(self) -> None:
        self.handled = {"GetProduct": 0, "ListProducts": 0, "SearchProducts": 0}

    async def GetProduct(self, request, context):
        self.handled["GetProduct"] += 1
        return catalog_pb2.GetProductResponse(product=catalog_pb2.Product(id=request.id, name="authorized"))

    async def ListProducts(self, request, context):
        self.handled["ListProducts"] += 1
        return catalog_pb2.ListProductsResponse()

    async def SearchProducts(self, request, context):
        self.handled["SearchProducts"] += 1
        yield catalog_pb2.SearchProductsResponse(product=catalog_pb2.Product(id="sku-1"))


class CountingInterceptor(grpc.aio.ServerInterceptor):
    """An application interceptor that counts the calls whose handler it wrapped ran."""

    def __init__(self) -> None:
        self.ran = 0

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behaviour = handler.unary_unary

        async def counted(request, context):
            self.ran += 1
            return await behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            counted, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


class Catalog:
    def __init__(self, server: kit.MeshServer, port: int, servicer: CountingCatalog, interceptor: CountingInterceptor, log: io.StringIO) -> None:
        self.server, self.port, self.servicer, self.interceptor, self.log = server, port, servicer, interceptor, log

    @property
    def handled(self) -> dict[str, int]:
        return {**self.servicer.handled, "intercepted": self.interceptor.ran}


async def catalog(pki: Pki, cleanups: list, authorization: Any = POLICY_BLOCK) -> Catalog:
    """A catalog over mTLS with ``authorization``, counting what reaches its handlers and its application interceptor."""
    servicer, interceptor, log = CountingCatalog(), CountingInterceptor(), io.StringIO()
    server = kit.create_server(
        "catalog",
        logger=kit.Logger(name="catalog", stream=log),
        tls=pki.files(pki.certs["catalog"]),
        authorization=authorization,
        interceptors=[interceptor],
    )
    server.add_service(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, servicer)
    port = await server.listen("127.0.0.1:0")
    cleanups.append(lambda: server.drain(0))
    return Catalog(server, port, servicer, interceptor, log)


def client_of(cleanups: list, port: int, files: kit.TlsFiles) -> catalog_pb2_grpc.CatalogServiceStub:
    channel = kit.dial("catalog", fallback_target=f"127.0.0.1:{port}", logger=kit.Logger(stream=io.StringIO()), tls=files)
    cleanups.append(channel.close)
    return catalog_pb2_grpc.CatalogServiceStub(channel)


async def get_product(client: catalog_pb2_grpc.CatalogServiceStub) -> catalog_pb2.GetProductResponse:
    return await client.GetProduct(catalog_pb2.GetProductRequest(id="sku-1"), timeout=DEADLINE_S)


async def list_products(client: catalog_pb2_grpc.CatalogServiceStub) -> catalog_pb2.ListProductsResponse:
    return await client.ListProducts(catalog_pb2.ListProductsRequest(page_size=10), timeout=DEADLINE_S)


async def search_products(client: catalog_pb2_grpc.CatalogServiceStub) -> list[catalog_pb2.SearchProductsResponse]:
    return [response async for response in client.SearchProducts(catalog_pb2.SearchProductsRequest(query="a"), timeout=DEADLINE_S)]


async def refusal_of(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return failure.value


# --- over mTLS -------------------------------------------------------------------------------


async def test_lets_orders_call_the_methods_an_allow_rule_names(pki: Pki, cleanups: list) -> None:
    served = await catalog(pki, cleanups)
    orders = client_of(cleanups, served.port, pki.files(pki.certs["orders"]))
    assert (await get_product(orders)).product.name == "authorized"
    await list_products(orders)
    assert len(await search_products(orders)) == 1
    assert served.handled == {"GetProduct": 1, "ListProducts": 1, "SearchProducts": 1, "intercepted": 2}


async def test_refuses_gateway_list_products_with_permission_denied_when_a_deny_rule_matches_though_an_allow_rule_does_too(
    pki: Pki, cleanups: list
) -> None:
    served = await catalog(pki, cleanups)
    gateway = client_of(cleanups, served.port, pki.files(pki.certs["gateway"]))
    refused = await refusal_of(list_products(gateway))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.details() == f"{spiffe('gateway')} may not call {LIST_PRODUCTS} (denied by rules[1])"
    await get_product(gateway)  # still allowed what no deny rule names
    # Neither the handler nor the application interceptor's handler ran for the refused call.
    assert served.handled == {"GetProduct": 1, "ListProducts": 0, "SearchProducts": 0, "intercepted": 1}


async def test_refuses_a_caller_no_rule_names_with_permission_denied_unary_and_stream_logged_on_the_calls_line(pki: Pki, cleanups: list) -> None:
    served = await catalog(pki, cleanups)
    billing = client_of(cleanups, served.port, pki.files(pki.certs["billing"]))
    refused = await refusal_of(get_product(billing))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.details() == f"{spiffe('billing')} may not call {GET_PRODUCT} (no rule allows it)"
    streamed = await refusal_of(search_products(billing))
    assert streamed.code() == grpc.StatusCode.PERMISSION_DENIED
    assert streamed.details() == f"{spiffe('billing')} may not call {SEARCH_PRODUCTS} (no rule allows it)"
    assert served.handled == {"GetProduct": 0, "ListProducts": 0, "SearchProducts": 0, "intercepted": 0}
    lines = [json.loads(line) for line in served.log.getvalue().splitlines()]
    refused_lines = [line for line in lines if line.get("msg") == "call" and line.get("code") == "PERMISSION_DENIED"]
    assert {line["method"] for line in refused_lines} == {"GetProduct", "SearchProducts"}


async def test_refuses_a_caller_whose_mesh_ca_certificate_carries_no_spiffe_id_with_unauthenticated(pki: Pki, cleanups: list) -> None:
    served = await catalog(pki, cleanups)
    nobody = client_of(cleanups, served.port, pki.files(pki.anonymous))
    refused = await refusal_of(get_product(nobody))
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED, refused.details()
    assert refused.details() == f"{GET_PRODUCT} needs a caller identity: a client certificate from the mesh CA with a SPIFFE ID"
    assert served.handled == {"GetProduct": 0, "ListProducts": 0, "SearchProducts": 0, "intercepted": 0}


async def test_always_answers_the_health_check_for_a_caller_no_rule_names_and_for_one_without_an_identity(pki: Pki, cleanups: list) -> None:
    served = await catalog(pki, cleanups)
    for workload in (pki.certs["billing"], pki.anonymous):
        channel = kit.dial("catalog", fallback_target=f"127.0.0.1:{served.port}", logger=kit.Logger(stream=io.StringIO()), tls=pki.files(workload))
        cleanups.append(channel.close)
        checked = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=DEADLINE_S)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING


async def test_answers_other_spellings_of_an_allowed_path_unimplemented_before_any_handler(pki: Pki, cleanups: list) -> None:
    served = await catalog(pki, cleanups)
    channel = kit.dial("catalog", fallback_target=f"127.0.0.1:{served.port}", logger=kit.Logger(stream=io.StringIO()), tls=pki.files(pki.certs["orders"]))
    cleanups.append(channel.close)
    request = catalog_pb2.GetProductRequest(id="sku-1")
    odd_forms = [
        f"/{GET_PRODUCT}",
        f"{GET_PRODUCT}/",
        "/shop.catalog.v1.catalogservice/GetProduct",
        f"{CATALOG}/getproduct",
        f"{CATALOG}/Get%50roduct",
        "/shop.catalog.v1.CatalogService%2FGetProduct",
        f"{GET_PRODUCT}?x=1",
        f"{CATALOG}/./GetProduct",
    ]
    for form in odd_forms:
        call = channel.unary_unary(form, request_serializer=catalog_pb2.GetProductRequest.SerializeToString)
        refused = await refusal_of(call(request, timeout=DEADLINE_S))
        assert refused.code() == grpc.StatusCode.UNIMPLEMENTED, f"{form}: {refused.details()}"
    assert served.handled == {"GetProduct": 0, "ListProducts": 0, "SearchProducts": 0, "intercepted": 0}
    # The exact path from the same channel is served.
    exact = channel.unary_unary(GET_PRODUCT, request_serializer=catalog_pb2.GetProductRequest.SerializeToString)
    await exact(request, timeout=DEADLINE_S)
    assert served.handled["GetProduct"] == 1


def test_refuses_authorization_without_tls_and_a_bad_block_naming_the_option(pki: Pki) -> None:
    with pytest.raises(ValueError, match="^catalog: authorization needs tls"):
        kit.create_server("catalog", logger=kit.Logger(stream=io.StringIO()), authorization=POLICY_BLOCK)
    with pytest.raises(kit.MeshError, match=r"authorization\.rules\[0\]\.action: must be allow or deny"):
        kit.create_server(
            "catalog",
            logger=kit.Logger(stream=io.StringIO()),
            tls=pki.files(pki.certs["catalog"]),
            authorization={"rules": [{"action": "permit", "callers": ["orders"], "methods": ["*"]}]},
        )


async def test_takes_the_trust_domain_from_tls_or_else_from_the_ca_certificate(pki: Pki) -> None:
    files = pki.files(pki.certs["catalog"])
    given = kit.TlsFiles(files.ca_file, files.cert_file, files.key_file, trust_domain="elsewhere.test")
    for tls, trust_domain in ((files, TRUST_DOMAIN), (given, "elsewhere.test")):
        server = kit.create_server("catalog", logger=kit.Logger(stream=io.StringIO()), tls=tls, authorization=POLICY_BLOCK)
        assert server.authorizer is not None and server.authorizer.trust_domain == trust_domain
        await server.drain(0)


# --- decisions ---------------------------------------------------------------------------------

POLICY = kit.parse_authorization_policy(POLICY_BLOCK, "authorization")


def test_decides_every_case_of_the_shared_fixture_as_the_typescript_and_go_kits_do() -> None:
    fixture = yaml.safe_load(CASES_FILE.read_text())
    shared = kit.parse_authorization_policy(fixture["config"]["services"]["catalog"]["authorization"], "services.catalog.authorization")
    assert len(fixture["cases"]) >= 10
    for case in fixture["cases"]:
        decision = kit.authorize(shared, case["path"], case["caller"], fixture["trustDomain"])
        assert decision.outcome == case["outcome"], f"{case['caller']} {case['path']}"


def test_the_shared_fixture_read_as_a_mesh_config_file_gives_the_same_policy(tmp_path: Path) -> None:
    fixture = yaml.safe_load(CASES_FILE.read_text())
    config = tmp_path / "mesh.yaml"
    config.write_text(yaml.safe_dump(fixture["config"]))
    loaded = kit.load_authorization_policy(str(config), "catalog")
    assert loaded == kit.parse_authorization_policy(fixture["config"]["services"]["catalog"]["authorization"], "services.catalog.authorization")


def test_allows_a_caller_an_allow_rule_names_by_method_name_or_path() -> None:
    assert kit.authorize(POLICY, GET_PRODUCT, spiffe("orders"), TRUST_DOMAIN).outcome == "allow"
    assert kit.authorize(POLICY, LIST_PRODUCTS, spiffe("orders"), TRUST_DOMAIN).outcome == "allow"


def test_denies_what_no_allow_rule_matches_another_caller_another_method_or_any_call_under_an_empty_policy() -> None:
    assert kit.authorize(POLICY, GET_PRODUCT, spiffe("billing"), TRUST_DOMAIN).code == grpc.StatusCode.PERMISSION_DENIED
    assert kit.authorize(POLICY, f"{CATALOG}/UpdateProduct", spiffe("orders"), TRUST_DOMAIN).outcome == "deny"
    empty = kit.parse_authorization_policy({"rules": []}, "authorization")
    assert kit.authorize(empty, GET_PRODUCT, spiffe("orders")).outcome == "deny"


def test_never_refuses_the_mesh_services_with_or_without_an_identity() -> None:
    for method in (
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics",
    ):
        assert kit.authorize(POLICY, method, None, TRUST_DOMAIN).outcome == "allow", method
        assert kit.authorize(POLICY, method, spiffe("billing"), TRUST_DOMAIN).outcome == "allow", method


def test_matches_a_service_name_in_the_servers_trust_domain_only_or_in_any_when_none_is_known() -> None:
    assert kit.authorize(POLICY, GET_PRODUCT, spiffe("orders", "elsewhere.test"), TRUST_DOMAIN).outcome == "deny"
    assert kit.authorize(POLICY, GET_PRODUCT, spiffe("orders", "elsewhere.test")).outcome == "allow"
    assert kit.authorize(POLICY, GET_PRODUCT, "spiffe://elsewhere.test/service/orders/extra").outcome == "deny"


def test_matches_full_spiffe_ids_any_caller_every_method_of_one_service_and_a_method_name_in_any_service() -> None:
    wide = kit.parse_authorization_policy(
        {
            "rules": [
                {"action": "allow", "callers": ["spiffe://other.test/service/admin"], "methods": ["*"]},
                {"action": "allow", "callers": ["*"], "methods": [f"{CATALOG}/*"]},
                {"action": "allow", "callers": ["orders"], "methods": ["Charge"]},
            ]
        },
        "authorization",
    )
    assert kit.authorize(wide, "/shop.billing.v1.BillingService/Refund", "spiffe://other.test/service/admin", TRUST_DOMAIN).outcome == "allow"
    assert kit.authorize(wide, SEARCH_PRODUCTS, spiffe("anyone"), TRUST_DOMAIN).outcome == "allow"
    assert kit.authorize(wide, "/shop.billing.v1.BillingService/Refund", spiffe("anyone"), TRUST_DOMAIN).outcome == "deny"
    assert kit.authorize(wide, "/shop.billing.v1.BillingService/Charge", spiffe("orders"), TRUST_DOMAIN).outcome == "allow"
    assert kit.authorize(wide, SEARCH_PRODUCTS, None, TRUST_DOMAIN).outcome == "unauthenticated"


def test_compiles_each_method_once() -> None:
    authorizer = kit.Authorizer(POLICY, TRUST_DOMAIN)
    assert authorizer.method(GET_PRODUCT) is authorizer.method(GET_PRODUCT)


# --- config ------------------------------------------------------------------------------------

REFUSALS: list[tuple[Any, str]] = [
    ([], r"^authorization: must be a mapping$"),
    ({"rule": []}, r"^authorization\.rule: unknown field \(expected one of rules\)$"),
    ({"rules": {}}, r"^authorization\.rules: must be a list"),
    ({"rules": [{"action": "permit", "callers": ["orders"], "methods": ["*"]}]}, r"^authorization\.rules\[0\]\.action: must be allow or deny$"),
    ({"rules": [{"action": "allow", "callers": [], "methods": ["*"]}]}, r"^authorization\.rules\[0\]\.callers: must be a non-empty list"),
    ({"rules": [{"action": "allow", "callers": ["orders", "Orders_1"], "methods": ["*"]}]}, r"^authorization\.rules\[0\]\.callers\[1\]: must be a mesh service name"),
    ({"rules": [{"action": "allow", "callers": ["spiffe://Bad Domain/x"], "methods": ["*"]}]}, r"^authorization\.rules\[0\]\.callers\[0\]: must be"),
    ({"rules": [{"action": "allow", "callers": ["orders"]}]}, r"^authorization\.rules\[0\]\.methods: must be a non-empty list"),
    ({"rules": [{"action": "allow", "callers": ["orders"], "methods": ["Get Product"]}]}, r"^authorization\.rules\[0\]\.methods\[0\]: must be a method name"),
    ({"rules": [{"action": "allow", "callers": ["orders"], "methods": ["//shop.Svc/Get"]}]}, r"^authorization\.rules\[0\]\.methods\[0\]: must be a method name"),
    ({"rules": [{"action": "allow", "callers": ["orders"], "methods": ["/grpc.health.v1.Health/Check"]}]}, r"^authorization\.rules\[0\]\.methods\[0\]: names a mesh service"),
    ({"rules": [{"action": "allow", "callers": ["orders"], "methods": ["*"], "when": "always"}]}, r"^authorization\.rules\[0\]\.when: unknown field"),
    ({"rules": [{"action": "allow", "callers": ["orders", 7], "methods": ["*"]}]}, r"^authorization\.rules\[0\]\.callers: must be a non-empty list"),
]


@pytest.mark.parametrize(("block", "expected"), REFUSALS, ids=[json.dumps(block) for block, _ in REFUSALS])
def test_refuses_a_bad_block_with_invalid_argument_naming_the_field(block: Any, expected: str) -> None:
    with pytest.raises(kit.MeshError) as refused:
        kit.parse_authorization_policy(block, "authorization")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(expected, refused.value.details), refused.value.details


def test_reads_a_services_own_policy_from_the_mesh_config_file_and_none_for_a_service_without_one(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("services:\n  catalog:\n    lb_policy: round_robin\n    authorization:\n      rules:\n        - { action: allow, callers: ['*'], methods: ['*'] }\n")
    assert kit.load_authorization_policy(str(config), "catalog") == kit.AuthorizationPolicy((kit.AuthorizationRule("allow", ("*",), ("*",)),))
    assert kit.load_authorization_policy(str(config), "orders") is None
    config.write_text("services:\n  catalog:\n    authorization:\n      rules: [{ action: allow }]\n")
    with pytest.raises(kit.MeshError, match=r"services\.catalog\.authorization\.rules\[0\]\.callers: must be a non-empty list"):
        kit.load_authorization_policy(str(config), "catalog")
    config.write_text("services:\n  catalog:\n    authorization:\n      rules:\n        - action: allow\n          callers: [orders]\n          methods: [Get-Product]\n")
    with pytest.raises(kit.MeshError, match=r"services\.catalog\.authorization\.rules\[0\]\.methods\[0\]: must be a method name"):
        kit.load_authorization_policy(str(config), "catalog")
    config.write_text("services: [catalog]\n")
    with pytest.raises(kit.MeshError, match=r"^INVALID_ARGUMENT: services: must be a mapping$"):
        kit.load_authorization_policy(str(config), "catalog")
    config.write_text("services:\n  catalog: {\n")
    with pytest.raises(kit.MeshError, match=r"^INVALID_ARGUMENT: \(file\): not valid YAML"):
        kit.load_authorization_policy(str(config), "catalog")
    config.write_text("")
    assert kit.load_authorization_policy(str(config), "catalog") is None


def test_reads_yaml_1_2_booleans_as_the_typescript_kit_does_so_a_service_named_on_is_a_name(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("services:\n  catalog:\n    authorization:\n      rules:\n        - { action: allow, callers: [on, no], methods: ['*'] }\n")
    assert kit.load_authorization_policy(str(config), "catalog") == kit.AuthorizationPolicy((kit.AuthorizationRule("allow", ("on", "no"), ("*",)),))


def test_settings_turn_authorization_on_from_the_mesh_config_only_with_tls(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text("services:\n  pricing:\n    authorization:\n      rules:\n        - { action: allow, callers: [orders], methods: ['*'] }\n")
    tls_env = {"PROTOMESH_TLS_CA_FILE": "ca.crt", "PROTOMESH_TLS_CERT_FILE": "w.crt", "PROTOMESH_TLS_KEY_FILE": "w.key"}
    with_tls = kit.load_settings({**tls_env, "PROTOMESH_MESH_CONFIG": str(config)})
    assert with_tls.mesh_config_path == str(config)
    assert with_tls.authorization_of("pricing") == kit.AuthorizationPolicy((kit.AuthorizationRule("allow", ("orders",), ("*",)),))
    assert with_tls.authorization_of("catalog") is None
    assert kit.load_settings({"PROTOMESH_MESH_CONFIG": str(config)}).authorization_of("pricing") is None
    assert kit.load_settings(tls_env).authorization_of("pricing") is None
