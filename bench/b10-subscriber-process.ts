import { Metadata, credentials, experimental, makeGenericClientConstructor } from "@grpc/grpc-js";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import { CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, XDS_TYPE_URLS, loadXdsProtos } from "../mesh/controlplane/xds-protos";
import { epochMs } from "./call-record";
import { flag, serveControl } from "./control-channel";

/**
 * Entry point of B10's xDS subscribers: one raw ADS stream (state of the world, the envoy protos
 * the control plane loads, one channel each) per entry of `--services`, each watching Listener,
 * RouteConfiguration, Cluster and ClusterLoadAssignment of that service as grpc-js-xds does for
 * xds:///<service>, every response ACKed. When the control plane goes away a stream is opened
 * again as grpc-js-xds' xDS client does (xds-client.ts, 1.14): at once with waitForReady if the
 * last stream received a message, else after grpc-js's own BackoffTimeout; and, as that client
 * does, an EDS response that does not carry the watched cluster changes nothing (EDS is not a
 * full-state type): the last endpoints are kept.
 *
 * Every EDS is recorded with its time and what changed per endpoint ("address:port": absent,
 * UNHEALTHY, HEALTHY), so that the harness can tell when each endpoint appeared, vanished and came
 * back. IPC ops: log (every stream's events since the last call), state (per stream: HEALTHY and
 * listed endpoints now, EDS received), stop.
 */

/** Health of an endpoint in one subscriber's last EDS; "" when it is not listed. */
export type ListedHealth = "" | "HEALTHY" | "UNHEALTHY" | string;

/** What happened on one subscriber's stream. */
export type SubscriberEvent =
  | { atMs: number; kind: "eds"; changes: Array<[string, ListedHealth, ListedHealth]>; duplicates: number }
  | { atMs: number; kind: "held" }
  | { atMs: number; kind: "closed"; detail: string }
  | { atMs: number; kind: "opened" };

/** A subscriber's state as the `state` op reports it. */
export interface SubscriberState {
  service: string;
  healthy: number;
  listed: number;
  eds: number;
}

interface DiscoveryResponse {
  version_info: string;
  resources: Array<Record<string, unknown>>;
  type_url: string;
  nonce: string;
}

type AdsCall = ClientDuplexStream<unknown, DiscoveryResponse>;

type LbEndpoint = { endpoint?: { address?: { socket_address?: { address: string; port_value: number } } }; health_status?: string };

/** The endpoints of a decoded ClusterLoadAssignment, and how many of its entries repeat an earlier one. */
function endpointsOf(assignment: Record<string, unknown>): { endpoints: Map<string, string>; duplicates: number } {
  const endpoints = new Map<string, string>();
  let duplicates = 0;
  for (const locality of (assignment.endpoints ?? []) as Array<{ lb_endpoints?: LbEndpoint[] }>) {
    for (const lbEndpoint of locality.lb_endpoints ?? []) {
      const socket = lbEndpoint.endpoint?.address?.socket_address;
      if (!socket) continue;
      const id = `${socket.address}:${socket.port_value}`;
      if (endpoints.has(id)) duplicates += 1;
      endpoints.set(id, String(lbEndpoint.health_status));
    }
  }
  return { endpoints, duplicates };
}

class Subscriber {
  readonly events: SubscriberEvent[] = [];
  private endpoints = new Map<string, string>();
  private edsCount = 0;
  /** Per type, the version last accepted: a reopened stream names it, as grpc-js-xds' xDS client does. */
  private readonly versions = new Map<string, string>();
  private call: AdsCall | undefined;
  private isStopped = false;
  // grpc-js's connection backoff, as grpc-js-xds' adsBackoff: run at each stream start, reset by a message.
  private readonly backoff = new experimental.BackoffTimeout(() => this.open());
  private readonly client: { StreamAggregatedResources(metadata: Metadata): AdsCall; close(): void };
  private readonly node: { id: string; user_agent_name: string };

  constructor(
    readonly service: string,
    target: string,
    index: number,
  ) {
    const Ads = makeGenericClientConstructor(loadXdsProtos().adsService, "AggregatedDiscoveryService");
    this.client = new Ads(target, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }) as unknown as typeof this.client;
    this.node = { id: `b10-${process.pid}-${index}`, user_agent_name: "b10-subscriber" };
    this.backoff.unref();
    this.open();
  }

  get state(): SubscriberState {
    const healthy = [...this.endpoints.values()].filter((health) => health === "HEALTHY").length;
    return { service: this.service, healthy, listed: this.endpoints.size, eds: this.edsCount };
  }

  stop(): void {
    this.isStopped = true;
    this.backoff.stop();
    this.call?.cancel();
    this.client.close();
  }

  private open(): void {
    if (this.isStopped || this.call) return;
    const call = this.client.StreamAggregatedResources(new Metadata({ waitForReady: true }));
    this.call = call;
    this.backoff.runOnce();
    let isOpened = false;
    call.on("data", (response: DiscoveryResponse) => {
      this.backoff.stop();
      this.backoff.reset();
      if (!isOpened) {
        isOpened = true;
        this.events.push({ atMs: epochMs(), kind: "opened" });
      }
      if (response.type_url === CLUSTER_LOAD_ASSIGNMENT_TYPE_URL) this.onEds(response);
      this.versions.set(response.type_url, response.version_info);
      call.write({ node: this.node, version_info: response.version_info, resource_names: [this.service], type_url: response.type_url, response_nonce: response.nonce });
    });
    call.on("error", () => undefined); // the status below says it
    call.on("status", (status: { code: number; details: string }) => {
      this.events.push({ atMs: epochMs(), kind: "closed", detail: `${status.code} ${status.details}` });
      this.call = undefined;
      if (!this.backoff.isRunning()) this.open();
    });
    for (const typeUrl of XDS_TYPE_URLS) {
      const version_info = this.versions.get(typeUrl) ?? "";
      call.write({ node: this.node, resource_names: [this.service], type_url: typeUrl, response_nonce: "", version_info });
    }
  }

  private onEds(response: DiscoveryResponse): void {
    const atMs = epochMs();
    const assignment = response.resources.find((resource) => resource.cluster_name === this.service);
    if (!assignment) {
      this.events.push({ atMs, kind: "held" });
      return;
    }
    this.edsCount += 1;
    const { endpoints, duplicates } = endpointsOf(assignment);
    const changes: Array<[string, ListedHealth, ListedHealth]> = [];
    for (const [id, health] of endpoints) {
      const before = this.endpoints.get(id) ?? "";
      if (before !== health) changes.push([id, before, health]);
    }
    for (const [id, health] of this.endpoints) if (!endpoints.has(id)) changes.push([id, health, ""]);
    this.endpoints = endpoints;
    this.events.push({ atMs, kind: "eds", changes, duplicates });
  }
}

function main(): void {
  const target = flag("control-plane");
  const subscribers = flag("services")
    .split(",")
    .map((service, index) => new Subscriber(service, target, index));
  serveControl(
    {
      log: () => subscribers.map((subscriber) => subscriber.events.splice(0)),
      state: () => subscribers.map((subscriber) => subscriber.state),
      stop: () => {
        subscribers.forEach((subscriber) => subscriber.stop());
        setImmediate(() => process.exit(0));
      },
    },
    {},
  );
}

main();
