import { connectivityState, credentials, experimental, status } from "@grpc/grpc-js";
import type { ClientReadableStream, ServiceError } from "@grpc/grpc-js";
import { HealthCheckResponse_ServingStatus, HealthClient } from "../generated/ts/health/v1/health";
import type { HealthCheckResponse } from "../generated/ts/health/v1/health";
import { Backoff, CONNECTION_BACKOFF } from "./backoff";
import { systemClock } from "./clock";
import type { Cancel, Clock } from "./clock";
import type { Logger } from "./logger";

type ConnectivityStateListener = experimental.ConnectivityStateListener;
type SubchannelInterface = experimental.SubchannelInterface;

/** What a health-checked subchannel knows of its server's health. */
export type Health =
  /** No Watch answer yet on this connection. */
  | "unknown"
  | "serving"
  | "not-serving"
  /** The server has no grpc.health.v1 (UNIMPLEMENTED): checking is off for it, it counts as serving (A17). */
  | "unchecked";

/** Time and randomness of the Watch retries, injectable for tests. */
export interface HealthCheckSources {
  clock?: Clock;
  random?: () => number;
}

/**
 * What a policy remembers of its connections' health between the subchannel wrappers it makes for
 * them, keyed by the real subchannel. grpc-js policies make new wrappers for the same connection
 * on every address-list update (round_robin and pick_first rebuild their children), and a wrapper
 * that started from "unknown" would report CONNECTING until its Watch answers: every client would
 * queue its calls for a round trip whenever any endpoint of the service changed. A new wrapper of a
 * connection still READY starts from what the last one knew; its own Watch corrects it.
 */
export type HealthMemory = WeakMap<object, Health>;

/**
 * A subchannel whose connectivity state, as the load-balancing policy above sees it, is its
 * server's health (gRFC A17, client-side health checking): while the connection is READY, a
 * grpc.health.v1 Watch for `serviceName` runs on it, and the subchannel reports
 * - CONNECTING until the first answer,
 * - READY while the answer is SERVING,
 * - TRANSIENT_FAILURE for any other answer, and after the Watch failed until a new one says SERVING;
 * a Watch that fails is re-opened at once if it had answered, else after gRPC's connection backoff
 * (A17). A server without the Health service (the Watch ends UNIMPLEMENTED) is used as if serving,
 * with one warning, as A17 says. States other than READY pass through unchanged.
 *
 * Because policies see a state, not a flag, every one of them honours it the same way: pick_first
 * moves on to the next address, round_robin, p2c_ewma and least_request (one pick_first child per
 * endpoint) leave the endpoint out. (grpc-js's own health flag, `setHealthy`, which
 * outlier_detection uses, is seen only by pick_first children of those policies.)
 */
export class HealthCheckedSubchannel extends experimental.BaseSubchannelWrapper {
  private readonly listeners = new Set<ConnectivityStateListener>();
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private reported: connectivityState;
  private health: Health = "unknown";
  private keepaliveTime = -1;
  private client: HealthClient | undefined;
  private call: ClientReadableStream<HealthCheckResponse> | undefined;
  private cancelRetry: Cancel | undefined;
  private isDestroyed = false;

  private readonly onChildState: ConnectivityStateListener = (_subchannel, _previous, next, keepaliveTime, errorMessage) => {
    this.keepaliveTime = keepaliveTime;
    if (next === connectivityState.READY) {
      this.health = "unknown";
      this.startWatch();
    } else {
      // A new connection starts from "unknown" (A17): nothing of this one is worth remembering.
      this.memory.delete(this.child.getRealSubchannel());
      this.stopWatch();
    }
    this.update(errorMessage);
  };

  constructor(
    child: SubchannelInterface,
    private serviceName: string,
    private readonly logger: Logger,
    private readonly memory: HealthMemory = new WeakMap(),
    sources: HealthCheckSources = {},
  ) {
    super(child);
    this.clock = sources.clock ?? systemClock;
    this.backoff = new Backoff(CONNECTION_BACKOFF, sources.random);
    if (child.getConnectivityState() === connectivityState.READY) {
      this.health = memory.get(child.getRealSubchannel()) ?? "unknown";
    }
    this.reported = this.stateNow();
    child.addConnectivityStateListener(this.onChildState);
    if (child.getConnectivityState() === connectivityState.READY) this.startWatch();
  }

  /** The subchannel this one wraps, which a picker hands on to the policy above (grpc-js's wrapping rule). */
  getWrappedSubchannel(): SubchannelInterface {
    return this.child;
  }

  /** Watches `serviceName` from now on (a config update named another one). */
  setServiceName(serviceName: string): void {
    if (serviceName === this.serviceName) return;
    this.serviceName = serviceName;
    this.memory.delete(this.child.getRealSubchannel());
    if (this.child.getConnectivityState() === connectivityState.READY) {
      this.stopWatch();
      this.health = "unknown";
      this.startWatch();
      this.update();
    }
  }

  /** True once the policy released it (its last unref): its Watch has stopped for good. */
  isReleased(): boolean {
    return this.isDestroyed;
  }

  override getConnectivityState(): connectivityState {
    return this.reported;
  }

  override addConnectivityStateListener(listener: ConnectivityStateListener): void {
    this.listeners.add(listener);
  }

  override removeConnectivityStateListener(listener: ConnectivityStateListener): void {
    this.listeners.delete(listener);
  }

  protected override destroy(): void {
    this.isDestroyed = true;
    if (this.child.getConnectivityState() === connectivityState.READY && this.health !== "unknown") {
      this.memory.set(this.child.getRealSubchannel(), this.health);
    }
    this.child.removeConnectivityStateListener(this.onChildState);
    this.stopWatch();
    this.client?.close();
    this.client = undefined;
    super.destroy();
  }

  private stateNow(): connectivityState {
    const state = this.child.getConnectivityState();
    if (state !== connectivityState.READY) return state;
    switch (this.health) {
      case "unknown":
        return connectivityState.CONNECTING;
      case "serving":
      case "unchecked":
        return connectivityState.READY;
      case "not-serving":
        return connectivityState.TRANSIENT_FAILURE;
    }
  }

  private update(errorMessage?: string): void {
    const next = this.stateNow();
    if (next === this.reported) return;
    const previous = this.reported;
    this.reported = next;
    const detail = next === connectivityState.TRANSIENT_FAILURE && this.health === "not-serving"
      ? `${this.getAddress()}: health check of "${this.serviceName}" is not SERVING`
      : errorMessage;
    for (const listener of [...this.listeners]) listener(this, previous, next, this.keepaliveTime, detail);
  }

  private startWatch(): void {
    if (this.isDestroyed || this.health === "unchecked" || this.call) return;
    this.cancelRetry?.();
    this.cancelRetry = undefined;
    // The Watch rides this very connection (the subchannel's own channel), so it reports on what calls use.
    this.client ??= new HealthClient("unused", credentials.createInsecure(), { channelOverride: this.child.getChannel() });
    // A Watch has no deadline: it is meant to stay open for the connection's life (grpc.health.v1).
    const call = this.client.watch({ service: this.serviceName });
    let hasAnswered = false;
    this.call = call;
    call.on("data", (response: HealthCheckResponse) => {
      if (this.call !== call) return;
      hasAnswered = true;
      this.backoff.reset();
      this.health = response.status === HealthCheckResponse_ServingStatus.SERVING ? "serving" : "not-serving";
      this.update();
    });
    const ended = (error?: ServiceError) => {
      if (this.call !== call) return;
      this.call = undefined;
      if (error?.code === status.UNIMPLEMENTED) {
        this.logger.warn({ endpoint: this.getAddress() }, "server has no grpc.health.v1 service; client-side health checking is off for it");
        this.health = "unchecked";
        this.update();
        return;
      }
      this.health = "not-serving";
      this.update(error ? `health check failed: ${status[error.code]}: ${error.details}` : "health check stream ended");
      const delayMs = hasAnswered ? 0 : this.backoff.next();
      this.logger.debug(
        { endpoint: this.getAddress(), code: error ? status[error.code] : "OK", retryInMs: delayMs },
        "health check stream ended; watching again",
      );
      this.cancelRetry = this.clock.schedule(() => {
        this.cancelRetry = undefined;
        if (this.child.getConnectivityState() === connectivityState.READY) this.startWatch();
      }, delayMs, { unref: true });
    };
    call.on("error", ended);
    call.on("end", () => ended());
  }

  private stopWatch(): void {
    this.cancelRetry?.();
    this.cancelRetry = undefined;
    const call = this.call;
    this.call = undefined;
    call?.cancel();
  }
}
