import { EventEmitter, once } from "node:events";
import { ServerInterceptingCall } from "@grpc/grpc-js";
import type { ServerInterceptor, ServerInterceptingCallInterface, StatusObject } from "@grpc/grpc-js";
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

/**
 * Counts the calls a server has in flight (for logs and load reports), and keeps the long-lived
 * ones (health Watch) so that a drain can end them with a status once they have seen NOT_SERVING.
 * With a load shedder, it asks it to admit each call as its metadata arrives and answers a call it
 * refuses with the shedder's status, before the handler (and the interceptors after this one) see
 * it. Owned by one MeshServer.
 */
export class InflightTracker {
  constructor(private readonly shedder?: LoadShedder) {}

  private count = 0;
  private readonly events = new EventEmitter();
  private readonly longLived = new Set<ServerInterceptingCallInterface>();

  /** The interceptor to install on the server; it must run for every call. */
  readonly interceptor: ServerInterceptor = (methodDescriptor, call) => {
    const isLongLived = LONG_LIVED_METHODS.has(methodDescriptor.path);
    let isDone = false;
    const done = () => {
      if (isDone) return;
      isDone = true;
      if (isLongLived) {
        this.longLived.delete(intercepting);
      } else {
        this.count -= 1;
        if (this.count === 0) this.events.emit("idle");
      }
    };
    if (!isLongLived) this.count += 1;
    const shedder = this.shedder !== undefined && !this.shedder.isExempt(methodDescriptor.path) ? this.shedder : undefined;
    let isAdmitted = false;
    const release = () => {
      if (!isAdmitted) return;
      isAdmitted = false;
      shedder!.release();
    };
    const intercepting = new ServerInterceptingCall(call, {
      start: (next) =>
        next(
          shedder === undefined
            ? { onCancel: done }
            : {
                onReceiveMetadata: (metadata, nextMetadata) => {
                  if (!shedder.tryAdmit()) {
                    call.sendStatus(shedder.shedStatus());
                    return;
                  }
                  isAdmitted = true;
                  nextMetadata(metadata);
                },
                onCancel: () => {
                  release();
                  done();
                },
              },
        ),
      sendStatus: (callStatus, next) => {
        release();
        done();
        next(callStatus);
      },
    });
    if (isLongLived) this.longLived.add(intercepting);
    return intercepting;
  };

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
