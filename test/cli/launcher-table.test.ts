import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import type { EndpointStatus, Service } from "../../generated/ts/protomesh/registry/v1/registry";
import { TablePrinter, describeChanges, formatTable, tableRows } from "../../cli/launcher-table";
import type { TableRow } from "../../cli/launcher-table";

const CONTROL_PLANE = { name: "control-plane", address: "127.0.0.1:50050", pid: 100, log: ".run/control-plane.log" };

function endpoint(service: string, port: number, health: HealthState, options: { pid?: string; zone?: string; isStatic?: boolean } = {}): EndpointStatus {
  return {
    endpoint: {
      service,
      address: "127.0.0.1",
      port,
      zone: options.zone ?? "",
      weight: 1,
      metadata: options.pid ? { pid: options.pid } : {},
      healthServiceName: "",
    },
    endpointId: `127.0.0.1:${port}`,
    health,
    healthDetail: "",
    isStatic: options.isStatic ?? false,
  };
}

describe("launcher table (mesh/launcher-table)", function () {
  const services: Service[] = [
    { name: "orders", endpoints: [endpoint("orders", 50052, HealthState.HEALTH_STATE_PENDING)] },
    {
      name: "catalog",
      endpoints: [
        endpoint("catalog", 50061, HealthState.HEALTH_STATE_UNHEALTHY, { zone: "zone-a" }),
        endpoint("catalog", 9000, HealthState.HEALTH_STATE_HEALTHY, { pid: "77" }),
        endpoint("catalog", 7000, HealthState.HEALTH_STATE_HEALTHY, { isStatic: true }),
      ],
    },
  ];
  const launched = [
    { address: "127.0.0.1:50061", pid: 201, log: ".run/catalog-1.log" },
    { address: "127.0.0.1:50052", pid: 301, log: ".run/orders-0.log" },
  ];

  it("lists the control plane first, then each service's endpoints by port, with the launcher's pid and log or the registered pid", function () {
    const rows = tableRows(services, CONTROL_PLANE, "SERVING", launched);
    assert.deepEqual(
      rows.map((row) => [row.service, row.endpoint, row.zone, row.health, row.pid, row.log]),
      [
        ["control-plane", "127.0.0.1:50050", "-", "SERVING", "100", ".run/control-plane.log"],
        ["catalog", "127.0.0.1:7000", "-", "HEALTHY", "-", "(static)"],
        ["catalog", "127.0.0.1:9000", "-", "HEALTHY", "77", "-"],
        ["catalog", "127.0.0.1:50061", "zone-a", "UNHEALTHY", "201", ".run/catalog-1.log"],
        ["orders", "127.0.0.1:50052", "-", "PENDING", "301", ".run/orders-0.log"],
      ],
    );
  });

  it("aligns the columns under one heading", function () {
    const text = formatTable(tableRows(services.slice(0, 1), CONTROL_PLANE, "SERVING", launched));
    assert.equal(
      text,
      [
        "SERVICE        ENDPOINT         ZONE  HEALTH   PID  LOG",
        "control-plane  127.0.0.1:50050  -     SERVING  100  .run/control-plane.log",
        "orders         127.0.0.1:50052  -     PENDING  301  .run/orders-0.log",
        "",
      ].join("\n"),
    );
  });

  it("names what changed between two tables: left, joined, health, pid", function () {
    const row = (endpointId: string, health: string, pid = "1"): TableRow => ({
      service: "catalog",
      endpoint: endpointId,
      zone: "-",
      health,
      pid,
      log: "-",
    });
    const before = [row("a:1", "HEALTHY"), row("a:2", "HEALTHY"), row("a:3", "HEALTHY")];
    const after = [row("a:1", "UNHEALTHY"), row("a:3", "HEALTHY", "2"), row("a:4", "PENDING")];
    assert.deepEqual(describeChanges(before, after), [
      "catalog a:2 left (was HEALTHY)",
      "catalog a:1 HEALTHY -> UNHEALTHY",
      "catalog a:3 pid 1 -> 2",
      "catalog a:4 joined (PENDING)",
    ]);
    assert.deepEqual(describeChanges(before, before), []);
  });

  it("prints a table again, after a timestamped line of what changed, only when a row changed and not after stop", function () {
    let text = "";
    const out = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        text += chunk.toString("utf8");
        callback();
      },
    });
    let view: Service[] = [{ name: "catalog", endpoints: [endpoint("catalog", 50061, HealthState.HEALTH_STATE_HEALTHY)] }];
    const printer = new TablePrinter(out, () => tableRows(view, CONTROL_PLANE, "SERVING", launched), () => new Date(2026, 0, 1, 9, 5, 7));
    printer.update();
    assert.equal(text, "", "nothing before start");
    printer.start();
    const first = text;
    printer.update();
    assert.equal(text, first, "no change, no table");
    view = [];
    printer.update();
    assert.equal(text.slice(first.length).split("\n")[1], "[09:05:07] registry: catalog 127.0.0.1:50061 left (was HEALTHY)");
    const second = text;
    printer.stop();
    view = [{ name: "catalog", endpoints: [endpoint("catalog", 50061, HealthState.HEALTH_STATE_HEALTHY)] }];
    printer.update();
    assert.equal(text, second, "nothing after stop");
  });
});
