import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { connectivityState, status } from "@grpc/grpc-js";
import { HealthState } from "../../../generated/ts/protomesh/registry/v1/registry";
import { OVERALL_HEALTH } from "../../../mesh/health";
import { msUntilLastServed } from "../../support/calls";
import { waitFor } from "../../support/wait";
import { sample } from "../../support/metrics";
import { Registry } from "prom-client";
import { MeshFixture, callUntilAllServed, getProduct } from "./mesh-fixture";
import type { Replica } from "./mesh-fixture";

/**
 * protomesh's policies chosen per service in the mesh config and delivered over xDS (Cluster
 * load_balancing_policy, gRFC A52) to real grpc-js-xds clients.
 */

const PLAIN_CLIENT = path.join(__dirname, "..", "..", "support", "plain-xds-client.js");

async function calls(client: ReturnType<MeshFixture["catalogClient"]>, count: number): Promise<void> {
  for (let index = 0; index < count; index += 1) await getProduct(client);
}

function spread(replicas: Replica[]): number[] {
  return replicas.map((replica) => replica.calls);
}

describe("load-balancing policies over xDS (mesh config → Cluster load_balancing_policy)", function () {
  this.timeout(60_000);
  let mesh: MeshFixture;
  let dir: string;
  let file: string;

  beforeEach(() => {
    mesh = new MeshFixture();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-policies-"));
    file = path.join(dir, "mesh.yaml");
  });
  afterEach(async () => {
    await mesh.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function startMesh(serviceYaml: string, replicas = 3): Promise<void> {
    fs.writeFileSync(file, `services:\n  catalog:\n${serviceYaml}`);
    await mesh.startControlPlane({ configPath: file });
    for (let index = 0; index < replicas; index += 1) await mesh.startReplica();
    await mesh.waitHealthy(replicas);
  }

  const spreading: [string, string][] = [
    ["p2c_ewma", "    lb_config: { decay_time: 5s, default_rtt: 0.005s }\n"],
    ["least_request", "    lb_config: { choice_count: 3 }\n"],
    ["weighted_round_robin", "    lb_config: { blackout_period: 0s }\n"],
  ];
  for (const [policy, config] of spreading) {
    it(`delivers ${policy} with its lb_config: the client ACKs the Cluster and spreads calls over every replica`, async () => {
      await startMesh(`    lb_policy: ${policy}\n${config}`);
      const acks: string[] = [];
      mesh.controlPlane.xds.onAck((ack) => acks.push(`${ack.typeUrl.split(".").pop()} ${ack.error ?? "ACK"}`));
      const client = mesh.catalogClient();
      await callUntilAllServed(client, mesh.replicas);
      assert.ok(acks.includes("Cluster ACK"), `acks: ${acks.join("; ")}`);
      assert.ok(acks.every((ack) => ack.endsWith("ACK")), `no NACK: ${acks.join("; ")}`);
    });
  }

  it("counts a client's p2c_ewma picks per endpoint over xDS (protomesh_client_picks_total): as many as each replica served", async () => {
    await startMesh("    lb_policy: p2c_ewma\n");
    const registry = new Registry();
    const client = mesh.catalogClient({ metrics: registry });
    await callUntilAllServed(client, mesh.replicas);
    await calls(client, 30);
    const text = await registry.metrics();
    for (const replica of mesh.replicas) {
      const picks = sample(text, "protomesh_client_picks_total", { service: "catalog", policy: "p2c_ewma", endpoint: `127.0.0.1:${replica.port}` });
      assert.equal(picks, replica.calls, `picks onto replica :${replica.port} (${text.split("\n").filter((line) => line.startsWith("protomesh_client_picks")).join("; ")})`);
    }
  });

  it("delivers pick_first: every call goes to one replica", async () => {
    await startMesh("    lb_policy: pick_first\n");
    await calls(mesh.catalogClient(), 30);
    assert.deepEqual(
      spread(mesh.replicas).filter((count) => count > 0),
      [30],
      `calls per replica ${spread(mesh.replicas).join(", ")}`,
    );
  });

  it("switches running clients to a new policy when the mesh config is reloaded (SIGHUP)", async () => {
    await startMesh("    lb_policy: pick_first\n");
    const client = mesh.catalogClient();
    await calls(client, 20);
    assert.equal(spread(mesh.replicas).filter((count) => count > 0).length, 1, "pick_first: one replica");

    fs.writeFileSync(file, "services:\n  catalog:\n    lb_policy: p2c_ewma\n");
    mesh.controlPlane.reloadConfig();
    mesh.resetCounts();
    // The same client, no new channel: its picks now spread over every replica.
    await callUntilAllServed(client, mesh.replicas, 10_000);
  });

  for (const policy of ["pick_first", "round_robin", "p2c_ewma", "least_request"]) {
    it(`checks health from the client under ${policy} with client_health_check: a NOT_SERVING endpoint gets no new call within 1 s`, async () => {
      await startMesh(`    lb_policy: ${policy}\n    client_health_check: { service_name: "" }\n`);
      const client = mesh.catalogClient();
      await calls(client, 30);
      // The control plane probes the catalog's own entry; only the whole-server entry changes, so
      // what takes the replica out here is the client's check, not an xDS update.
      const victim = mesh.replicas.find((replica) => replica.calls > 0)!;
      victim.server.health.setServing(false, OVERALL_HEALTH);
      const lastCallMs = await msUntilLastServed(() => victim.calls, () => getProduct(client));
      assert.ok(lastCallMs <= 1_000, `a call ${lastCallMs} ms after NOT_SERVING`);
      assert.equal(
        mesh.endpoints().filter((endpoint) => endpoint.health === HealthState.HEALTH_STATE_HEALTHY).length,
        3,
        "the control plane still has it HEALTHY: the client took it out",
      );
      victim.server.health.setServing(true, OVERALL_HEALTH);
      if (policy === "pick_first") {
        // pick_first stays where it moved; the endpoint back in health is used once the others go out.
        for (const other of mesh.replicas) if (other !== victim) other.server.health.setServing(false, OVERALL_HEALTH);
      }
      mesh.resetCounts();
      await waitFor(`${policy}: calls to reach the replica again`, async () => {
        // pick_first may see every endpoint out for a moment (the others just went NOT_SERVING): calls
        // then fail UNAVAILABLE until the replica's own check says SERVING again.
        await getProduct(client).catch(() => undefined);
        return victim.calls > 0;
      }, 10_000, 0); // one Watch answer, or a re-opened Watch after gRPC's backoff (1 s, 1.6 s, 2.56 s ...)
    });
  }

  it("keeps the channel READY under p2c_ewma and client_health_check while another endpoint joins", async () => {
    await startMesh('    lb_policy: p2c_ewma\n    client_health_check: { service_name: "" }\n', 2);
    const client = mesh.catalogClient();
    await callUntilAllServed(client, mesh.replicas);
    const channel = client.getChannel();
    const states: connectivityState[] = [];
    let isWatching = true;
    const watch = () =>
      channel.watchConnectivityState(channel.getConnectivityState(false), Date.now() + 60_000, () => {
        if (!isWatching) return;
        states.push(channel.getConnectivityState(false));
        watch();
      });
    watch();
    await mesh.startReplica(); // an EDS update: every client gets the new endpoint list
    await mesh.waitHealthy(3);
    await callUntilAllServed(client, mesh.replicas);
    isWatching = false;
    assert.deepEqual(states, [], `the channel left READY: ${states.map((state) => connectivityState[state]).join(" → ")}`);
  });

  it("refuses client_health_check with ring_hash, naming the field", async () => {
    fs.writeFileSync(file, "services:\n  catalog:\n    lb_policy: ring_hash\n    client_health_check: {}\n");
    await assert.rejects(
      async () => mesh.startControlPlane({ configPath: file }),
      /services\.catalog\.client_health_check: is not supported with lb_policy ring_hash/,
    );
  });

  it("gives a client that lacks the policy the nearest one it knows (round_robin for grpc-js-xds), with no NACK", async () => {
    await startMesh("    lb_policy: p2c_ewma\n", 1);
    const nacks: string[] = [];
    mesh.controlPlane.xds.onAck((ack) => ack.error && nacks.push(ack.error));
    const run = await promisify(execFile)(process.execPath, [PLAIN_CLIENT, mesh.address], { timeout: 20_000 });
    const outcome = JSON.parse(run.stdout.trim()) as { code: number; details?: string };
    assert.equal(outcome.code, status.OK, outcome.details);
    assert.deepEqual(nacks, []);
  });
});
