import { Metadata } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { HealthClient } from "../generated/ts/health/v1/health";
import { createClient } from "../mesh/client";
import { createLogger } from "../mesh/logger";
import { epochMs } from "./call-record";
import { flag, serveControl } from "./control-channel";

/**
 * Entry point of B10's caller: a mesh client (createClient, a real grpc-js-xds channel dialling
 * `xds:///<--service>` through the control plane) that sends grpc.health.v1.Health/Check through
 * the mesh every `--interval-ms`, each with a `--deadline-ms` deadline, whatever the control plane
 * is doing. The endpoints are the replicas' health servers, so a call's peer names the endpoint
 * the channel picked. IPC ops: calls (every finished call since the last, [issued at, code, peer]),
 * stop.
 */

/** A finished call: when it was issued (epoch ms), its status code, the endpoint that answered. */
export type CallOutcome = [number, number, string];

function main(): void {
  const intervalMs = Number(flag("interval-ms", "20"));
  const deadlineMs = Number(flag("deadline-ms", "1000"));
  const client = createClient(HealthClient, flag("service"), {
    logger: createLogger({ name: "b10-caller", level: "warn" }),
    controlPlane: flag("control-plane"),
  });
  const outcomes: CallOutcome[] = [];
  const timer = setInterval(() => {
    const issuedAt = epochMs();
    const call = client.check({ service: "" }, new Metadata(), { deadline: Date.now() + deadlineMs }, (error: ServiceError | null) => {
      // A failed call's peer says whether it reached an endpoint (slow to answer) or was never sent (no endpoint picked).
      outcomes.push([issuedAt, error ? error.code : 0, call.getPeer()]);
    });
  }, intervalMs);
  serveControl(
    {
      calls: () => outcomes.splice(0),
      stop: () => {
        clearInterval(timer);
        client.close();
        setImmediate(() => process.exit(0));
      },
    },
    {},
  );
}

main();
