import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";
import { Client, Metadata, credentials, status } from "@grpc/grpc-js";
import type { ClientDuplexStream, ServiceError } from "@grpc/grpc-js";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { InjectFaultRequest } from "../../../generated/ts/protomesh/fault/v1/fault";
import type { Fault, FaultServiceClient, InjectFaultResponse } from "../../../generated/ts/protomesh/fault/v1/fault";
import type { CatalogServiceClient, ListProductsResponse } from "../../../generated/ts/shop/catalog/v1/catalog";
import type { Clock } from "../../../mesh/clock";
import { systemClock } from "../../../mesh/clock";
import { DEFAULT_SERVICE_POLICY, parseMeshConfig, policyFor } from "../../../mesh/controlplane/config";
import { FAULT_FILTER_NAME, withFaults } from "../../../mesh/controlplane/fault-resources";
import { DEFAULT_FAULT_TTL_MS } from "../../../mesh/controlplane/fault-validation";
import { FaultStore, MAX_FAULTS } from "../../../mesh/controlplane/faults";
import type { ActiveFault } from "../../../mesh/controlplane/faults";
import { listenerResource, routeConfigurationResource } from "../../../mesh/controlplane/resources";
import {
  ADS_SERVICE_NAME,
  HTTP_CONNECTION_MANAGER_TYPE_URL,
  LISTENER_TYPE_URL,
  ROUTE_CONFIGURATION_TYPE_URL,
  ROUTER_FILTER_TYPE_URL,
  loadXdsProtos,
} from "../../../mesh/controlplane/xds-protos";
import { callUnary, expectOk } from "../../support/calls";
import { captureLog } from "../../support/log-capture";
import { ManualClock } from "../../support/manual-clock";
import { waitFor } from "../../support/wait";
import { MeshFixture, getProduct } from "./mesh-fixture";

/**
 * Faults injected through protomesh.fault.v1.FaultService, delivered as the xDS fault filter
 * (gRFC A33) and executed by real grpc-js-xds clients against real catalog replicas.
 */

const GET_PRODUCT = "shop.catalog.v1.CatalogService/GetProduct";
/** grpc-js-xds' details of a call its fault filter aborted. */
const FAULT_DETAILS = "Fault injected";
/** How long a fault may take to reach a client (an LDS and an RDS push): generous. */
const DELIVERY_MS = 10_000;

/** What became of one call, and how long it took. */
interface Outcome {
  code: status;
  details: string;
  ms: number;
}

async function outcomeOf(call: () => Promise<unknown>): Promise<Outcome> {
  const startedAt = performance.now();
  try {
    await call();
    return { code: status.OK, details: "", ms: performance.now() - startedAt };
  } catch (error) {
    const failure = error as ServiceError;
    return { code: failure.code, details: failure.details, ms: performance.now() - startedAt };
  }
}

function listProducts(client: CatalogServiceClient): Promise<ListProductsResponse> {
  const call = promisify<{ pageSize: number; pageToken: string }, Metadata, { deadline: number }, ListProductsResponse>(
    client.listProducts.bind(client) as never,
  );
  return call({ pageSize: 2, pageToken: "" }, new Metadata(), { deadline: Date.now() + 2_000 });
}

/** Calls until one outcome satisfies `isSeen`: the fault (or its end) has reached the client. */
async function callUntil(what: string, call: () => Promise<unknown>, isSeen: (outcome: Outcome) => boolean): Promise<void> {
  await waitFor(what, async () => isSeen(await outcomeOf(call)), DELIVERY_MS, 0);
}

async function outcomes(count: number, call: () => Promise<unknown>): Promise<Outcome[]> {
  const seen: Outcome[] = [];
  for (let index = 0; index < count; index += 1) seen.push(await outcomeOf(call));
  return seen;
}

const options = () => ({ deadline: Date.now() + 2_000 });

function inject(client: FaultServiceClient, request: Partial<InjectFaultRequest>): Promise<InjectFaultResponse> {
  return expectOk(client.injectFault, client, InjectFaultRequest.fromPartial({ service: "catalog", ...request }), options());
}

function durationMs(duration: { seconds: number; nanos: number } | undefined): number {
  assert.ok(duration, "a duration");
  return duration.seconds * 1000 + duration.nanos / 1e6;
}

function served(mesh: MeshFixture): number {
  return mesh.replicas.reduce((sum, replica) => sum + replica.calls, 0);
}

describe("fault injection (protomesh.fault.v1.FaultService → xDS fault filter, gRFC A33)", function () {
  this.timeout(60_000);
  let mesh: MeshFixture;
  let faults: FaultServiceClient;
  let catalog: CatalogServiceClient;

  beforeEach(async () => {
    mesh = new MeshFixture();
    await mesh.startControlPlane();
    await mesh.startReplica();
    await mesh.startReplica();
    await mesh.waitHealthy(2);
    faults = mesh.faultClient();
    catalog = mesh.catalogClient();
    await getProduct(catalog); // the client has resolved the catalog before any fault
  });
  afterEach(async () => {
    await mesh.stop();
  });

  it("aborts every GetProduct with the chosen code at 100 %, and no replica sees the calls", async () => {
    const { fault } = await inject(faults, { abort: { code: status.ABORTED, percent: 100 } });
    assert.ok(fault?.id, "the fault has an id");
    assert.ok(Math.abs(durationMs(fault.remainingTtl) - DEFAULT_FAULT_TTL_MS) < 5_000, "the default ttl");
    assert.ok(Math.abs(fault.expireTime!.getTime() - (Date.now() + DEFAULT_FAULT_TTL_MS)) < 5_000, "expires after the default ttl");
    await callUntil("the abort to reach the client", () => getProduct(catalog), (outcome) => outcome.code === status.ABORTED);
    mesh.resetCounts();
    const seen = await outcomes(20, () => getProduct(catalog));
    assert.deepEqual(new Set(seen.map((outcome) => `${status[outcome.code]} ${outcome.details}`)), new Set([`ABORTED ${FAULT_DETAILS}`]));
    assert.equal(served(mesh), 0, "the replicas' handlers were never called");
  });

  it("delays every call by at least the delay at 100 %, and the calls still succeed", async () => {
    const delayMs = 300;
    await inject(faults, { delay: { fixedDelay: { seconds: 0, nanos: delayMs * 1e6 }, percent: 100 } });
    await callUntil("the delay to reach the client", () => getProduct(catalog), (outcome) => outcome.ms >= delayMs);
    mesh.resetCounts();
    const seen = await outcomes(5, () => getProduct(catalog));
    for (const outcome of seen) {
      assert.equal(outcome.code, status.OK);
      // libuv times timers on a loop clock of whole milliseconds: one may fire a fraction early.
      assert.ok(outcome.ms >= delayMs - 1, `a call took ${outcome.ms.toFixed(1)} ms with a ${delayMs} ms delay`);
    }
    assert.equal(served(mesh), 5);
  });

  it("aborts about half of 200 calls at 50 %, and only those miss the replicas", async () => {
    await inject(faults, { abort: { code: status.ABORTED, percent: 50 } });
    await callUntil("the abort to reach the client", () => getProduct(catalog), (outcome) => outcome.code === status.ABORTED);
    mesh.resetCounts();
    const seen = await outcomes(200, () => getProduct(catalog));
    const aborted = seen.filter((outcome) => outcome.code === status.ABORTED).length;
    // Binomial(200, 0.5): a standard deviation of about 7, so this bound is over 5 of them.
    assert.ok(aborted >= 60 && aborted <= 140, `${aborted} of 200 aborted`);
    assert.equal(seen.filter((outcome) => outcome.code === status.OK).length, 200 - aborted, "the rest succeed");
    assert.equal(served(mesh), 200 - aborted);
  });

  it("faults only the method named: GetProduct aborts, ListProducts is untouched", async () => {
    await inject(faults, { method: GET_PRODUCT, abort: { code: status.ABORTED, percent: 100 } });
    await callUntil("the abort to reach the client", () => getProduct(catalog), (outcome) => outcome.code === status.ABORTED);
    const listed = await outcomes(5, () => listProducts(catalog));
    assert.deepEqual(listed.map((outcome) => outcome.code), Array(5).fill(status.OK));
    const got = await outcomes(5, () => getProduct(catalog));
    assert.deepEqual(got.map((outcome) => outcome.code), Array(5).fill(status.ABORTED));
  });

  it("lets a method's fault take the place of the service-wide one for that method only", async () => {
    await inject(faults, { abort: { code: status.PERMISSION_DENIED, percent: 100 } });
    await inject(faults, { method: GET_PRODUCT, abort: { code: status.ABORTED, percent: 100 } });
    await callUntil("both faults to reach the client", () => getProduct(catalog), (outcome) => outcome.code === status.ABORTED);
    await callUntil("the service-wide fault on ListProducts", () => listProducts(catalog), (outcome) => outcome.code === status.PERMISSION_DENIED);
    assert.deepEqual((await outcomes(3, () => getProduct(catalog))).map((outcome) => outcome.code), Array(3).fill(status.ABORTED));
    assert.deepEqual(
      (await outcomes(3, () => listProducts(catalog))).map((outcome) => outcome.code),
      Array(3).fill(status.PERMISSION_DENIED),
    );
  });

  it("restores calls when the fault is cleared, and a second clear is NOT_FOUND", async () => {
    const { fault } = await inject(faults, { abort: { code: status.ABORTED, percent: 100 } });
    await callUntil("the abort to reach the client", () => getProduct(catalog), (outcome) => outcome.code === status.ABORTED);
    const cleared = await expectOk(faults.clearFault, faults, { id: fault!.id }, options());
    assert.equal(cleared.fault?.id, fault!.id);
    await callUntil("the clear to reach the client", () => getProduct(catalog), (outcome) => outcome.code === status.OK);
    mesh.resetCounts();
    assert.deepEqual((await outcomes(10, () => getProduct(catalog))).map((outcome) => outcome.code), Array(10).fill(status.OK));
    assert.equal(served(mesh), 10);
    const again = await callUnary(faults.clearFault, faults, { id: fault!.id }, options());
    assert.equal(again.error?.code, status.NOT_FOUND);
  });

  it("clears every fault of a service with ClearFaults, and calls are restored", async () => {
    await inject(faults, { abort: { code: status.ABORTED, percent: 100 } });
    await inject(faults, { method: GET_PRODUCT, delay: { fixedDelay: { seconds: 1, nanos: 0 }, percent: 100 } });
    await inject(faults, { service: "orders", abort: { code: status.ABORTED, percent: 100 } });
    await callUntil("the faults to reach the client", () => listProducts(catalog), (outcome) => outcome.code === status.ABORTED);
    const { faults: cleared } = await expectOk(faults.clearFaults, faults, { service: "catalog" }, options());
    assert.deepEqual(cleared.map((fault) => `${fault.service} ${fault.method}`), ["catalog ", `catalog ${GET_PRODUCT}`]);
    await callUntil("the clear to reach the client", () => listProducts(catalog), (outcome) => outcome.code === status.OK);
    const got = await outcomeOf(() => getProduct(catalog));
    assert.ok(got.code === status.OK && got.ms < 1_000, `GetProduct: ${status[got.code]} in ${got.ms.toFixed(0)} ms`);
    const { faults: left } = await expectOk(faults.listFaults, faults, { service: "" }, options());
    assert.deepEqual(left.map((fault) => fault.service), ["orders"]);
  });

  it("ends a fault at its ttl without a clear, and pushes the restored resources", async () => {
    await inject(faults, { abort: { code: status.ABORTED, percent: 100 }, ttl: { seconds: 1, nanos: 0 } });
    await callUntil("the abort to reach the client", () => getProduct(catalog), (outcome) => outcome.code === status.ABORTED);
    await callUntil("the fault to expire and calls to succeed", () => getProduct(catalog), (outcome) => outcome.code === status.OK);
    const { faults: left } = await expectOk(faults.listFaults, faults, { service: "" }, options());
    assert.deepEqual(left, []);
  });

  it("lists the active faults, sorted, with their time left; a fault on the same target replaces the old one", async () => {
    const ttl = { seconds: 60, nanos: 0 };
    const abort = { code: status.UNAVAILABLE, percent: 25 };
    await inject(faults, { service: "orders", abort, ttl });
    const first = (await inject(faults, { method: GET_PRODUCT, abort, ttl })).fault!;
    await inject(faults, { abort, ttl });
    const replacing = await inject(faults, { method: GET_PRODUCT, delay: { fixedDelay: { seconds: 0, nanos: 5e8 }, percent: 10 }, ttl });
    assert.equal(replacing.replaced?.id, first.id);
    assert.notEqual(replacing.fault?.id, first.id);

    const { faults: listed } = await expectOk(faults.listFaults, faults, { service: "" }, options());
    assert.deepEqual(
      listed.map((fault) => [fault.service, fault.method, fault.abort?.code, fault.delay && durationMs(fault.delay.fixedDelay)]),
      [
        ["catalog", "", status.UNAVAILABLE, undefined],
        ["catalog", GET_PRODUCT, undefined, 500],
        ["orders", "", status.UNAVAILABLE, undefined],
      ],
    );
    for (const fault of listed) {
      const remainingMs = durationMs(fault.remainingTtl);
      assert.ok(remainingMs > 50_000 && remainingMs <= 60_000, `${fault.id} has ${remainingMs} ms left`);
      assert.ok(Math.abs(fault.expireTime!.getTime() - Date.now() - remainingMs) < 2_000, "expire_time agrees with remaining_ttl");
    }
    const { faults: ofOrders } = await expectOk(faults.listFaults, faults, { service: "orders" }, options());
    assert.deepEqual(ofOrders.map((fault: Fault) => fault.service), ["orders"]);
  });

  it("refuses bad requests with INVALID_ARGUMENT naming the field", async () => {
    const abort = { code: status.ABORTED, percent: 50 };
    const cases: [string, Partial<InjectFaultRequest>, RegExp][] = [
      ["no service", { service: "", abort }, /^service: required$/],
      ["a malformed service name", { service: "Catalog_Service", abort }, /^service: must be a DNS label/],
      ["a method without its service", { method: "GetProduct", abort }, /^method: must be empty \(every method\) or a full method name/],
      ["a method path with a leading slash", { method: `/${GET_PRODUCT}`, abort }, /^method: /],
      ["neither delay nor abort", {}, /^delay: required when abort is unset/],
      ["an abort percent above 100", { abort: { code: status.ABORTED, percent: 150 } }, /^abort\.percent: must be a percentage from 0\.0001 to 100$/],
      ["an abort percent of 0 (unset)", { abort: { code: status.ABORTED, percent: 0 } }, /^abort\.percent: /],
      ["a negative delay percent", { delay: { fixedDelay: { seconds: 1, nanos: 0 }, percent: -5 } }, /^delay\.percent: /],
      ["abort code OK", { abort: { code: status.OK, percent: 50 } }, /^abort\.code: must be a gRPC status code from 1 \(CANCELLED\) to 16/],
      ["an abort code out of range", { abort: { code: 17, percent: 50 } }, /^abort\.code: /],
      ["a delay without its duration", { delay: { fixedDelay: undefined, percent: 50 } }, /^delay\.fixed_delay: required$/],
      ["a delay too long", { delay: { fixedDelay: { seconds: 61, nanos: 0 }, percent: 50 } }, /^delay\.fixed_delay: must be more than 0s and at most 60s$/],
      ["a zero delay", { delay: { fixedDelay: { seconds: 0, nanos: 0 }, percent: 50 } }, /^delay\.fixed_delay: /],
      ["a ttl too long", { abort, ttl: { seconds: 3_601, nanos: 0 } }, /^ttl: must be from 0s to 3600s \(unset or 0 means 300s\)$/],
      ["a negative ttl", { abort, ttl: { seconds: -1, nanos: 0 } }, /^ttl: /],
    ];
    for (const [what, request, details] of cases) {
      const outcome = await callUnary(faults.injectFault, faults, InjectFaultRequest.fromPartial({ service: "catalog", ...request }), options());
      assert.equal(outcome.error?.code, status.INVALID_ARGUMENT, `${what}: ${outcome.error?.details ?? "accepted"}`);
      assert.match(outcome.error.details, details, what);
    }
    const listBad = await callUnary(faults.listFaults, faults, { service: "NOT A NAME" }, options());
    assert.equal(listBad.error?.code, status.INVALID_ARGUMENT);
    assert.match(listBad.error.details, /^service: /);
    const clearNone = await callUnary(faults.clearFault, faults, { id: "" }, options());
    assert.equal(clearNone.error?.details, "id: required");
    const { faults: left } = await expectOk(faults.listFaults, faults, { service: "" }, options());
    assert.deepEqual(left, [], "nothing refused was put in force");
  });

  it("accepts a fault on a service the registry does not know yet", async () => {
    const { fault } = await inject(faults, { service: "payments", abort: { code: status.ABORTED, percent: 100 } });
    assert.equal(fault?.service, "payments");
    assert.deepEqual(mesh.controlPlane.registry.list("payments"), []);
  });
});

describe("fault resources (what the control plane sends with and without faults)", function () {
  this.timeout(30_000);

  const abortFault = (id: string, method = "", code = status.UNAVAILABLE): ActiveFault => ({
    id,
    service: "catalog",
    method,
    delay: undefined,
    abort: { code, percent: 12.5 },
    expiresAt: 0,
  });
  const overrideOf = (code: status) => ({
    [FAULT_FILTER_NAME]: {
      "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
      abort: { grpc_status: code, percentage: { numerator: 125_000, denominator: "MILLION" } },
    },
  });

  it("builds the Listener and RouteConfiguration as before when there is no fault: no filter, no override", () => {
    assert.deepEqual(listenerResource("catalog"), {
      "@type": LISTENER_TYPE_URL,
      name: "catalog",
      api_listener: {
        api_listener: {
          "@type": HTTP_CONNECTION_MANAGER_TYPE_URL,
          rds: { route_config_name: "catalog", config_source: { ads: {} } },
          http_filters: [{ name: "router", typed_config: { "@type": ROUTER_FILTER_TYPE_URL } }],
        },
      },
    });
    assert.deepEqual(listenerResource("catalog", []), listenerResource("catalog"));
    const routes = routeConfigurationResource("catalog", DEFAULT_SERVICE_POLICY, []);
    assert.deepEqual(routes, routeConfigurationResource("catalog", DEFAULT_SERVICE_POLICY));
    assert.ok(!JSON.stringify(routes).includes("typed_per_filter_config"), JSON.stringify(routes));
  });

  it("puts the fault filter before the router, a method's fault on a route of its path and the service-wide one on the catch-all", () => {
    const faults = [abortFault("a", "", status.UNAVAILABLE), abortFault("b", GET_PRODUCT, status.ABORTED)];
    const listener = listenerResource("catalog", faults) as unknown as { api_listener: { api_listener: { http_filters: { name: string }[] } } };
    assert.deepEqual(listener.api_listener.api_listener.http_filters.map((filter) => filter.name), [FAULT_FILTER_NAME, "router"]);
    const routes = routeConfigurationResource("catalog", DEFAULT_SERVICE_POLICY, faults) as unknown as {
      virtual_hosts: { typed_per_filter_config?: object; routes: { name: string; match: object; route: object; typed_per_filter_config?: object }[] }[];
    };
    const [host] = routes.virtual_hosts;
    assert.equal(host.typed_per_filter_config, undefined, "nothing on the virtual host");
    assert.deepEqual(
      host.routes.map((route) => [route.name, route.match, route.typed_per_filter_config]),
      [
        ["fault b", { path: `/${GET_PRODUCT}` }, overrideOf(status.ABORTED)],
        ["fault a", { prefix: "" }, overrideOf(status.UNAVAILABLE)],
      ],
    );
    assert.deepEqual(host.routes[0].route, host.routes[1].route, "the method's route routes as the catch-all does");
  });

  it("faults a method that has a per-method route by name (safe_regex) on a route of its path with that route's timeout and retry", () => {
    const policy = policyFor(
      parseMeshConfig("services:\n  catalog:\n    idempotent: true\n    retry: { retry_on: [unavailable], num_retries: 1 }\n    methods:\n      GetProduct: { timeout_ms: 150 }\n"),
      "catalog",
    );
    const plain = routeConfigurationResource("catalog", policy) as unknown as { virtual_hosts: { routes: { match: object; route: object }[] }[] };
    const faulted = routeConfigurationResource("catalog", policy, [abortFault("b", GET_PRODUCT, status.ABORTED)]) as unknown as {
      virtual_hosts: { routes: { name?: string; match: object; route: object; typed_per_filter_config?: object }[] }[];
    };
    const [byName] = plain.virtual_hosts[0].routes;
    const [faultRoute, regexRoute] = faulted.virtual_hosts[0].routes;
    assert.deepEqual(faultRoute.match, { path: `/${GET_PRODUCT}` });
    assert.deepEqual(faultRoute.route, byName.route, "the fault's route keeps GetProduct's own timeout and retry");
    assert.deepEqual(faultRoute.typed_per_filter_config, overrideOf(status.ABORTED));
    assert.deepEqual(regexRoute.match, byName.match);
  });

  it("puts a method's fault on a route of that method already there, adds one before the route that takes it otherwise, and the service-wide fault on the rest", () => {
    const methodRoute = { name: "get", match: { path: `/${GET_PRODUCT}` }, route: { cluster: "catalog", timeout: "1s" } };
    const otherRoute = { match: { prefix: "/shop.catalog.v1.CatalogService/" }, route: { cluster: "catalog", timeout: "2s" } };
    const catchAll = { match: { prefix: "" }, route: { cluster: "catalog" } };
    const host = withFaults({ name: "catalog", routes: [methodRoute, otherRoute, catchAll] }, [
      abortFault("all", "", status.UNAVAILABLE),
      abortFault("get", GET_PRODUCT, status.ABORTED),
      abortFault("list", "shop.catalog.v1.CatalogService/ListProducts", status.PERMISSION_DENIED),
      abortFault("check", "grpc.health.v1.Health/Check", status.INTERNAL),
    ]);
    assert.deepEqual(
      host.routes.map((route) => [route.name, route.match, route.route, route.typed_per_filter_config]),
      [
        ["get fault get", methodRoute.match, methodRoute.route, overrideOf(status.ABORTED)],
        ["fault list", { path: "/shop.catalog.v1.CatalogService/ListProducts" }, otherRoute.route, overrideOf(status.PERMISSION_DENIED)],
        ["fault all", otherRoute.match, otherRoute.route, overrideOf(status.UNAVAILABLE)],
        ["fault check", { path: "/grpc.health.v1.Health/Check" }, catchAll.route, overrideOf(status.INTERNAL)],
        ["fault all", catchAll.match, catchAll.route, overrideOf(status.UNAVAILABLE)],
      ],
    );
  });

  it("serves a service's resources byte for byte as before once its faults are cleared, and leaves other services' alone", async () => {
    const mesh = new MeshFixture();
    const ads = await startRawAds(mesh);
    try {
      const faults = mesh.faultClient();
      const before = await ads.next(2);
      const original = resourcesByName(before);

      await inject(faults, { service: "orders", abort: { code: status.ABORTED, percent: 100 } });
      const ordersFaulted = resourcesByName(await ads.next(2));
      for (const key of ["Listener catalog", "RouteConfiguration catalog"]) {
        assert.ok(ordersFaulted.get(key)!.equals(original.get(key)!), `${key} unchanged by a fault on orders`);
      }
      assert.ok(!ordersFaulted.get("Listener orders")!.equals(original.get("Listener orders")!), "orders' Listener changed");

      await inject(faults, { method: GET_PRODUCT, delay: { fixedDelay: { seconds: 1, nanos: 0 }, percent: 5 } });
      const catalogFaulted = await ads.next(2);
      const listener = decodedListener(catalogFaulted, "catalog");
      assert.deepEqual(listener.http_filters.map((filter) => filter.name), [FAULT_FILTER_NAME, "router"]);

      await expectOk(faults.clearFaults, faults, { service: "" }, options());
      const cleared = resourcesByName(await ads.next(2));
      assert.deepEqual([...cleared.keys()].sort(), [...original.keys()].sort());
      for (const [key, bytes] of original) assert.ok(cleared.get(key)!.equals(bytes), `${key} is byte-identical to the one before any fault`);
    } finally {
      ads.close();
      await mesh.stop();
    }
  });
});

describe("fault store", function () {
  /** The system clock, recording how every timer was scheduled. */
  function recordingClock(): Clock & { scheduled: { delayMs: number; unref: boolean | undefined }[] } {
    const scheduled: { delayMs: number; unref: boolean | undefined }[] = [];
    return {
      scheduled,
      now: systemClock.now,
      schedule(callback, delayMs, scheduleOptions) {
        scheduled.push({ delayMs, unref: scheduleOptions?.unref });
        return systemClock.schedule(callback, delayMs, scheduleOptions);
      },
    };
  }

  const spec = { service: "catalog", method: "", delay: undefined, abort: { code: status.ABORTED, percent: 100 }, ttlMs: 60_000 };

  it("times each expiry with a timer that does not keep the process alive, cancelled by close", () => {
    const clock = recordingClock();
    const store = new FaultStore({ logger: captureLog().logger, clock });
    store.inject(spec);
    assert.deepEqual(clock.scheduled, [{ delayMs: 60_000, unref: true }]);
    store.close();
    assert.deepEqual(store.list(), []);
  });

  it("refuses a fault beyond MAX_FAULTS with RESOURCE_EXHAUSTED, but still replaces an active one", () => {
    const clock = new ManualClock();
    const store = new FaultStore({ logger: captureLog("warn").logger, clock });
    for (let index = 0; index < MAX_FAULTS; index += 1) store.inject({ ...spec, method: `pkg.Service/Method${index}` });
    assert.throws(() => store.inject({ ...spec, method: "pkg.Service/OneMore" }), { code: status.RESOURCE_EXHAUSTED });
    const { replaced } = store.inject({ ...spec, method: "pkg.Service/Method7" });
    assert.equal(replaced?.method, "pkg.Service/Method7");
    assert.equal(store.list().length, MAX_FAULTS);
    store.close();
  });

  it("expires a fault at its ttl, logs it, and tells the listeners which service changed", () => {
    const clock = new ManualClock();
    const log = captureLog();
    const store = new FaultStore({ logger: log.logger, clock });
    const changes: string[] = [];
    store.onChange((service) => changes.push(service));
    const { fault } = store.inject(spec);
    store.inject({ ...spec, service: "orders", ttlMs: 120_000 });
    clock.advance(59_999);
    assert.equal(store.remainingMs(fault), 1);
    assert.equal(store.list().length, 2);
    clock.advance(1);
    assert.deepEqual(store.list().map((left) => left.service), ["orders"]);
    assert.deepEqual(changes, ["catalog", "orders", "catalog"]);
    assert.ok(log.lines.some((line) => line.msg === "fault expired" && line.id === fault.id && line.abortCode === "ABORTED"), "the expiry is logged");
    store.close();
    assert.deepEqual(clock.pendingDelays(), [], "close cancelled the last timer");
  });
});

/** A DiscoveryResponse's resources (each a google.protobuf.Any) as the bytes on the wire. */
interface RawResponse {
  typeUrl: string;
  resources: Buffer[];
  raw: Buffer;
}

/**
 * An ADS stream with a deserializer that keeps the bytes, subscribed to the RouteConfiguration
 * and the Listener of catalog and orders on a fresh control plane.
 */
async function startRawAds(mesh: MeshFixture): Promise<{ next(count: number): Promise<RawResponse[]>; close(): void }> {
  await mesh.startControlPlane();
  const method = (loadXdsProtos().packageDefinition[ADS_SERVICE_NAME] as unknown as Record<string, { requestSerialize(value: object): Buffer }>)
    .StreamAggregatedResources;
  const client = new Client(mesh.address, credentials.createInsecure());
  const stream: ClientDuplexStream<object, Buffer> = client.makeBidiStreamRequest(
    `/${ADS_SERVICE_NAME}/StreamAggregatedResources`,
    (value: object) => method.requestSerialize(value),
    (bytes: Buffer) => bytes,
  );
  const received: RawResponse[] = [];
  stream.on("data", (bytes: Buffer) => received.push(parseResponse(bytes)));
  stream.on("error", () => undefined);
  // RouteConfiguration first: the control plane still pushes changes Listener first.
  for (const typeUrl of [ROUTE_CONFIGURATION_TYPE_URL, LISTENER_TYPE_URL]) {
    stream.write({ node: { id: "fault-bytes" }, type_url: typeUrl, resource_names: ["catalog", "orders"], version_info: "", response_nonce: "" });
  }
  let taken = 0;
  return {
    async next(count) {
      await waitFor(`${count} more ADS responses`, () => received.length >= taken + count);
      const batch = received.slice(taken, taken + count);
      // The first answers come in the order of the subscriptions; every push after them, Listener first.
      const order = taken === 0 ? [ROUTE_CONFIGURATION_TYPE_URL, LISTENER_TYPE_URL] : [LISTENER_TYPE_URL, ROUTE_CONFIGURATION_TYPE_URL];
      taken += count;
      assert.deepEqual(batch.map((response) => response.typeUrl), order);
      return batch;
    },
    close() {
      stream.cancel();
      client.close();
    },
  };
}

/** Splits a serialized DiscoveryResponse: type_url (4) and the resources (2), each Any kept whole. */
function parseResponse(raw: Buffer): RawResponse {
  const reader = new BinaryReader(raw);
  const response: RawResponse = { typeUrl: "", resources: [], raw };
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === 2 && wireType === WireType.LengthDelimited) response.resources.push(Buffer.from(reader.bytes()));
    else if (fieldNo === 4 && wireType === WireType.LengthDelimited) response.typeUrl = reader.string();
    else reader.skip(wireType);
  }
  return response;
}

/** Resources keyed "<type> <name>", decoded only as far as the name; the value is the Any's bytes. */
function resourcesByName(responses: RawResponse[]): Map<string, Buffer> {
  const byName = new Map<string, Buffer>();
  for (const response of responses) {
    const decoded = decodeResponse(response.raw).resources as { name: string }[];
    response.resources.forEach((bytes, index) => byName.set(`${response.typeUrl.split(".").pop()} ${decoded[index].name}`, bytes));
  }
  return byName;
}

function decodeResponse(raw: Buffer): { resources: Record<string, unknown>[] } {
  const method = (loadXdsProtos().packageDefinition[ADS_SERVICE_NAME] as unknown as Record<string, { responseDeserialize(bytes: Buffer): object }>)
    .StreamAggregatedResources;
  return method.responseDeserialize(raw) as { resources: Record<string, unknown>[] };
}

function decodedListener(responses: RawResponse[], name: string): { http_filters: { name: string }[] } {
  const response = responses.find((candidate) => candidate.typeUrl === LISTENER_TYPE_URL)!;
  const listener = decodeResponse(response.raw).resources.find((resource) => resource.name === name) as {
    api_listener: { api_listener: { http_filters: { name: string }[] } };
  };
  return listener.api_listener.api_listener;
}
