import { Metadata, credentials, status } from "@grpc/grpc-js";
import type { ChannelCredentials, ChannelOptions, ClientReadableStream, ClientUnaryCall, ServiceError } from "@grpc/grpc-js";
import {
  HealthCheckResponse_ServingStatus,
  HealthClient,
} from "../../generated/ts/health/v1/health";
import type { HealthCheckResponse } from "../../generated/ts/health/v1/health";
import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import { Backoff, CONNECTION_BACKOFF } from "../backoff";
import type { BackoffOptions } from "../backoff";
import { systemClock } from "../clock";
import type { Cancel, Clock } from "../clock";
import type { Logger } from "../logger";
import { clientTls } from "../tls";
import type { MeshTlsOptions } from "../tls";
import { CertificateFileWatcher } from "../tls-certificate-files";
import type { Registry, RegistryEntry } from "./registry";

/**
 * Waits between Watch attempts on an endpoint that does not answer: gRPC's connection backoff
 * (mesh/backoff.ts: 1 s, ×1.6, jitter 0.2), capped at 2 s so that an endpoint that comes back is
 * seen again within that.
 */
export const PROBE_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ ...CONNECTION_BACKOFF, maxMs: 2_000 });
/** Reconnection backoff of a probe's channel (grpc-js channel options): quick, the endpoint is near. */
export const PROBE_CHANNEL_OPTIONS: ChannelOptions = Object.freeze({
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": PROBE_BACKOFF.maxMs,
});
/**
 * Period of the heartbeat Check sent beside each Watch. A Watch stream alone cannot tell a process
 * that is frozen (SIGSTOP, a stuck event loop) with its socket open from one that is merely quiet;
 * a Check that gets no answer within {@link PROBE_HEARTBEAT_TIMEOUT_MS} can. A unary call rather
 * than HTTP/2 keepalive pings, which servers such as grpc-go refuse at this rate (gRFC A8).
 */
export const PROBE_HEARTBEAT_MS = 1_000;
/** How long a heartbeat Check may go unanswered: a frozen endpoint leaves rotation within period + timeout. */
export const PROBE_HEARTBEAT_TIMEOUT_MS = 1_000;
/**
 * How late the heartbeat's timeout may fire before the prober counts the delay as its own stall
 * (a control plane short of CPU, a long GC) rather than the endpoint's, and gives the endpoint
 * that much more time.
 */
export const PROBE_STALL_SLACK_MS = 50;

/** Options of a {@link HealthProber}. */
export interface ProberOptions {
  /** Times heartbeats, their timeouts and Watch retries (default: the system clock). */
  clock?: Clock;
  /** Randomness of the retry backoff's jitter, in [0, 1) (default Math.random). */
  random?: () => number;
  /**
   * Probe over mTLS with these files (the control plane's own identity): each endpoint must prove
   * the SPIFFE ID of the service it registered as, or it is UNHEALTHY and never in rotation.
   */
  tls?: MeshTlsOptions;
}

/** A probe channel's credentials and options, for the endpoints of one service. */
interface ProbeChannel {
  credentials: ChannelCredentials;
  options: ChannelOptions;
}

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
  /** Per service, its probes by endpoint id and health service name. */
  private readonly probes = new Map<string, Map<string, EndpointProbe>>();
  private readonly logger: Logger;
  private readonly unsubscribe: () => void;
  /** Over mTLS: one watcher of the certificate files for every probe, credentials per service. */
  private readonly tlsFiles: CertificateFileWatcher | undefined;
  private readonly channels = new Map<string, ProbeChannel>();

  constructor(
    private readonly registry: Registry,
    logger: Logger,
    private readonly options: ProberOptions = {},
  ) {
    this.logger = logger.child({ component: "controlplane.prober" });
    this.tlsFiles = options.tls && new CertificateFileWatcher(options.tls, this.logger);
    this.unsubscribe = registry.onChange((service) => (service === undefined ? this.reconcileAll() : this.reconcile(service)));
    this.reconcileAll();
  }

  /** Stops every Watch and closes every probe channel. */
  close(): void {
    this.unsubscribe();
    for (const probes of this.probes.values()) for (const probe of probes.values()) probe.stop();
    this.probes.clear();
  }

  /** Reconciles every service the registry or the prober knows (the static entries were replaced). */
  private reconcileAll(): void {
    for (const service of new Set([...this.probes.keys(), ...this.registry.serviceNames()])) this.reconcile(service);
  }

  /**
   * Starts a probe for each new endpoint of `service` (or changed health service name), stops
   * those gone. Called with the service a registry change touched: the cost is that service's
   * endpoints, not the mesh's.
   */
  private reconcile(service: string): void {
    const wanted = new Map<string, RegistryEntry>();
    for (const entry of this.registry.entries(service)) wanted.set(`${entry.id}/${entry.endpoint.healthServiceName}`, entry);
    let probes = this.probes.get(service);
    if (!probes) {
      if (wanted.size === 0) return;
      this.probes.set(service, (probes = new Map()));
    }
    for (const [key, probe] of probes) {
      if (!wanted.has(key)) {
        probe.stop();
        probes.delete(key);
      }
    }
    for (const [key, entry] of wanted) {
      if (probes.has(key)) continue;
      const report = (health: HealthState, detail: string) => this.registry.setHealth(service, entry.id, health, detail);
      const probe = new EndpointProbe(service, entry, this.logger, report, this.options, this.channelOf(service));
      probes.set(key, probe);
      probe.start();
    }
    if (probes.size === 0) {
      this.probes.delete(service);
      this.channels.delete(service);
    }
  }

  /** How the probes of `service` connect: plaintext, or mTLS requiring the service's SPIFFE ID. */
  private channelOf(service: string): ProbeChannel {
    let channel = this.channels.get(service);
    if (channel === undefined) {
      if (this.options.tls === undefined) {
        channel = { credentials: credentials.createInsecure(), options: PROBE_CHANNEL_OPTIONS };
      } else {
        const tls = clientTls(this.options.tls, service, this.logger, this.tlsFiles);
        channel = { credentials: tls.credentials, options: { ...PROBE_CHANNEL_OPTIONS, ...tls.channelOptions } };
      }
      this.channels.set(service, channel);
    }
    return channel;
  }
}

/** One endpoint's Watch stream, re-opened with backoff until stopped, and its heartbeat. */
class EndpointProbe {
  private readonly client: HealthClient;
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private call: ClientReadableStream<HealthCheckResponse> | undefined;
  private cancelRetry: Cancel | undefined;
  private cancelBeat: Cancel | undefined;
  private cancelBeatTimeout: Cancel | undefined;
  private pendingBeat: ClientUnaryCall | undefined;
  private isHeartbeatFailing = false;
  private isStopped = false;
  private readonly healthServiceName: string;

  constructor(
    private readonly service: string,
    entry: RegistryEntry,
    private readonly logger: Logger,
    private readonly report: (health: HealthState, detail: string) => void,
    options: ProberOptions,
    channel: ProbeChannel,
  ) {
    this.healthServiceName = entry.endpoint.healthServiceName;
    this.clock = options.clock ?? systemClock;
    this.backoff = new Backoff(PROBE_BACKOFF, options.random);
    // A channel of its own, so that a probe never shares a connection (or its failures) with traffic.
    this.client = new HealthClient(entry.id, channel.credentials, channel.options);
  }

  start(): void {
    if (this.isStopped) return;
    if (this.cancelBeat === undefined && this.pendingBeat === undefined) this.scheduleBeat();
    // A Watch has no deadline: it is meant to stay open for the endpoint's life (grpc.health.v1).
    const call = this.client.watch({ service: this.healthServiceName });
    this.call = call;
    call.on("data", (response: HealthCheckResponse) => {
      if (this.call !== call) return;
      this.backoff.reset();
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
    this.cancelRetry?.();
    this.cancelBeat?.();
    this.cancelBeatTimeout?.();
    this.pendingBeat?.cancel();
    this.call?.cancel();
    this.client.close();
  }

  private scheduleBeat(): void {
    this.cancelBeat = this.clock.schedule(() => {
      this.cancelBeat = undefined;
      this.beat();
    }, PROBE_HEARTBEAT_MS);
  }

  /**
   * One heartbeat Check. No answer within PROBE_HEARTBEAT_TIMEOUT_MS, or a failure, marks the
   * endpoint UNHEALTHY (the Watch may still look open); the first success after failures reports
   * what the Check says. While the Watch is healthy and answering, heartbeats change nothing. The
   * next beat is scheduled once this one is settled, so a frozen endpoint has one Check pending.
   */
  private beat(): void {
    if (this.isStopped) return;
    if (this.call === undefined) {
      this.scheduleBeat(); // the Watch is being retried; it reports on its own
      return;
    }
    let isSettled = false;
    const settle = (failure: string | undefined, response?: HealthCheckResponse) => {
      if (isSettled || this.isStopped) return;
      isSettled = true;
      this.cancelBeatTimeout?.();
      this.cancelBeatTimeout = undefined;
      this.pendingBeat = undefined;
      this.scheduleBeat();
      if (failure !== undefined) {
        if (!this.isHeartbeatFailing) {
          this.isHeartbeatFailing = true;
          this.report(HealthState.HEALTH_STATE_UNHEALTHY, `heartbeat failed: ${failure}`);
        }
      } else if (this.isHeartbeatFailing && response) {
        this.isHeartbeatFailing = false;
        this.report(...healthOf(response));
      }
    };
    // The timeout below is the probe's, on its clock, and the one that decides; grpc-js's deadline
    // is only a backstop on the wall clock, later, so that it never decides first.
    const deadline = Date.now() + 3 * PROBE_HEARTBEAT_TIMEOUT_MS;
    this.pendingBeat = this.client.check({ service: this.healthServiceName }, new Metadata(), { deadline }, (error, response) => {
      // NOT_FOUND: the server does not know this service name; its Watch reports that already.
      if (error && error.code === status.NOT_FOUND) settle(undefined);
      else settle(error ? `${status[error.code]}: ${error.details}` : undefined, response);
    });
    const pending = this.pendingBeat;
    const timeOut = () => {
      settle(`no answer within ${PROBE_HEARTBEAT_TIMEOUT_MS} ms`);
      pending.cancel();
    };
    this.armBeatTimeout(PROBE_HEARTBEAT_TIMEOUT_MS, timeOut);
  }

  /**
   * Calls `timeOut` once the endpoint has had `ms` of the prober's attention. Timers run before
   * the event loop reads its sockets, so after a stall an answer that came in time may be waiting
   * unread: the verdict waits one turn (setImmediate runs after the sockets are read), and a timer
   * that fired more than PROBE_STALL_SLACK_MS late gives the endpoint the time the prober lost.
   */
  private armBeatTimeout(ms: number, timeOut: () => void): void {
    const dueAt = this.clock.now() + ms;
    this.cancelBeatTimeout = this.clock.schedule(() => {
      const lateMs = this.clock.now() - dueAt;
      if (lateMs > PROBE_STALL_SLACK_MS) {
        this.armBeatTimeout(lateMs, timeOut);
        return;
      }
      const verdict = setImmediate(timeOut);
      this.cancelBeatTimeout = () => clearImmediate(verdict);
    }, ms);
  }

  private retry(detail: string): void {
    if (this.isStopped || this.cancelRetry) return;
    this.call = undefined;
    this.report(HealthState.HEALTH_STATE_UNHEALTHY, detail);
    const retryInMs = this.backoff.next();
    this.logger.debug({ service: this.service, detail, retryInMs }, "health probe failed");
    this.cancelRetry = this.clock.schedule(() => {
      this.cancelRetry = undefined;
      this.start();
    }, retryInMs);
  }
}

/** What a grpc.health.v1 answer means for rotation: SERVING is HEALTHY, anything else is not. */
function healthOf(response: HealthCheckResponse): [HealthState, string] {
  const detail = HealthCheckResponse_ServingStatus[response.status] ?? String(response.status);
  const isServing = response.status === HealthCheckResponse_ServingStatus.SERVING;
  return [isServing ? HealthState.HEALTH_STATE_HEALTHY : HealthState.HEALTH_STATE_UNHEALTHY, detail];
}
