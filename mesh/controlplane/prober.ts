import { Metadata, credentials, status } from "@grpc/grpc-js";
import type { ClientReadableStream, ServiceError } from "@grpc/grpc-js";
import {
  HealthCheckResponse_ServingStatus,
  HealthClient,
} from "../../generated/ts/health/v1/health";
import type { HealthCheckResponse } from "../../generated/ts/health/v1/health";
import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import type { Logger } from "../logger";
import type { Registry, RegistryEntry } from "./registry";

/** First wait before re-opening a failed Watch; doubles up to {@link PROBE_MAX_BACKOFF_MS} (gRPC connection backoff, simplified). */
export const PROBE_INITIAL_BACKOFF_MS = 100;
/** Longest wait between Watch attempts on an endpoint that does not answer. */
export const PROBE_MAX_BACKOFF_MS = 2_000;
/**
 * Period of the heartbeat Check sent beside each Watch. A Watch stream alone cannot tell a process
 * that is frozen (SIGSTOP, a stuck event loop) with its socket open from one that is merely quiet;
 * a Check that gets no answer within {@link PROBE_HEARTBEAT_TIMEOUT_MS} can. A unary call rather
 * than HTTP/2 keepalive pings, which servers such as grpc-go refuse at this rate (gRFC A8).
 */
export const PROBE_HEARTBEAT_MS = 1_000;
/** Deadline of one heartbeat Check: a frozen endpoint leaves rotation within period + timeout. */
export const PROBE_HEARTBEAT_TIMEOUT_MS = 1_000;

/**
 * Watches every endpoint of the registry with grpc.health.v1 Watch (gRFC A17's protocol, run by the
 * control plane instead of each client) and records the answers: SERVING → HEALTHY; NOT_SERVING,
 * SERVICE_UNKNOWN, or a stream that fails or ends → UNHEALTHY, and the Watch is re-opened with
 * backoff. A Watch stream learns of a change as soon as the server sends it, and of a closed or
 * reset connection at once, so an endpoint leaves rotation within a round trip of either. A
 * heartbeat Check beside the Watch catches a process that hangs with its socket open within
 * PROBE_HEARTBEAT_MS + PROBE_HEARTBEAT_TIMEOUT_MS (its lease would take far longer to expire).
 */
export class HealthProber {
  private readonly probes = new Map<string, EndpointProbe>();
  private readonly logger: Logger;
  private readonly unsubscribe: () => void;

  constructor(private readonly registry: Registry, logger: Logger) {
    this.logger = logger.child({ component: "controlplane.prober" });
    this.unsubscribe = registry.onChange(() => this.reconcile());
    this.reconcile();
  }

  /** Stops every Watch and closes every probe channel. */
  close(): void {
    this.unsubscribe();
    for (const probe of this.probes.values()) probe.stop();
    this.probes.clear();
  }

  /** Starts a probe for each new endpoint (or changed health service name), stops those gone. */
  private reconcile(): void {
    const wanted = new Map<string, RegistryEntry & { service: string }>();
    for (const service of this.registry.serviceNames()) {
      for (const entry of this.registry.entries(service)) {
        wanted.set(`${service}/${entry.id}/${entry.endpoint.healthServiceName}`, { ...entry, service });
      }
    }
    for (const [key, probe] of this.probes) {
      if (!wanted.has(key)) {
        probe.stop();
        this.probes.delete(key);
      }
    }
    for (const [key, entry] of wanted) {
      if (this.probes.has(key)) continue;
      const probe = new EndpointProbe(entry.service, entry, this.logger, (health, detail) =>
        this.registry.setHealth(entry.service, entry.id, health, detail),
      );
      this.probes.set(key, probe);
      probe.start();
    }
  }
}

/** One endpoint's Watch stream, re-opened with backoff until stopped. */
class EndpointProbe {
  private readonly client: HealthClient;
  private call: ClientReadableStream<HealthCheckResponse> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private isHeartbeatFailing = false;
  private backoffMs = PROBE_INITIAL_BACKOFF_MS;
  private isStopped = false;
  private readonly healthServiceName: string;

  constructor(
    private readonly service: string,
    entry: RegistryEntry,
    private readonly logger: Logger,
    private readonly report: (health: HealthState, detail: string) => void,
  ) {
    this.healthServiceName = entry.endpoint.healthServiceName;
    // A channel of its own, so that a probe never shares a connection (or its failures) with traffic.
    this.client = new HealthClient(entry.id, credentials.createInsecure(), {
      "grpc.initial_reconnect_backoff_ms": PROBE_INITIAL_BACKOFF_MS,
      "grpc.max_reconnect_backoff_ms": PROBE_MAX_BACKOFF_MS,
    });
  }

  start(): void {
    if (this.isStopped) return;
    this.heartbeat ??= setInterval(() => this.beat(), PROBE_HEARTBEAT_MS);
    // A Watch has no deadline: it is meant to stay open for the endpoint's life (grpc.health.v1).
    const call = this.client.watch({ service: this.healthServiceName });
    this.call = call;
    call.on("data", (response: HealthCheckResponse) => {
      if (this.call !== call) return;
      this.backoffMs = PROBE_INITIAL_BACKOFF_MS;
      this.report(...healthOf(response));
    });
    call.on("error", (error: ServiceError) => {
      if (this.call === call) this.retry(`probe failed: ${status[error.code]}: ${error.details}`);
    });
    call.on("end", () => {
      if (this.call === call) this.retry("probe stream ended");
    });
  }

  stop(): void {
    this.isStopped = true;
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    this.call?.cancel();
    this.client.close();
  }

  /**
   * One heartbeat Check. A failure marks the endpoint UNHEALTHY (the Watch may still look open);
   * the first success after failures reports what the Check says. While the Watch is healthy and
   * answering, heartbeats change nothing.
   */
  private beat(): void {
    if (this.isStopped || this.call === undefined) return;
    const deadline = Date.now() + PROBE_HEARTBEAT_TIMEOUT_MS;
    this.client.check({ service: this.healthServiceName }, new Metadata(), { deadline }, (error, response) => {
      if (this.isStopped) return;
      if (error) {
        if (!this.isHeartbeatFailing && error.code !== status.NOT_FOUND) {
          this.isHeartbeatFailing = true;
          this.report(HealthState.HEALTH_STATE_UNHEALTHY, `heartbeat failed: ${status[error.code]}: ${error.details}`);
        }
        return;
      }
      if (this.isHeartbeatFailing) {
        this.isHeartbeatFailing = false;
        this.report(...healthOf(response));
      }
    });
  }

  private retry(detail: string): void {
    if (this.isStopped || this.timer) return;
    this.call = undefined;
    this.report(HealthState.HEALTH_STATE_UNHEALTHY, detail);
    this.logger.debug({ service: this.service, detail, retryInMs: this.backoffMs }, "health probe failed");
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.start();
    }, this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, PROBE_MAX_BACKOFF_MS);
  }
}

/** What a grpc.health.v1 answer means for rotation: SERVING is HEALTHY, anything else is not. */
function healthOf(response: HealthCheckResponse): [HealthState, string] {
  const detail = HealthCheckResponse_ServingStatus[response.status] ?? String(response.status);
  const isServing = response.status === HealthCheckResponse_ServingStatus.SERVING;
  return [isServing ? HealthState.HEALTH_STATE_HEALTHY : HealthState.HEALTH_STATE_UNHEALTHY, detail];
}
