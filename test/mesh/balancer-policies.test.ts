import assert from "node:assert/strict";
import { Server, ServerCredentials, ServerInterceptingCall } from "@grpc/grpc-js";
import type { ServerInterceptor } from "@grpc/grpc-js";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { GetProductResponse } from "../../generated/ts/shop/catalog/v1/catalog";
import { createClient } from "../../mesh/client";
import type { ServiceConfigJson } from "../../mesh/balancer-client-health";
import { OVERALL_HEALTH } from "../../mesh/health";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { msUntilLastServed } from "../support/calls";
import { captureLog } from "../support/log-capture";
import { getProduct } from "../support/shop";
import { waitFor } from "../support/wait";

/**
 * protomesh's load-balancing policies on real grpc-js servers and clients, over a static list of
 * addresses (`ipv4:` target) with a service config; over xDS they are in
 * test/mesh/controlplane/policies.test.ts.
 */

/** A catalog server on loopback that counts the GetProduct calls it serves and answers after `delayMs`. */
interface Replica {
  name: string;
  server: MeshServer;
  port: number;
  calls: number;
  delayMs: number;
}

const log = captureLog(process.env.TEST_LOG_LEVEL ?? "warn");

async function startReplica(name: string, delayMs = 0): Promise<Replica> {
  const replica = { name, calls: 0, delayMs } as Replica;
  // Counts the call and holds its response for the replica's delay (a slow replica, not a slow network).
  const slow: ServerInterceptor = (descriptor, call) => {
    const isProduct = descriptor.path.endsWith("/GetProduct");
    if (isProduct) replica.calls += 1;
    return new ServerInterceptingCall(call, {
      sendMessage: (message, next) => {
        if (!isProduct || replica.delayMs === 0) next(message);
        else setTimeout(() => next(message), replica.delayMs);
      },
    });
  };
  replica.server = createServer({ name: "catalog", logger: log.logger, interceptors: [slow], drainGraceMs: 500 });
  replica.server.addService(CatalogServiceService, catalogService());
  replica.port = await replica.server.listen("127.0.0.1:0");
  return replica;
}

function targetOf(replicas: Replica[]): string {
  return `ipv4:${replicas.map((replica) => `127.0.0.1:${replica.port}`).join(",")}`;
}

/** Runs `total` calls, `concurrency` at a time. */
async function callMany(client: CatalogServiceClient, total: number, concurrency: number): Promise<void> {
  let issued = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (issued < total) {
        issued += 1;
        await getProduct(client);
      }
    }),
  );
}

function counts(replicas: Replica[]): Record<string, number> {
  return Object.fromEntries(replicas.map((replica) => [replica.name, replica.calls]));
}

describe("load-balancing policies on real servers (service config, no control plane)", function () {
  this.timeout(60_000);
  let replicas: Replica[] = [];
  let clients: CatalogServiceClient[] = [];

  function client(serviceConfig: ServiceConfigJson): CatalogServiceClient {
    const made = createClient(CatalogServiceClient, targetOf(replicas), { logger: log.logger, serviceConfig });
    clients.push(made);
    return made;
  }

  afterEach(async () => {
    for (const made of clients) made.close();
    await Promise.all(replicas.map((replica) => replica.server.drain(200)));
    replicas = [];
    clients = [];
  });

  it("refuses a service config whose policy grpc-js would quietly replace by pick_first, naming it", () => {
    const make = (serviceConfig: ServiceConfigJson) => () =>
      createClient(CatalogServiceClient, "127.0.0.1:1", { logger: log.logger, serviceConfig }).close();
    assert.throws(make({ loadBalancingConfig: [{ p2c_ewmaa: {} }] }), /loadBalancingConfig names no registered policy \(p2c_ewmaa\)/);
    assert.throws(make({ loadBalancingConfig: [{ p2c_ewma: { decay_time: 10 } }] }), /loadBalancingConfig\[0\]: p2c_ewma: decay_time: must be a duration/);
    assert.throws(make({ loadBalancingConfig: [{ least_request: { choiceCount: 1 } }] }), /least_request: choiceCount: must be an integer from 2/);
    make({ loadBalancingConfig: [{ some_future_policy: {} }, { round_robin: {} }] })(); // the first known one is taken, as gRPC does
  });

  describe("with one replica of 5 ten times slower (10 ms against 100 ms)", () => {
    const TOTAL = 400;
    const CONCURRENCY = 8;

    beforeEach(async () => {
      for (let index = 0; index < 4; index += 1) replicas.push(await startReplica(`fast-${index}`, 10));
      replicas.push(await startReplica("slow", 100));
    });

    it("round_robin sends the slow replica its fifth", async () => {
      const roundRobin = client({ loadBalancingConfig: [{ round_robin: {} }] });
      await callMany(roundRobin, TOTAL, CONCURRENCY);
      const share = replicas[4].calls / TOTAL;
      assert.ok(Math.abs(share - 0.2) < 0.02, `slow share ${share} (${JSON.stringify(counts(replicas))})`);
    });

    it("p2c_ewma sends it at most 5 % of the calls", async () => {
      const p2c = client({ loadBalancingConfig: [{ p2c_ewma: { decay_time: "10s" } }] });
      await callMany(p2c, TOTAL, CONCURRENCY);
      const share = replicas[4].calls / TOTAL;
      // The bound: p2c_ewma learns from the first slow answer (the peak) and from the calls piling
      // up in flight before it; a handful of the 400 calls reach the slow replica, not 80.
      assert.ok(share <= 0.05, `slow share ${share} (${JSON.stringify(counts(replicas))})`);
    });
  });

  it("least_request sends new calls to the replica with fewer calls in flight", async () => {
    replicas.push(await startReplica("stuck", 3_000), await startReplica("free", 0));
    // choice_count 10: with two endpoints, the stuck one is drawn every time with odds 2^-10.
    const leastRequest = client({ loadBalancingConfig: [{ least_request: { choiceCount: 10 } }] });
    await getProduct(leastRequest, 5_000); // connect to both
    replicas[0].calls = replicas[1].calls = 0;
    const pending: Promise<unknown>[] = [];
    for (let index = 0; index < 40; index += 1) {
      pending.push(getProduct(leastRequest, 5_000));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await Promise.all(pending);
    assert.ok(replicas[0].calls <= 2, `the stuck replica got ${replicas[0].calls} of 40 (${JSON.stringify(counts(replicas))})`);
  });

  describe("client-side health checking (gRFC A17)", () => {
    for (const policy of ["pick_first", "round_robin", "p2c_ewma", "least_request", "weighted_round_robin"]) {
      it(`under ${policy}: an endpoint turned NOT_SERVING gets no new call within 1 s, and calls come back once it is SERVING`, async () => {
        for (let index = 0; index < 3; index += 1) replicas.push(await startReplica(`r${index}`));
        const checked = client({ loadBalancingConfig: [{ [policy]: {} }], healthCheckConfig: { serviceName: OVERALL_HEALTH } });
        await callMany(checked, 30, 3);
        const victim = replicas.find((replica) => replica.calls > 0)!;

        // Only the whole-server entry changes: the service's own entry (what the control plane
        // probes) stays SERVING, so what reacts here is the client's own health check.
        victim.server.health.setServing(false, OVERALL_HEALTH);
        const lastCallMs = await msUntilLastServed(() => victim.calls, () => getProduct(checked));
        assert.ok(lastCallMs <= 1_000, `${victim.name} got a call ${lastCallMs} ms after NOT_SERVING`);
        victim.calls = 0;
        await callMany(checked, 30, 3);
        assert.equal(victim.calls, 0, "no call once it is out");

        victim.server.health.setServing(true, OVERALL_HEALTH);
        if (policy === "pick_first") {
          // pick_first stays where it moved; the endpoint back in health is used once the others go out.
          for (const other of replicas) if (other !== victim) other.server.health.setServing(false, OVERALL_HEALTH);
        }
        await waitFor(`${victim.name} to get calls again`, async () => {
          // pick_first may see every endpoint out for a moment (the others just went NOT_SERVING): calls
          // then fail UNAVAILABLE until the replica's own check says SERVING again.
          await getProduct(checked).catch(() => undefined);
          return victim.calls > 0;
        }, 10_000, 0); // one Watch answer, or a re-opened Watch after gRPC's backoff (1 s, 1.6 s, 2.56 s ...)
      });
    }

    it("keeps using a server without grpc.health.v1 (UNIMPLEMENTED), as A17 says", async () => {
      const plain = new Server();
      let served = 0;
      plain.addService(CatalogServiceService, {
        ...catalogService(),
        getProduct: (_call: unknown, callback: (error: null, response: GetProductResponse) => void) => {
          served += 1;
          callback(null, { product: undefined } as unknown as GetProductResponse);
        },
      } as never);
      const port = await new Promise<number>((resolve, reject) =>
        plain.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
      );
      try {
        const checked = createClient(CatalogServiceClient, `127.0.0.1:${port}`, {
          logger: log.logger,
          serviceConfig: { loadBalancingConfig: [{ round_robin: {} }], healthCheckConfig: { serviceName: "" } },
        });
        clients.push(checked);
        await getProduct(checked);
        assert.equal(served, 1);
        assert.ok(
          log.lines.some((line) => /no grpc\.health\.v1 service/.test(String(line.msg))),
          "the client says once that it cannot check this server",
        );
      } finally {
        plain.forceShutdown();
      }
    });
  });
});
