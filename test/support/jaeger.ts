import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as path from "node:path";
import { spansOf } from "./otlp-receiver";
import type { OtlpExport, ReceivedSpan } from "./otlp-receiver";
import { freePorts } from "./ports";
import { repoRoot } from "./tools";
import { waitFor } from "./wait";

/**
 * A real Jaeger (v2, all in one, spans in memory; `make jaeger`) on free ports of 127.0.0.1, with
 * deploy/jaeger.yaml, as `make jaeger-up` runs it: the kits export to its OTLP/HTTP receiver, and a
 * test reads a trace back from its query API as the Jaeger UI would.
 */
export interface Jaeger {
  /** The OTLP/HTTP base URL, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly otlpUrl: string;
  /** The spans Jaeger holds of `traceId` (32 hex digits), none when it holds no such trace. */
  trace(traceId: string): Promise<ReceivedSpan[]>;
  stop(): Promise<void>;
}

/** Starts `binary` and resolves once its health check answers (at most 30 s). */
export async function startJaeger(binary: string): Promise<Jaeger> {
  const [otlp, query, queryGrpc, health] = await freePorts(4);
  const address = (port: number) => `127.0.0.1:${port}`;
  const child: ChildProcess = spawn(binary, ["--config", path.join(repoRoot(), "deploy", "jaeger.yaml")], {
    env: {
      ...process.env,
      JAEGER_OTLP_HTTP_ADDRESS: address(otlp),
      JAEGER_QUERY_HTTP_ADDRESS: address(query),
      JAEGER_QUERY_GRPC_ADDRESS: address(queryGrpc),
      JAEGER_HEALTH_ADDRESS: address(health),
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let output = "";
  child.stderr!.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  try {
    await waitFor(
      "Jaeger's health check",
      async () => {
        if (child.exitCode !== null) throw new Error(`jaeger exited with code ${child.exitCode}: ${output}`);
        return (await fetch(`http://${address(health)}/status`).catch(() => undefined))?.ok === true;
      },
      30_000,
      100,
    );
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return {
    otlpUrl: `http://${address(otlp)}`,
    async trace(traceId) {
      const response = await fetch(`http://${address(query)}/api/v3/traces/${traceId}`);
      if (response.status === 404) return [];
      if (!response.ok) throw new Error(`Jaeger's query API answered ${response.status}: ${await response.text()}`);
      const body = (await response.json()) as { result?: OtlpExport };
      return spansOf(body.result ?? {});
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}
