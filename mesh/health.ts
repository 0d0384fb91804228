import { HealthImplementation } from "grpc-health-check";
import type { Server } from "@grpc/grpc-js";

/** The health status of a whole server, under the empty service name (grpc.health.v1). */
export const OVERALL_HEALTH = "";

/**
 * The grpc.health.v1 service of one server (Check, Watch and List from grpc-health-check), with
 * every service the server hosts kept under its fully-qualified name plus the overall "" entry.
 */
export class HealthReporter {
  private readonly implementation = new HealthImplementation();
  private readonly services = new Set<string>([OVERALL_HEALTH]);
  private isServingNow = false;

  /** Adds the Health service to `server`. Called once, before the server starts. */
  addToServer(server: Server): void {
    this.implementation.addToServer(server);
  }

  /** Starts reporting `service`, with the server's current status. */
  track(service: string): void {
    this.services.add(service);
    this.implementation.setStatus(service, this.isServingNow ? "SERVING" : "NOT_SERVING");
  }

  /** Sets one service, or every tracked service when none is named, to SERVING or NOT_SERVING. */
  setServing(isServing: boolean, service?: string): void {
    const value = isServing ? "SERVING" : "NOT_SERVING";
    if (service !== undefined) {
      this.services.add(service);
      this.implementation.setStatus(service, value);
      return;
    }
    this.isServingNow = isServing;
    for (const name of this.services) this.implementation.setStatus(name, value);
  }

  /** Names of the services this server reports on (the overall "" entry included). */
  get trackedServices(): string[] {
    return [...this.services];
  }
}
