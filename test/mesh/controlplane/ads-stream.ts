import { credentials, loadPackageDefinition } from "@grpc/grpc-js";
import type { ClientDuplexStream } from "@grpc/grpc-js";
import { loadXdsProtos } from "../../../mesh/controlplane/xds-protos";
import { waitFor } from "../../support/wait";

/** A DiscoveryResponse as proto-loader decodes it (proto field names, Any with "@type"). */
export interface AdsResponse {
  version_info: string;
  type_url: string;
  nonce: string;
  resources: Array<Record<string, unknown>>;
}

type AdsClient = {
  StreamAggregatedResources(): ClientDuplexStream<Record<string, unknown>, AdsResponse>;
  close(): void;
};

/**
 * A raw ADS stream (state of the world) to a control plane, on a channel of its own, that ACKs
 * every response as a gRPC client does and keeps them in order of arrival. Responses on one
 * stream arrive in the order they were written, so a response awaited after a change is also a
 * barrier: anything the change caused on this stream has arrived before it.
 */
export class AdsStream {
  readonly responses: AdsResponse[] = [];
  private readonly client: AdsClient;
  private readonly call: ClientDuplexStream<Record<string, unknown>, AdsResponse>;
  private readonly names = new Map<string, string[]>();
  /** Per type, the version and nonce of the last response, which a request carries (an ACK). */
  private readonly acked = new Map<string, { version: string; nonce: string }>();
  private taken = 0;

  /**
   * `resumeVersion`: the version_info of the first request of each type, as a client that
   * reconnects with resources cached from an earlier stream sends it (grpc-js-xds, Envoy).
   */
  constructor(
    address: string,
    private readonly nodeId = "ads-stream",
    private readonly options: { resumeVersion?: string } = {},
  ) {
    const grpcObject = loadPackageDefinition(loadXdsProtos().packageDefinition) as unknown as {
      envoy: { service: { discovery: { v3: { AggregatedDiscoveryService: new (...args: unknown[]) => AdsClient } } } };
    };
    this.client = new grpcObject.envoy.service.discovery.v3.AggregatedDiscoveryService(address, credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
    });
    this.call = this.client.StreamAggregatedResources();
    this.call.on("data", (response: AdsResponse) => {
      this.responses.push(response);
      this.acked.set(response.type_url, { version: response.version_info, nonce: response.nonce });
      this.write(response.type_url);
    });
    this.call.on("error", () => undefined);
  }

  /** Subscribes to `names` of `typeUrl` (empty: a wildcard for LDS and CDS), replacing what it asked before. */
  subscribe(typeUrl: string, names: string[]): void {
    this.names.set(typeUrl, names);
    this.write(typeUrl);
  }

  /** Resolves with the next `count` responses not taken yet, in order of arrival. */
  async next(count = 1, timeoutMs = 5_000): Promise<AdsResponse[]> {
    await waitFor(`${count} more ADS responses to ${this.nodeId}`, () => this.responses.length >= this.taken + count, timeoutMs);
    const batch = this.responses.slice(this.taken, this.taken + count);
    this.taken += count;
    return batch;
  }

  /** Responses that arrived and were not taken by `next`. */
  get untaken(): AdsResponse[] {
    return this.responses.slice(this.taken);
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }

  private write(typeUrl: string): void {
    const acked = this.acked.get(typeUrl);
    this.call.write({
      node: { id: this.nodeId },
      type_url: typeUrl,
      resource_names: this.names.get(typeUrl) ?? [],
      version_info: acked?.version ?? this.options.resumeVersion ?? "",
      response_nonce: acked?.nonce ?? "",
    });
  }
}

/** The names of a response's resources (cluster_name for a ClusterLoadAssignment). */
export function resourceNames(response: AdsResponse): string[] {
  return response.resources.map((resource) => String(resource.name ?? resource.cluster_name));
}

/** The ports of a ClusterLoadAssignment response's endpoints, in order. */
export function endpointPorts(response: AdsResponse): number[] {
  type Locality = { lb_endpoints: Array<{ endpoint: { address: { socket_address: { port_value: number } } } }> };
  return response.resources.flatMap((resource) =>
    (resource.endpoints as Locality[]).flatMap((locality) => locality.lb_endpoints.map((lb) => lb.endpoint.address.socket_address.port_value)),
  );
}
