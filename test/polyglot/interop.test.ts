import assert from "node:assert/strict";
import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import type { EchoResponse, HoldResponse, Payload as PayloadMessage } from "../../generated/ts/protomesh/interop/v1/interop";
import { createClient } from "../../mesh";
import { ChaosMesh, chaosMeshConfig } from "../support/chaos";
import type { Replica } from "../support/chaos";
import { captureLog } from "../support/log-capture";
import {
  InteropServiceClient,
  Payload,
  interopCall,
  interopCommand,
  normalPayload,
  requireLanguages,
  startTypescriptInterop,
} from "../support/interop";
import type { Language, PrintedCall } from "../support/interop";
import { requireTool, runTool } from "../support/tools";
import { waitFor } from "../support/wait";

/**
 * The three kits in one mesh: interop servers in TypeScript (in this process), Go and Python
 * (processes), each registered with a real control plane, called by name over xDS from every
 * language (the Go and Python `interop call` programs, and a grpc-js client here).
 */

const LANGUAGES: readonly Language[] = ["typescript", "go", "python"];
/** The mixed service's replicas: 2 Go, 2 Python and 1 TypeScript. */
const MIXED = "interop-mixed";
/** Every field kind, with 64-bit values beyond 2^53 and at the limits, in proto3 JSON. */
const FULL_PAYLOAD = {
  big: "9223372036854775807",
  bigUnsigned: "18446744073709551615",
  bigSigned: "-9223372036854775808",
  bigFixed: "9007199254740993",
  small: -7,
  ratio: 0.1,
  flag: true,
  text: "héllo ✓ 日本",
  blob: Buffer.from([0, 255, 1, 128]).toString("base64"),
  color: "COLOR_FAR",
  labels: { a: "1", "é": "two" },
  nestedById: { "7": { label: "seven", value: "-9007199254740993" }, "-1": { label: "minus one" } },
  samples: ["1", "-1", "9007199254740993"],
  nested: { label: "n", value: "42" },
  name: "chosen",
  maybe: 0,
};
/** A -bin entry whose bytes are not text, and a text entry. */
const BINARY_VALUE = Buffer.from([0, 1, 2, 254, 255]);
const INTEROP_METADATA = { "x-interop-blob-bin": BINARY_VALUE.toString("base64"), "x-interop-note": "plain text" };

const serviceOf = (language: Language) => `interop-${language}`;

describe("polyglot interop: TypeScript, Go and Python kits in one mesh (test/polyglot)", function () {
  this.timeout(120_000);
  let mesh: ChaosMesh;
  let typescript: Awaited<ReturnType<typeof startTypescriptInterop>>;
  let typescriptMixed: Awaited<ReturnType<typeof startTypescriptInterop>>;
  const replicas = new Map<string, Replica>();
  const tsClients = new Map<string, InteropServiceClient>();
  const typescriptLog = captureLog("info");

  const tsClient = (service: string) => {
    let client = tsClients.get(service);
    if (!client) {
      client = createClient(InteropServiceClient, service, { controlPlane: mesh.controlPlane, logger: mesh.log.logger });
      tsClients.set(service, client);
    }
    return client;
  };

  const addInterop = (name: string, language: "go" | "python", service: string) =>
    mesh.addReplica(name, {
      program: interopCommand(language, ["serve"]),
      env: { INTEROP_SERVICE: service, PROTOMESH_LOG_LEVEL: "info" },
    });

  before(async function () {
    requireLanguages(this, "go", "python");
    const services = [...LANGUAGES.map(serviceOf), MIXED];
    mesh = await ChaosMesh.start({
      meshConfig: chaosMeshConfig(3_000, [], Object.fromEntries(services.map((name) => [name, { lb_policy: "round_robin", timeout_ms: 10_000 }]))),
    });
    typescript = await startTypescriptInterop({ service: serviceOf("typescript"), controlPlane: mesh.controlPlane, logger: typescriptLog.logger });
    typescriptMixed = await startTypescriptInterop({ service: MIXED, controlPlane: mesh.controlPlane, logger: mesh.log.logger });
    for (const [name, language, service] of [
      ["go", "go", serviceOf("go")],
      ["python", "python", serviceOf("python")],
      ["mixed-go-0", "go", MIXED],
      ["mixed-go-1", "go", MIXED],
      ["mixed-python-0", "python", MIXED],
      ["mixed-python-1", "python", MIXED],
    ] as const) {
      replicas.set(name, await addInterop(name, language, service));
    }
  });

  after(async function () {
    for (const client of tsClients.values()) client.close();
    await typescript?.close();
    await typescriptMixed?.close();
    await mesh?.stop();
  });

  /** Echo of `payload` from `client` to `server`, by name, with the interop metadata: the printed form. */
  async function echo(client: Language, server: Language, payload: unknown, options: { unknownField?: boolean } = {}): Promise<PrintedCall> {
    const target = serviceOf(server);
    if (client !== "typescript") {
      const [call] = await interopCall(client, mesh.controlPlane, {
        target,
        method: "/protomesh.interop.v1.InteropService/Echo",
        request: { payload },
        metadata: INTEROP_METADATA,
        unknownField: options.unknownField,
      });
      return call;
    }
    const metadata = new Metadata();
    metadata.add("x-interop-blob-bin", BINARY_VALUE);
    metadata.add("x-interop-note", INTEROP_METADATA["x-interop-note"]);
    const request = { payload: Payload.fromJSON(payload) };
    if (options.unknownField) request.payload._unknownFields = { [(100 << 3) | 2]: [lengthDelimited("from-typescript")] };
    return new Promise((resolve) => {
      let outcome: { error: ServiceError | null; response?: EchoResponse } | undefined;
      const call = tsClient(target).echo(request, metadata, (error: ServiceError | null, response?: EchoResponse) => {
        outcome = { error, response };
      });
      // The trailers come with the status, which grpc-js reports after the callback.
      call.on("status", (callStatus) => {
        const { error, response } = outcome ?? { error: null };
        const printed: PrintedCall = {
          code: callStatus.code,
          codeName: status[callStatus.code],
          details: error?.details ?? "",
          response: response && (JSON.parse(JSON.stringify(toProto3Json(response))) as Record<string, unknown>),
          headers: [],
          trailers: printedEntries(callStatus.metadata),
          elapsedMs: 0,
        };
        if (options.unknownField) {
          const kept = response?.payload?._unknownFields?.[(100 << 3) | 2];
          printed.unknownFieldKept = kept !== undefined && kept.length === 1 && Buffer.from(kept[0]).equals(Buffer.from(lengthDelimited("from-typescript")));
        }
        resolve(printed);
      });
    });
  }

  for (const client of LANGUAGES) {
    for (const server of LANGUAGES) {
      it(`${client} calls ${server} by name: every field kind and 64-bit values beyond 2^53 round-trip, and -bin metadata arrives as bytes`, async function () {
        const call = await echo(client, server, FULL_PAYLOAD);
        assert.equal(call.codeName, "OK", JSON.stringify(call));
        const response = call.response as { payload?: unknown; language: string; metadata: Array<{ key: string; text?: string; binary?: string }> };
        assert.equal(response.language, server);
        assert.deepEqual(normalPayload(response.payload), normalPayload(FULL_PAYLOAD));
        assert.deepEqual(
          response.metadata.map((entry) => [entry.key, entry.key.endsWith("-bin") ? Buffer.from(entry.binary ?? "", "base64").toString("hex") : entry.text]),
          [
            ["x-interop-blob-bin", BINARY_VALUE.toString("hex")],
            ["x-interop-note", "plain text"],
          ],
        );
        const trailer = call.trailers.find((entry) => entry.key === "x-interop-blob-bin");
        assert.equal(Buffer.from(trailer?.binary ?? "", "base64").toString("hex"), BINARY_VALUE.toString("hex"), `trailers: ${JSON.stringify(call.trailers)}`);
      });
    }
  }

  for (const client of LANGUAGES) {
    it(`${client}: defaults stay defaults (an empty payload, and an optional field set to 0 is not unset) on every server`, async function () {
      for (const server of LANGUAGES) {
        const empty = await echo(client, server, {});
        assert.equal(empty.codeName, "OK");
        assert.deepEqual(normalPayload((empty.response as { payload?: unknown }).payload), {}, `${client} → ${server}`);
        const zero = await echo(client, server, { maybe: 0 });
        assert.deepEqual(normalPayload((zero.response as { payload?: unknown }).payload), { maybe: 0 }, `${client} → ${server}`);
      }
    });

    it(`${client}: an unknown field sent to each server comes back unchanged`, async function () {
      for (const server of LANGUAGES) {
        const call = await echo(client, server, { text: "with an unknown field" }, { unknownField: true });
        assert.equal(call.codeName, "OK");
        assert.equal(call.unknownFieldKept, true, `${client} → ${server}: ${JSON.stringify(call)}`);
      }
    });
  }

  it("spreads calls from each language over the 5 replicas of a mixed-language service (2 Go, 2 Python, 1 TypeScript)", async function () {
    const CALLS = 100;
    const endpoints = [typescriptMixed.endpoint, ...["mixed-go-0", "mixed-go-1", "mixed-python-0", "mixed-python-1"].map((name) => replicas.get(name)!.endpoint)];
    for (const client of LANGUAGES) {
      const served = new Map<string, number>();
      const count = (response: unknown) => {
        const endpoint = (response as { endpoint: string }).endpoint;
        served.set(endpoint, (served.get(endpoint) ?? 0) + 1);
      };
      if (client === "typescript") {
        for (let index = 0; index < CALLS; index += 1) {
          count(await new Promise<EchoResponse>((resolve, reject) => tsClient(MIXED).echo({ payload: undefined }, (error, response) => (error ? reject(error) : resolve(response)))));
        }
      } else {
        const calls = await interopCall(client, mesh.controlPlane, { target: MIXED, method: "/protomesh.interop.v1.InteropService/Echo", request: {}, count: CALLS });
        for (const call of calls) {
          assert.equal(call.codeName, "OK", JSON.stringify(call));
          count(call.response);
        }
      }
      const shares = endpoints.map((endpoint) => served.get(endpoint) ?? 0);
      assert.deepEqual([...served.keys()].sort(), [...endpoints].sort(), `${client}: ${JSON.stringify([...served])}`);
      // round_robin gives each of 5 about 20; 10 is a floor no balancer that uses every replica misses.
      for (const share of shares) assert.ok(share >= 10, `${client}: ${JSON.stringify([...served])}`);
    }
  });

  /** Hold through `chain` (first is called directly) from `client`, with a deadline and a request id. */
  async function hold(client: Language, chain: Language[], options: { holdMs: number; deadlineMs?: number; cancelAfterMs?: number; requestId: string }): Promise<PrintedCall> {
    const [first, ...rest] = chain.map(serviceOf);
    const request = { holdMs: options.holdMs, relayTo: rest };
    if (client !== "typescript") {
      const [call] = await interopCall(client, mesh.controlPlane, {
        target: first,
        method: "/protomesh.interop.v1.InteropService/Hold",
        request,
        deadlineMs: options.deadlineMs,
        cancelAfterMs: options.cancelAfterMs,
        requestId: options.requestId,
      });
      return call;
    }
    const metadata = new Metadata();
    metadata.set("x-request-id", options.requestId);
    const started = Date.now();
    return new Promise((resolve) => {
      const call = tsClient(first).hold(request, metadata, { deadline: options.deadlineMs === undefined ? undefined : Date.now() + options.deadlineMs }, (error: ServiceError | null, response?: HoldResponse) =>
        resolve({
          code: error?.code ?? status.OK,
          codeName: status[error?.code ?? status.OK],
          details: error?.details ?? "",
          response: response && (HoldResponseJson(response) as Record<string, unknown>),
          headers: [],
          trailers: [],
          elapsedMs: Date.now() - started,
        }),
      );
      if (options.cancelAfterMs !== undefined) setTimeout(() => call.cancel(), options.cancelAfterMs);
    });
  }

  const CHAINS: Array<[Language, Language[]]> = [
    ["typescript", ["go", "python"]],
    ["go", ["python", "typescript"]],
    ["python", ["typescript", "go"]],
  ];

  for (const [client, chain] of CHAINS) {
    it(`${client} → ${chain.join(" → ")}: each hop sees the caller's deadline less what went before it, and the same request id`, async function () {
      const requestId = `deadline-${client}`;
      const call = await hold(client, chain, { holdMs: 0, deadlineMs: 3_000, requestId });
      assert.equal(call.codeName, "OK", JSON.stringify(call));
      const hops = (call.response as { hops: Array<{ language: string; remainingMs?: string | number; requestId: string }> }).hops;
      assert.deepEqual(hops.map((hop) => hop.language), chain);
      const remaining = hops.map((hop) => Number(hop.remainingMs ?? 0));
      assert.ok(remaining[0] <= 3_000 && remaining[0] > 2_000, `first hop: ${remaining[0]} ms of 3000`);
      // Each outbound call takes the inbound budget less the 10 ms margin (and the time spent before it).
      assert.ok(remaining[1] <= remaining[0] - 9 && remaining[1] > remaining[0] - 1_000, `hops: ${JSON.stringify(hops)}`);
      assert.deepEqual(hops.map((hop) => hop.requestId), chain.map(() => requestId));
    });

    it(`${client} → ${chain.join(" → ")}: a deadline that passes stops the last hop's wait, and the client gets DEADLINE_EXCEEDED`, async function () {
      const last = chain[chain.length - 1];
      const before = holdEndedLines(last).length;
      const call = await hold(client, chain, { holdMs: 10_000, deadlineMs: 800, requestId: `expire-${client}` });
      assert.equal(call.codeName, "DEADLINE_EXCEEDED", JSON.stringify(call));
      await expectHoldEnded(last, before, 800);
    });

    it(`${client} → ${chain.join(" → ")}: cancelling the call cancels every hop, and the last stops waiting`, async function () {
      const last = chain[chain.length - 1];
      const before = holdEndedLines(last).length;
      const call = await hold(client, chain, { holdMs: 10_000, deadlineMs: 20_000, cancelAfterMs: 400, requestId: `cancel-${client}` });
      assert.equal(call.codeName, "CANCELLED", JSON.stringify(call));
      await expectHoldEnded(last, before, 400);
    });
  }

  /** The next hold on `language`'s server (after `before` of them) ended early (cancelled or its deadline), well within its 10 s. */
  async function expectHoldEnded(language: Language, before: number, afterMs: number): Promise<void> {
    const ended = () => holdEndedLines(language)[before];
    await waitFor(`${language} to log "hold ended"`, () => ended() !== undefined, 5_000, 50);
    const line = ended();
    assert.notEqual(line.reason, "done", JSON.stringify(line));
    assert.ok(Number(line.heldMs) < afterMs + 1_500, `held ${line.heldMs} ms: ${JSON.stringify(line)}`);
  }

  /** The "hold ended" log lines of `language`'s interop server. */
  function holdEndedLines(language: Language): Array<Record<string, unknown>> {
    const output = language === "typescript" ? typescriptLog.lines.map((line) => JSON.stringify(line)) : replicas.get(language)!.process!.recentOutput.split("\n");
    return output
      .filter((line) => line.includes('"hold ended"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  for (const language of ["go", "python"] as const) {
    it(`${language}: drains on SIGTERM: an in-flight call finishes OK, the control plane drops the endpoint, exit code 0`, async function () {
      const replica = await addInterop(`drain-${language}`, language, MIXED);
      replicas.set(`drain-${language}`, replica);
      const direct = createClient(InteropServiceClient, replica.endpoint, { logger: mesh.log.logger });
      try {
        const inFlight = new Promise<{ error: ServiceError | null }>((resolve) =>
          direct.hold({ holdMs: 1_000, relayTo: [] }, new Metadata(), { deadline: Date.now() + 10_000 }, (error) => resolve({ error })),
        );
        await new Promise((resolve) => setTimeout(resolve, 200));
        const stoppedAt = replica.process!.signal("SIGTERM");
        const goneAt = await mesh.waitHealth(replica, undefined, 5_000);
        assert.ok(goneAt - stoppedAt < 2_000, `left the registry ${goneAt - stoppedAt} ms after SIGTERM`);
        const { error } = await inFlight;
        assert.equal(error, null, `the in-flight call: ${error?.message}`);
        await replica.process!.exited;
        assert.equal(replica.process!.child.exitCode, 0, replica.process!.describe());
      } finally {
        direct.close();
      }
    });

    it(`${language}: grpcurl lists and calls it by reflection, and grpc_health_probe finds it SERVING`, async function () {
      const grpcurl = requireTool(this, "grpcurl");
      const probe = requireTool(this, "grpc-health-probe");
      const endpoint = replicas.get(language)!.endpoint;
      const list = await runTool(grpcurl, ["-plaintext", endpoint, "list"]);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /^protomesh\.interop\.v1\.InteropService$/m);
      assert.match(list.stdout, /^grpc\.health\.v1\.Health$/m);
      assert.match(list.stdout, /^grpc\.reflection\.v1(alpha)?\.ServerReflection$/m);
      const described = await runTool(grpcurl, ["-plaintext", endpoint, "describe", "protomesh.interop.v1.Payload"]);
      assert.equal(described.code, 0, described.stderr);
      assert.match(described.stdout, /int64 big = 1/);
      const echoed = await runTool(grpcurl, ["-plaintext", "-d", JSON.stringify({ payload: { big: "9007199254740993", bigUnsigned: "7", labels: { k: "v" } } }), endpoint, "protomesh.interop.v1.InteropService/Echo"]);
      assert.equal(echoed.code, 0, echoed.stderr);
      assert.match(echoed.stdout, /"bigUnsigned": "7"/, "reflection gives grpcurl the JSON names");
      const response = JSON.parse(echoed.stdout) as { payload: PayloadMessage; language: string };
      assert.equal(response.language, language);
      assert.deepEqual(normalPayload(response.payload), normalPayload({ big: "9007199254740993", bigUnsigned: "7", labels: { k: "v" } }));
      const health = await runTool(probe, [`-addr=${endpoint}`]);
      assert.equal(health.code, 0, health.stdout + health.stderr);
      assert.match(health.stdout + health.stderr, /SERVING/);
      const unknown = await runTool(grpcurl, ["-plaintext", "-d", "{}", endpoint, "protomesh.interop.v1.InteropService/Nope"]);
      assert.notEqual(unknown.code, 0);
    });
  }

  it("sees every replica of every language HEALTHY in the control plane", function () {
    for (const replica of ["go", "python", "mixed-go-0", "mixed-python-0"].map((name) => replicas.get(name)!)) {
      assert.equal(mesh.healthOf(replica), HealthState.HEALTH_STATE_HEALTHY, replica.name);
    }
  });
});

/** The bytes of a length-delimited field's value: its length, then the UTF-8 text. */
function lengthDelimited(text: string): Uint8Array {
  const bytes = Buffer.from(text, "utf8");
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

/** An EchoResponse in proto3 JSON, as the other languages print it. */
function toProto3Json(response: EchoResponse): unknown {
  return {
    payload: response.payload ? Payload.toJSON(response.payload) : undefined,
    language: response.language,
    endpoint: response.endpoint,
    metadata: response.metadata.map((entry) => ({ key: entry.key, text: entry.text, binary: Buffer.from(entry.binary).toString("base64") })),
  };
}

function HoldResponseJson(response: HoldResponse): unknown {
  return { hops: response.hops.map((hop) => ({ ...hop, remainingMs: String(hop.remainingMs) })) };
}

function printedEntries(metadata: Metadata): PrintedCall["trailers"] {
  return Object.entries(metadata.getMap())
    .filter(([key]) => key.startsWith("x-interop-"))
    .map(([key, value]) => (typeof value === "string" ? { key, text: value } : { key, binary: Buffer.from(value).toString("base64") }));
}
