import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { GetProductRequest, GetProductResponse } from "../../generated/ts/shop/catalog/v1/catalog";
import { detached } from "../../mesh/call-context";
import { createClient } from "../../mesh/client";
import { DEFAULT_DEADLINE_MARGIN_MS } from "../../mesh/deadlines";
import { unary } from "../../mesh/handler";
import { REQUEST_ID_KEY } from "../../mesh/request-id";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { callUnary } from "../support/calls";
import { captureLog } from "../support/log-capture";
import type { CapturedLog } from "../support/log-capture";
import { waitFor } from "../support/wait";

/** What the downstream server saw of each call: its deadline, request id, and whether it was cancelled. */
interface Seen {
  deadline: number;
  requestId: string;
  cancelled: boolean;
}

/**
 * front (a catalog whose GetProduct runs `frontHandler`) → back (a catalog whose GetProduct never
 * answers and records what it saw). The front's handler calls the back with no `parent`, no
 * metadata and no deadline of its own unless a test gives one.
 */
describe("deadline propagation through an inbound call (AsyncLocalStorage)", () => {
  let log: CapturedLog;
  let back: MeshServer;
  let front: MeshServer;
  let backClient: CatalogServiceClient;
  let frontClient: CatalogServiceClient;
  const seen: Seen[] = [];
  let frontHandler: (call: { request: GetProductRequest }) => Promise<GetProductResponse>;

  before(async () => {
    log = captureLog();
    back = createServer({ name: "back", logger: log.logger });
    back.addService(CatalogServiceService, {
      ...catalogService(),
      getProduct: unary<GetProductRequest, GetProductResponse>((_request, call) => {
        const deadline = call.getDeadline();
        const entry: Seen = {
          deadline: deadline instanceof Date ? deadline.getTime() : deadline,
          requestId: String(call.metadata.get(REQUEST_ID_KEY)[0] ?? ""),
          cancelled: false,
        };
        seen.push(entry);
        call.on("cancelled", () => {
          entry.cancelled = true;
        });
        return new Promise<GetProductResponse>(() => undefined);
      }),
    });
    const backAddress = `127.0.0.1:${await back.listen()}`;
    backClient = createClient(CatalogServiceClient, backAddress, { logger: log.logger, defaultDeadlineMs: 60_000 });
    front = createServer({ name: "front", logger: log.logger });
    front.addService(CatalogServiceService, {
      ...catalogService(),
      getProduct: unary<GetProductRequest, GetProductResponse>((request) => frontHandler({ request })),
    });
    frontClient = createClient(CatalogServiceClient, `127.0.0.1:${await front.listen()}`, { logger: log.logger });
  });

  beforeEach(() => {
    seen.length = 0;
    log.lines.length = 0;
  });

  after(async () => {
    frontClient.close();
    backClient.close();
    await Promise.all([front.drain(200), back.drain(200)]);
  });

  /** The front handler's call to the back, resolved with its error (it never succeeds). */
  function callBack(options: { deadline?: number } = {}): Promise<ServiceError> {
    return new Promise((resolve) => {
      backClient.getProduct({ id: "sku-1001" }, new Metadata(), options, (error) => resolve(error!));
    });
  }

  it("gives a call made while handling one the inbound deadline less the margin, and its request id", async () => {
    frontHandler = async () => {
      throw await callBack();
    };
    const metadata = new Metadata();
    metadata.set(REQUEST_ID_KEY, "trace-me-7");
    const inboundDeadline = Date.now() + 400;
    const { error } = await callUnary(frontClient.getProduct, frontClient, { id: "sku-1001" }, { deadline: inboundDeadline }, metadata);
    assert.equal(error?.code, status.DEADLINE_EXCEEDED);
    assert.equal(seen.length, 1);
    const handed = inboundDeadline - seen[0].deadline;
    // grpc-js sends the remaining time (grpc-timeout) rounded to its unit, so allow a few ms each way.
    assert.ok(handed >= DEFAULT_DEADLINE_MARGIN_MS - 5 && handed <= DEFAULT_DEADLINE_MARGIN_MS + 30, `handed ${handed} ms short of the inbound deadline`);
    assert.equal(seen[0].requestId, "trace-me-7");
  });

  it("lets an explicit shorter deadline win, and cuts a longer one to the inbound budget", async () => {
    let explicitMs = 100;
    frontHandler = async () => {
      throw await callBack({ deadline: Date.now() + explicitMs });
    };
    let startedAt = Date.now();
    await callUnary(frontClient.getProduct, frontClient, { id: "sku-1001" }, { deadline: Date.now() + 2_000 });
    assert.ok(seen[0].deadline - startedAt <= 100 + 30, `shorter explicit deadline: ${seen[0].deadline - startedAt} ms`);

    explicitMs = 10_000;
    startedAt = Date.now();
    const inboundDeadline = startedAt + 300;
    await callUnary(frontClient.getProduct, frontClient, { id: "sku-1001" }, { deadline: inboundDeadline });
    assert.ok(seen[1].deadline <= inboundDeadline - DEFAULT_DEADLINE_MARGIN_MS + 5, "a longer explicit deadline is cut to the inbound budget");
  });

  it("cancels the downstream call when the inbound call is cancelled", async () => {
    frontHandler = async () => {
      throw await callBack();
    };
    const call = frontClient.getProduct({ id: "sku-1001" }, new Metadata(), { deadline: Date.now() + 5_000 }, () => undefined);
    await waitFor("the downstream call arrives", () => seen.length === 1, 2_000);
    call.cancel();
    await waitFor("the downstream server sees the cancellation", () => seen[0].cancelled, 2_000);
  });

  it("fails a call whose budget is gone with DEADLINE_EXCEEDED without sending it", async () => {
    let outbound: ServiceError | undefined;
    frontHandler = async () => {
      await sleep(150); // the whole budget goes here
      outbound = await callBack();
      throw outbound;
    };
    await callUnary(frontClient.getProduct, frontClient, { id: "sku-1001" }, { deadline: Date.now() + 100 });
    await waitFor("the front's outbound call ends", () => outbound !== undefined, 2_000);
    assert.equal(outbound?.code, status.DEADLINE_EXCEEDED);
    assert.match(outbound?.details ?? "", /before the call was sent: the inbound call's budget is spent/);
    await sleep(50);
    assert.equal(seen.length, 0, "nothing reached the downstream server");
  });

  it("logs where the budget of a DEADLINE_EXCEEDED call went: received, spent here, downstream", async () => {
    frontHandler = async () => {
      await sleep(100); // spent here
      throw await callBack();
    };
    await callUnary(frontClient.getProduct, frontClient, { id: "sku-1001" }, { deadline: Date.now() + 400 });
    await waitFor("the front logs the call", () => log.lines.some((line) => line.server === "front" && line.code === "DEADLINE_EXCEEDED"), 2_000);
    const line = log.lines.find((entry) => entry.server === "front" && entry.code === "DEADLINE_EXCEEDED")!;
    const budget = line.budget as Record<string, number | string>;
    assert.ok(budget, "the log line carries the budget");
    assert.ok(Number(budget.receivedMs) > 300 && Number(budget.receivedMs) <= 400, `received ${budget.receivedMs}`);
    assert.ok(Number(budget.spentHereMs) >= 90, `spent here ${budget.spentHereMs}`);
    assert.ok(Number(budget.downstreamMs) >= 150, `downstream ${budget.downstreamMs}`);
    assert.ok(Number(budget.handedDownstreamMs) > 150 && Number(budget.handedDownstreamMs) < 300, `handed ${budget.handedDownstreamMs}`);
    assert.equal(budget.handedTo, "/shop.catalog.v1.CatalogService/GetProduct");
  });

  it("leaves a detached call, and work that outlives the inbound call, on its own deadline", async () => {
    const results: { inFlight?: number; after?: number } = {};
    frontHandler = async () => {
      void detached(() => callBack());
      setTimeout(() => void callBack(), 200); // runs after the inbound call has ended
      throw new Error("done");
    };
    const startedAt = Date.now();
    await callUnary(frontClient.getProduct, frontClient, { id: "sku-1001" }, { deadline: Date.now() + 100 });
    await waitFor("both calls reach the downstream server", () => seen.length >= 2, 3_000).catch((error: Error) => {
      throw new Error(`${error.message}; seen ${JSON.stringify(seen)}`);
    });
    results.inFlight = seen[0].deadline - startedAt;
    results.after = seen[1].deadline - startedAt;
    // The back client's own default is 60 s; neither call is tied to the 100 ms inbound budget.
    assert.ok(results.inFlight > 50_000, `detached call: ${results.inFlight} ms`);
    assert.ok(results.after > 50_000, `call after the inbound call ended: ${results.after} ms`);
  });
});
