import { Metadata, credentials, status } from "@grpc/grpc-js";
import type { ChannelOptions, ClientReadableStream, ServiceError } from "@grpc/grpc-js";
import { RegistryServiceClient } from "../generated/ts/protomesh/registry/v1/registry";
import type { Service, WatchServicesResponse } from "../generated/ts/protomesh/registry/v1/registry";
import { Backoff } from "../mesh/backoff";
import type { BackoffOptions } from "../mesh/backoff";
import { systemClock } from "../mesh/clock";
import type { Cancel, Clock } from "../mesh/clock";
import { createLogger } from "../mesh/logger";
import { clientTls } from "../mesh/tls";
import type { MeshTlsOptions } from "../mesh/tls";
import { CONTROL_PLANE_SERVICE } from "../mesh/names";

/**
 * Deadline of one WatchServices stream. The stream is meant to stay open, but no call is without a
 * deadline (ARCHITECTURE.md): when it runs out the watch simply opens the next stream, which
 * starts with the full view again.
 */
export const WATCH_STREAM_DEADLINE_MS = 10 * 60_000;
/**
 * Waits before re-opening a stream that failed: gRPC's connection backoff (mesh/backoff.ts) from
 * 250 ms, the control plane being local, up to 5 s, jittered so that watchers do not return together.
 */
export const REWATCH_BACKOFF: Partial<BackoffOptions> = Object.freeze({ initialMs: 250, maxMs: 5_000 });

// grpc-js waits 1 s before its first reconnection (gRPC's connection-backoff.md); the control
// plane is local, so reconnect quickly instead, as cli/health-wait.ts does.
const WATCH_CHANNEL_OPTIONS: ChannelOptions = {
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1_000,
};

/**
 * Follows a control plane's registry with protomesh.registry.v1 WatchServices: `onView` gets the
 * full list of services and endpoints once at the start and again after every change. A stream
 * that fails or ends is re-opened with backoff ({@link REWATCH_BACKOFF}; `onError` hears of
 * failures, with how many in a row) until `close()`, which cancels the stream and closes the channel.
 */
export class RegistryWatch {
  private readonly client: RegistryServiceClient;
  private readonly waiters = new Set<() => void>();
  private call: ClientReadableStream<WatchServicesResponse> | undefined;
  private cancelReopen: Cancel | undefined;
  private isClosed = false;
  private view: Service[] = [];
  private failuresInARow = 0;
  private readonly clock: Clock;
  private readonly backoff: Backoff;

  /** `options` pin the clock and the jitter's randomness (tests); `tls`, the files to call an mTLS control plane with. */
  constructor(
    controlPlane: string,
    private readonly onView: (services: Service[]) => void,
    private readonly onError: (error: ServiceError, failuresInARow: number) => void = () => undefined,
    options: { clock?: Clock; random?: () => number; tls?: MeshTlsOptions } = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.backoff = new Backoff(REWATCH_BACKOFF, options.random);
    const tls = options.tls && clientTls(options.tls, CONTROL_PLANE_SERVICE, createLogger({ level: "silent" }));
    this.client = new RegistryServiceClient(controlPlane, tls?.credentials ?? credentials.createInsecure(), {
      ...WATCH_CHANNEL_OPTIONS,
      ...tls?.channelOptions,
    });
    this.open();
  }

  /** The last view received: every service with its endpoints; empty before the first. */
  get services(): Service[] {
    return this.view;
  }

  /**
   * Resolves to true as soon as `predicate` holds for the view (now or after a change), to false
   * after `timeoutMs` or when `signal` aborts or the watch closes.
   */
  until(predicate: (services: Service[]) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const settle = (isMet: boolean) => {
        cancelTimeout();
        signal?.removeEventListener("abort", onAbort);
        this.waiters.delete(check);
        resolve(isMet);
      };
      const check = () => {
        if (this.isClosed) settle(false);
        else if (predicate(this.view)) settle(true);
      };
      const onAbort = () => settle(false);
      const cancelTimeout = this.clock.schedule(() => settle(false), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (signal?.aborted) return settle(false);
      this.waiters.add(check);
      check();
    });
  }

  /** Stops watching: no `onView` or `onError` after this returns, and waiters resolve to false. Idempotent. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const check of [...this.waiters]) check();
    this.cancelReopen?.();
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.client.close();
  }

  private open(): void {
    if (this.isClosed) return;
    const call = this.client.watchServices(
      { service: "" },
      new Metadata({ waitForReady: true }),
      { deadline: Date.now() + WATCH_STREAM_DEADLINE_MS },
    );
    this.call = call;
    call.on("data", (response: WatchServicesResponse) => {
      if (this.call !== call) return;
      this.failuresInARow = 0;
      this.backoff.reset();
      this.view = response.services;
      for (const check of [...this.waiters]) check();
      this.onView(response.services);
    });
    call.on("error", (error: ServiceError) => {
      if (this.call !== call) return;
      if (error.code !== status.DEADLINE_EXCEEDED) {
        this.failuresInARow += 1;
        this.onError(error, this.failuresInARow);
      }
      this.reopen(call);
    });
    call.on("end", () => this.reopen(call));
  }

  private reopen(call: ClientReadableStream<WatchServicesResponse>): void {
    if (this.call !== call || this.isClosed) return;
    this.call = undefined;
    this.cancelReopen = this.clock.schedule(() => this.open(), this.backoff.next());
  }
}
