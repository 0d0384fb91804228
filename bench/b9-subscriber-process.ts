import { credentials, makeGenericClientConstructor } from "@grpc/grpc-js";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import { CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, XDS_TYPE_URLS, loadXdsProtos } from "../mesh/controlplane/xds-protos";
import { epochMs } from "./call-record";
import { flag, serveControl } from "./control-channel";

/**
 * Entry point of B9's xDS subscribers: `--streams` raw ADS streams (state of the world, the
 * envoy protos the control plane itself loads) to `--control-plane`, one per subscriber, each
 * watching one service as grpc-js-xds does for xds:///<service>: Listener, RouteConfiguration,
 * Cluster and ClusterLoadAssignment of that name, every response ACKed. Raw streams rather than
 * grpc-js-xds channels so that 200 subscribers fit beside the control plane on 2 cores and every
 * response can be counted and timed; what the control plane does per stream is the same.
 * `--services` is the comma-separated service of each stream.
 * IPC ops: expect {change, service, address, port, present} (report when every stream of that
 * service sees the endpoint listed and HEALTHY, or absent), arrivals (and clear them), counts (ADS responses
 * per stream and type since start), stop.
 */

interface DiscoveryResponse {
  version_info: string;
  resources: Array<Record<string, unknown>>;
  type_url: string;
  nonce: string;
}

interface Expectation {
  change: number;
  service: string;
  endpoint: string;
  isPresent: boolean;
}

interface Subscriber {
  service: string;
  counts: Record<string, number>;
  /** Endpoints of the last ClusterLoadAssignment: "address:port" → health_status. */
  endpoints: Map<string, string>;
}

/** The "address:port" → health_status of a decoded ClusterLoadAssignment. */
function endpointsOf(assignment: Record<string, unknown> | undefined): Map<string, string> {
  const result = new Map<string, string>();
  type LbEndpoint = { endpoint?: { address?: { socket_address?: { address: string; port_value: number } } }; health_status?: string };
  const localities = (assignment?.endpoints ?? []) as Array<{ lb_endpoints?: LbEndpoint[] }>;
  for (const locality of localities) {
    for (const lbEndpoint of locality.lb_endpoints ?? []) {
      const socket = lbEndpoint.endpoint?.address?.socket_address;
      if (socket) result.set(`${socket.address}:${socket.port_value}`, String(lbEndpoint.health_status));
    }
  }
  return result;
}

function main(): void {
  const target = flag("control-plane");
  const services = flag("services").split(",");
  const Ads = makeGenericClientConstructor(loadXdsProtos().adsService, "AggregatedDiscoveryService");
  // One channel per subscriber, as every client process has its own connection to the control plane.
  const subscribers: Subscriber[] = [];
  let expectation: Expectation | undefined;
  let seen = new Set<number>();
  let listed = new Set<number>();
  // An added endpoint is first listed UNHEALTHY (registered, not probed yet), then HEALTHY: both times are kept.
  const arrivals: Array<{ change: number; atMs: number; isFinal: boolean }> = [];
  const check = (index: number) => {
    const subscriber = subscribers[index];
    if (!expectation || subscriber.service !== expectation.service || seen.has(index)) return;
    const health = subscriber.endpoints.get(expectation.endpoint);
    const atMs = epochMs();
    if (expectation.isPresent && health !== undefined && !listed.has(index)) {
      listed.add(index);
      arrivals.push({ change: expectation.change, atMs, isFinal: false });
    }
    const isMet = expectation.isPresent ? health === "HEALTHY" : health === undefined;
    if (!isMet) return;
    seen.add(index);
    arrivals.push({ change: expectation.change, atMs, isFinal: true });
  };
  services.forEach((service, index) => {
    const subscriber: Subscriber = { service, counts: {}, endpoints: new Map() };
    subscribers.push(subscriber);
    const client = new Ads(target, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
    const call = (client as unknown as { StreamAggregatedResources(): ClientDuplexStream<unknown, DiscoveryResponse> })
      .StreamAggregatedResources();
    const node = { id: `b9-${process.pid}-${index}`, user_agent_name: "b9-subscriber" };
    call.on("data", (response: DiscoveryResponse) => {
      subscriber.counts[response.type_url] = (subscriber.counts[response.type_url] ?? 0) + 1;
      if (response.type_url === CLUSTER_LOAD_ASSIGNMENT_TYPE_URL) {
        subscriber.endpoints = endpointsOf(response.resources.find((resource) => resource.cluster_name === service));
        check(index);
      }
      call.write({ node, version_info: response.version_info, resource_names: [service], type_url: response.type_url, response_nonce: response.nonce });
    });
    call.on("error", (error) => process.stderr.write(`b9 subscriber ${index}: ${String(error)}\n`));
    for (const typeUrl of XDS_TYPE_URLS) call.write({ node, resource_names: [service], type_url: typeUrl, response_nonce: "", version_info: "" });
  });
  serveControl(
    {
      expect: (args) => {
        const { change, service, address, port, present } = args as { change: number; service: string; address: string; port: number; present: boolean };
        expectation = { change, service, endpoint: `${address}:${port}`, isPresent: present };
        seen = new Set();
        listed = new Set();
        subscribers.forEach((_, index) => check(index));
        return null;
      },
      arrivals: () => arrivals.splice(0),
      counts: () => subscribers.map((subscriber) => ({ service: subscriber.service, counts: { ...subscriber.counts } })),
      stop: () => setImmediate(() => process.exit(0)),
    },
    {},
  );
}

main();
