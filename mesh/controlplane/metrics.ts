import { Counter } from "prom-client";
import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import type { MeshMetrics } from "../metrics";
import { scrapedGauge } from "../metrics";
import type { Registry } from "./registry";
import type { XdsServer } from "./xds-server";

/** A resource type's short name for labels: "ClusterLoadAssignment" for envoy's type URL. */
function typeName(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf(".") + 1);
}

/** The state label of a registry health state: HEALTHY, UNHEALTHY, PENDING. */
function stateName(health: HealthState): string {
  return HealthState[health]?.replace(/^HEALTH_STATE_/, "") ?? String(health);
}

/**
 * The control plane's own metrics, beside its server's grpc_server_* ones:
 * - protomesh_controlplane_endpoints{service, state}: registered and static endpoints per health
 *   state (HEALTHY, UNHEALTHY, PENDING), read at each scrape;
 * - protomesh_xds_streams: ADS streams open;
 * - protomesh_xds_responses_total{type}: DiscoveryResponses sent, by resource type;
 * - protomesh_xds_nacks_total{type}: responses clients rejected (their previous version stays).
 * Returns the function that stops counting (the control plane stopped).
 */
export function addControlPlaneMetrics(metrics: MeshMetrics, registry: Registry, xds: XdsServer): () => void {
  const stops = [
    scrapedGauge(
      metrics.registry,
      "protomesh_controlplane_endpoints",
      "Endpoints the control plane knows, by service and health state.",
      ["service", "state"],
      (gauge) => {
        for (const service of registry.serviceNames()) {
          const counts = new Map<string, number>();
          for (const entry of registry.entries(service)) counts.set(stateName(entry.health), (counts.get(stateName(entry.health)) ?? 0) + 1);
          for (const [state, count] of counts) gauge.inc({ service, state }, count);
        }
      },
    ),
    scrapedGauge(metrics.registry, "protomesh_xds_streams", "ADS streams open on the control plane.", [], (gauge) => gauge.inc(xds.streamCount)),
  ];
  const responses = counterIn(metrics, "protomesh_xds_responses_total", "xDS responses the control plane sent, by resource type.");
  const nacks = counterIn(metrics, "protomesh_xds_nacks_total", "xDS responses clients rejected (NACK), by resource type.");
  stops.push(xds.onSend((typeUrl) => responses.inc({ type: typeName(typeUrl) })));
  stops.push(
    xds.onAck((ack) => {
      if (ack.error !== undefined) nacks.inc({ type: typeName(ack.typeUrl) });
    }),
  );
  return () => {
    for (const stop of stops) stop();
  };
}

/** The counter `name` of the registry (one per process, however many control planes it runs). */
function counterIn(metrics: MeshMetrics, name: string, help: string): Counter<"type"> {
  const existing = metrics.registry.getSingleMetric(name);
  if (existing !== undefined) return existing as Counter<"type">;
  return new Counter({ name, help, labelNames: ["type"], registers: [metrics.registry] });
}
