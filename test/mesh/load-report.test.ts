import assert from "node:assert/strict";
import { Metadata, Server, ServerCredentials, credentials, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import { createClient } from "../../mesh/client";
import { OrcaLoadReport } from "../../generated/ts/xds/data/orca/v3/orca_load_report";
import { OpenRcaServiceClient } from "../../generated/ts/xds/service/orca/v3/orca";
import { LOAD_REPORT_TRAILER, LoadMeter, addLoadReportService } from "../../mesh/load-report";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { captureLog } from "../support/log-capture";
import { getProduct } from "../support/shop";
import { ManualClock } from "../support/manual-clock";
import { waitFor } from "../support/wait";

const log = captureLog(process.env.TEST_LOG_LEVEL ?? "warn");

function orcaClient(address: string): OpenRcaServiceClient {
  return new OpenRcaServiceClient(address, credentials.createInsecure());
}

async function catalogServer(options: Parameters<typeof createServer>[0]): Promise<{ server: MeshServer; address: string }> {
  const server = createServer({ logger: log.logger, drainGraceMs: 2_000, ...options });
  server.addService(CatalogServiceService, catalogService());
  return { server, address: `127.0.0.1:${await server.listen()}` };
}

describe("ORCA load reports (mesh/load-report.ts)", function () {
  this.timeout(30_000);

  it("measures calls per second and server faults per second over a window, on its clock", () => {
    const clock = new ManualClock(0);
    const meter = new LoadMeter(clock, () => 0.25);
    for (const code of [status.OK, status.OK, status.UNAVAILABLE, status.NOT_FOUND]) {
      meter.callEnded({ side: "server", method: { service: "s", method: "m", path: "/s/m" }, type: "unary", requestId: "", code, details: "", durationMs: 1, peer: "" });
    }
    clock.advance(2_000);
    meter.sample();
    assert.equal(meter.figures.rpsFractional, 2, "4 calls in 2 s");
    assert.equal(meter.figures.eps, 0.5, "1 server fault in 2 s; NOT_FOUND is the caller's");
    assert.equal(meter.figures.applicationUtilization, 0.25, "the application's own figure when it gives one");
    assert.equal(OrcaLoadReport.decode(meter.encodedFigures).rpsFractional, 2);
  });

  it("puts the server's report, with the event loop's utilisation, in the trailers of every response", async () => {
    const { server, address } = await catalogServer({ name: "catalog" });
    const client = createClient(CatalogServiceClient, address, { logger: log.logger });
    try {
      const trailers = await new Promise<Metadata>((resolve, reject) => {
        const call = client.getProduct({ id: "sku-1001" }, new Metadata(), { deadline: Date.now() + 5_000 }, (error) => error && reject(error));
        call.on("status", (callStatus) => resolve(callStatus.metadata));
      });
      const [bytes] = trailers.get(LOAD_REPORT_TRAILER) as Buffer[];
      const report = OrcaLoadReport.decode(bytes);
      for (const field of ["applicationUtilization", "cpuUtilization", "memUtilization"] as const) {
        assert.ok(report[field] >= 0 && report[field] <= 1, `${field} ${report[field]}`);
      }
      assert.ok(report.memUtilization > 0, "the heap is never empty");
    } finally {
      client.close();
      await server.drain();
    }
  });

  it("streams out-of-band reports at once and then every report_interval, no more often than once a second", async () => {
    const clock = new ManualClock(0);
    const meter = new LoadMeter(clock, () => 0.5);
    const server = new Server();
    const stop = addLoadReportService(server, meter, clock);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
    );
    const client = orcaClient(`127.0.0.1:${port}`);
    try {
      const reports: OrcaLoadReport[] = [];
      const call = client.streamCoreMetrics({ reportInterval: { seconds: 0, nanos: 100_000_000 }, requestCostNames: [] });
      call.on("data", (report: OrcaLoadReport) => reports.push(report));
      call.on("error", () => undefined);
      await waitFor("the first report", () => reports.length === 1);
      clock.advance(999);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(reports.length, 1, "0.1 s asked, 1 s given");
      meter.sample();
      clock.advance(1);
      await waitFor("the second report", () => reports.length === 2);
      assert.equal(reports[1].applicationUtilization, 0.5);
      call.cancel();
    } finally {
      stop();
      client.close();
      server.forceShutdown();
    }
  });

  it("ends out-of-band streams when the server drains, without holding the drain", async () => {
    const { server, address } = await catalogServer({ name: "catalog", drainGraceMs: 10_000 });
    const client = orcaClient(address);
    try {
      const call = client.streamCoreMetrics({ reportInterval: { seconds: 1, nanos: 0 }, requestCostNames: [] });
      const ended = new Promise<ServiceError>((resolve) => call.on("error", resolve));
      await new Promise((resolve) => call.once("data", resolve));
      const startedAt = Date.now();
      await server.drain();
      assert.equal((await ended).code, status.UNAVAILABLE);
      assert.ok(Date.now() - startedAt < 5_000, "the stream did not hold the drain for its grace period");
    } finally {
      client.close();
    }
  });

  it("lets weighted_round_robin weigh replicas by their reports: the busier one gets fewer calls", async () => {
    const busy = await catalogServer({ name: "catalog", loadReports: { applicationUtilization: () => 0.9 } });
    const idle = await catalogServer({ name: "catalog", loadReports: { applicationUtilization: () => 0.1 } });
    let busyCalls = 0;
    let idleCalls = 0;
    // Count which replica answered: the access log line's peer is the server's address.
    const client = createClient(CatalogServiceClient, `ipv4:${busy.address},${idle.address}`, {
      logger: log.logger,
      serviceConfig: {
        loadBalancingConfig: [
          {
            weighted_round_robin: {
              enable_oob_load_report: true,
              oob_load_reporting_period: "1s",
              blackout_period: "0s",
              weight_update_period: "0.1s",
            },
          },
        ],
      },
      sinks: [
        {
          callEnded: (record) => {
            if (record.peer === busy.address) busyCalls += 1;
            if (record.peer === idle.address) idleCalls += 1;
          },
        },
      ],
    });
    try {
      // Weights (qps / utilisation, A58) appear once each replica has reported a window with calls.
      await waitFor(
        "the idle replica to get at least 4 calls in 5",
        async () => {
          busyCalls = idleCalls = 0;
          for (let index = 0; index < 50; index += 1) await getProduct(client);
          return idleCalls >= 40;
        },
        15_000,
        0,
      );
      assert.ok(busyCalls <= 10, `busy ${busyCalls}, idle ${idleCalls}`);
    } finally {
      client.close();
      await Promise.all([busy.server.drain(), idle.server.drain()]);
    }
  });
});
