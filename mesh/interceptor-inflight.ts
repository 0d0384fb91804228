import { EventEmitter, once } from "node:events";
import type { ServerInterceptingCallInterface, StatusObject } from "@grpc/grpc-js";
import { ORCA_STREAM_PATH } from "./load-report";
import type { LoadShedder } from "./load-shedder";

/**
 * Methods whose streams live as long as the caller wants (health Watch, the out-of-band ORCA
 * load reports). They do not hold up a drain: they are ended by the server (a Watch once it has
 * seen NOT_SERVING).
 */
export const LONG_LIVED_METHODS: ReadonlySet<string> = new Set([
  "/grpc.health.v1.Health/Watch",
  ORCA_STREAM_PATH,
]);

/** What the tracker does with the calls of one method, worked out on the method's first call. */
export interface TrackedMethod {
  /** Its calls are kept for {@link InflightTracker.endLongLived} rather than counted. */
  readonly isLongLived: boolean;
  /** The shedder that admits its calls; undefined when they are never shed. */
  readonly shedder: LoadShedder | undefined;
}

/**
 * Counts the calls a server has in flight (for logs and load reports), and keeps the long-lived
 * ones (health Watch) so that a drain can end them with a status once they have seen NOT_SERVING.
 * With a load shedder, each call's method says whether the shedder admits it. Owned by one
 * MeshServer, and driven by its call observer (observer-server.ts), which every call passes through
 * once: the tracker adds no interceptor layer of its own.
 */
export class InflightTracker {
  constructor(private readonly shedder?: LoadShedder) {}

  private count = 0;
  private readonly events = new EventEmitter();
  private readonly longLived = new Set<ServerInterceptingCallInterface>();
  private readonly methods = new Map<string, TrackedMethod>();

  /** How calls to `path` are tracked; the same object for every call of the method. */
  method(path: string): TrackedMethod {
    let tracked = this.methods.get(path);
    if (tracked === undefined) {
      tracked = Object.freeze({
        isLongLived: LONG_LIVED_METHODS.has(path),
        shedder: this.shedder !== undefined && !this.shedder.isExempt(path) ? this.shedder : undefined,
      });
      this.methods.set(path, tracked);
    }
    return tracked;
  }

  /** A call of `method` has started; `call` is what {@link endLongLived} ends, for a long-lived one. */
  enter(method: TrackedMethod, call: ServerInterceptingCallInterface): void {
    if (method.isLongLived) this.longLived.add(call);
    else this.count += 1;
  }

  /** A call that {@link enter} counted has ended (once per call). */
  leave(method: TrackedMethod, call: ServerInterceptingCallInterface): void {
    if (method.isLongLived) {
      this.longLived.delete(call);
    } else {
      this.count -= 1;
      if (this.count === 0) this.events.emit("idle");
    }
  }

  /** Number of calls in flight, not counting long-lived streams. */
  get inflight(): number {
    return this.count;
  }

  /**
   * Resolves once no call (other than long-lived streams) is in flight: every handler has sent its
   * status, though its last bytes may still be on their way out (a server that must not lose them
   * waits for `tryShutdown` instead).
   */
  async idle(): Promise<void> {
    if (this.count === 0) return;
    await once(this.events, "idle");
  }

  /** Ends every long-lived stream with `callStatus`, after what was already written to it. */
  endLongLived(callStatus: Pick<StatusObject, "code" | "details">): void {
    for (const call of [...this.longLived]) {
      call.sendStatus(callStatus);
    }
  }
}
