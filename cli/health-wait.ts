import { setTimeout as delay } from "node:timers/promises";
import { Metadata, credentials, status } from "@grpc/grpc-js";
import type { ChannelOptions } from "@grpc/grpc-js";
import {
  HealthCheckResponse_ServingStatus,
  HealthClient,
  healthCheckResponse_ServingStatusToJSON,
} from "../generated/ts/health/v1/health";
import { OVERALL_HEALTH } from "../mesh/health";
import { createLogger } from "../mesh/logger";
import { clientTls } from "../mesh/tls";
import type { MeshTlsOptions } from "../mesh/tls";

/** The grpc.health.v1 status name a healthy server answers with. */
export const SERVING = healthCheckResponse_ServingStatusToJSON(HealthCheckResponse_ServingStatus.SERVING);
/** Deadline of each health Check; grpc.health.v1 asks every caller of Check to set one. */
export const HEALTH_CHECK_DEADLINE_MS = 1_000;

const HEALTH_RETRY_INTERVAL_MS = 100;
// grpc-js waits 1 s before its first reconnection (gRPC's connection-backoff.md); a server still
// starting would cost up to a second each. Reconnect quickly instead: the server is local.
const HEALTH_CHANNEL_OPTIONS: ChannelOptions = {
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 200,
};

/**
 * Resolves once `address` answers grpc.health.v1 Check for the whole server ("") with SERVING.
 * Every Check has a deadline and waits for the server to accept connections (wait-for-ready);
 * rejects after `timeoutMs` naming the last answer, or when `signal` aborts. Closes its channel.
 * With `tls` it calls over mTLS with those files, accepting any workload of their trust domain.
 */
export async function waitForServing(address: string, timeoutMs: number, signal?: AbortSignal, tls?: MeshTlsOptions): Promise<void> {
  const client = meshHealthClient(address, tls);
  const giveUpAt = Date.now() + timeoutMs;
  let lastAnswer = "no answer";
  try {
    for (;;) {
      signal?.throwIfAborted();
      const remainingMs = giveUpAt - Date.now();
      if (remainingMs <= 0) {
        throw new Error(`${address} did not report ${SERVING} within ${timeoutMs} ms (last answer: ${lastAnswer})`);
      }
      lastAnswer = await checkHealth(client, Math.min(remainingMs, HEALTH_CHECK_DEADLINE_MS), signal);
      if (lastAnswer === SERVING) return;
      // NOT_SERVING between the bind and the first setServing, or a server that is not health.v1.
      await delay(Math.max(0, Math.min(HEALTH_RETRY_INTERVAL_MS, giveUpAt - Date.now())), undefined, { signal });
    }
  } finally {
    client.close();
  }
}

function meshHealthClient(address: string, tls: MeshTlsOptions | undefined): HealthClient {
  if (tls === undefined) return new HealthClient(address, credentials.createInsecure(), HEALTH_CHANNEL_OPTIONS);
  const secured = clientTls(tls, undefined, createLogger({ level: "silent" }));
  return new HealthClient(address, secured.credentials, { ...HEALTH_CHANNEL_OPTIONS, ...secured.channelOptions });
}

/** One Check; resolves to the status name, or to the gRPC code and details of a failed call. */
function checkHealth(client: HealthClient, deadlineMs: number, signal?: AbortSignal): Promise<string> {
  return new Promise((resolve) => {
    const onAbort = () => call.cancel();
    const call = client.check(
      { service: OVERALL_HEALTH },
      new Metadata({ waitForReady: true }),
      { deadline: Date.now() + deadlineMs },
      (error, response) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(error ? `${status[error.code]}: ${error.details}` : healthCheckResponse_ServingStatusToJSON(response.status));
      },
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
