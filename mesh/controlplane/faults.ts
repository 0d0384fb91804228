import { randomBytes } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { Cancel, Clock } from "../clock";
import { MeshError } from "../errors";
import type { Logger } from "../logger";

/** Most faults active at once: each is a route or an override in its service's RouteConfiguration. */
export const MAX_FAULTS = 1_000;

/** A share of calls held back before they are sent. */
export interface FaultDelay {
  delayMs: number;
  /** Share of calls, in percent (0.0001 to 100). */
  percent: number;
}

/** A share of calls failed, without sending them, with a status code. */
export interface FaultAbort {
  code: status;
  /** Share of calls, in percent (0.0001 to 100). */
  percent: number;
}

/** A fault as InjectFault asks for it, validated (fault-validation.ts). */
export interface FaultSpec {
  /** Mesh service name. */
  service: string;
  /** Full method name ("pkg.Service/Method"), or "" for every method of the service. */
  method: string;
  /** At least one of delay and abort is set. */
  delay: FaultDelay | undefined;
  abort: FaultAbort | undefined;
  /** How long it lasts from now. */
  ttlMs: number;
}

/** A fault in force until `expiresAt`. */
export interface ActiveFault extends Omit<FaultSpec, "ttlMs"> {
  id: string;
  /** Ms since the epoch, on the store's clock. */
  expiresAt: number;
}

interface Entry {
  fault: ActiveFault;
  cancelExpiry: Cancel;
}

/**
 * The active faults, in memory only: what the control plane delivers to clients as the xDS fault
 * filter. One fault per service and method (a new one replaces it); each ends on a timer of its
 * own that does not keep the process alive, and `close` cancels them all. Every change calls the
 * `onChange` listeners with the service it touched, so its resources are pushed.
 */
export class FaultStore {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(service: string) => void>();
  private readonly logger: Logger;
  private readonly clock: Clock;

  constructor(options: { logger: Logger; clock: Clock }) {
    this.logger = options.logger.child({ component: "controlplane.faults" });
    this.clock = options.clock;
  }

  /**
   * Puts a fault in force for `spec.ttlMs` and returns it, with the fault of the same service and
   * method it replaced. RESOURCE_EXHAUSTED when {@link MAX_FAULTS} are active and none is replaced.
   */
  inject(spec: FaultSpec): { fault: ActiveFault; replaced: ActiveFault | undefined } {
    const { ttlMs, ...target } = spec;
    const replaced = [...this.entries.values()].find(
      ({ fault }) => fault.service === spec.service && fault.method === spec.method,
    )?.fault;
    if (!replaced && this.entries.size >= MAX_FAULTS) {
      throw new MeshError(status.RESOURCE_EXHAUSTED, `at most ${MAX_FAULTS} faults may be active; clear some first`);
    }
    if (replaced) this.remove(replaced.id);
    const fault: ActiveFault = { ...target, id: this.newId(), expiresAt: this.clock.now() + ttlMs };
    const cancelExpiry = this.clock.schedule(() => this.expire(fault.id), ttlMs, { unref: true });
    this.entries.set(fault.id, { fault, cancelExpiry });
    this.logger.info({ ...describe(fault), ttlMs, replaced: replaced?.id }, "fault injected");
    this.changed(fault.service);
    return { fault, replaced };
  }

  /** The active faults of `service` ("" for every service), by service, then method ("" first). */
  list(service = ""): ActiveFault[] {
    return [...this.entries.values()]
      .map(({ fault }) => fault)
      .filter((fault) => service === "" || fault.service === service)
      .sort((a, b) => compare(a.service, b.service) || compare(a.method, b.method));
  }

  /** Clears the fault `id` and returns it; undefined when no active fault has that id. */
  clear(id: string): ActiveFault | undefined {
    const fault = this.remove(id);
    if (fault) {
      this.logger.info(describe(fault), "fault cleared");
      this.changed(fault.service);
    }
    return fault;
  }

  /** Clears every fault of `service` ("" for every service) and returns them, sorted as `list`. */
  clearAll(service = ""): ActiveFault[] {
    const cleared = this.list(service);
    for (const fault of cleared) this.remove(fault.id);
    for (const fault of cleared) this.logger.info(describe(fault), "fault cleared");
    for (const touched of new Set(cleared.map((fault) => fault.service))) this.changed(touched);
    return cleared;
  }

  /** Calls `listener` with the service after every change of its faults; returns a function that removes it. */
  onChange(listener: (service: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Milliseconds `fault` has left (0 once due). */
  remainingMs(fault: ActiveFault): number {
    return Math.max(0, fault.expiresAt - this.clock.now());
  }

  /** Cancels every expiry timer (the control plane stops); the faults end with the process. */
  close(): void {
    for (const entry of this.entries.values()) entry.cancelExpiry();
    this.entries.clear();
  }

  private expire(id: string): void {
    const fault = this.remove(id);
    if (!fault) return;
    this.logger.info(describe(fault), "fault expired");
    this.changed(fault.service);
  }

  private remove(id: string): ActiveFault | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    entry.cancelExpiry();
    this.entries.delete(id);
    return entry.fault;
  }

  /** A random id, so that one kept from before a restart of the control plane clears nothing new. */
  private newId(): string {
    for (;;) {
      const id = randomBytes(4).toString("hex");
      if (!this.entries.has(id)) return id;
    }
  }

  private changed(service: string): void {
    for (const listener of this.listeners) listener(service);
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A fault's fields for a log line. */
function describe(fault: ActiveFault): Record<string, unknown> {
  return {
    id: fault.id,
    service: fault.service,
    method: fault.method || undefined,
    delayMs: fault.delay?.delayMs,
    delayPercent: fault.delay?.percent,
    abortCode: fault.abort === undefined ? undefined : status[fault.abort.code],
    abortPercent: fault.abort?.percent,
  };
}
