import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { Logger } from "../logger";
import type { XdsResource } from "./resources";
import { CLUSTER_TYPE_URL, LISTENER_TYPE_URL, XDS_TYPE_URLS } from "./xds-protos";

/** Where the xDS server gets resources from. Called on every request and after every change. */
export interface ResourceSource {
  /** The resource of `typeUrl` named `name`, or undefined when none is served (now). */
  resource(typeUrl: string, name: string): XdsResource | undefined;
  /** Every name of `typeUrl` served now: the answer to a wildcard (empty) LDS or CDS subscription. */
  names(typeUrl: string): string[];
}

/** envoy.service.discovery.v3.DiscoveryRequest, as @grpc/proto-loader decodes it (proto field names). */
interface DiscoveryRequest {
  version_info: string;
  node: { id?: string } | null;
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail: { code?: number; message?: string } | null;
}

/** envoy.service.discovery.v3.DiscoveryResponse, as written. */
interface DiscoveryResponse {
  version_info: string;
  resources: XdsResource[];
  type_url: string;
  nonce: string;
}

type AdsStream = ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;

/** What one stream has asked for and been sent, for one resource type. */
interface TypeState {
  names: string[];
  /** Nonce of the last response; a request carrying another (older) nonce is stale and ignored. */
  nonce: string;
  /** What the last response held (serialized), so that only real changes are pushed. */
  sentContent: string | undefined;
  sentVersion: string;
  /** The last version the client accepted; a NACK leaves it in force on the client. */
  ackedVersion: string;
}

interface StreamState {
  call: AdsStream;
  nodeId: string;
  peer: string;
  nextNonce: number;
  types: Map<string, TypeState>;
}

/** An ACK or NACK from a client, for observers (tests, logs). */
export interface XdsAck {
  nodeId: string;
  typeUrl: string;
  version: string;
  /** The client's error when it rejected the response (a NACK). */
  error: string | undefined;
}

/**
 * The aggregated discovery service (ADS, xDS v3, state of the world) of the control plane.
 *
 * Per stream and per type it keeps the subscribed names, the nonce and version of the last
 * response, and the version the client last accepted. Following the xDS protocol: a request whose
 * response_nonce is not the latest is stale and ignored; a request carrying the latest nonce
 * ACKs it (no error_detail) or NACKs it (error_detail, logged; the client keeps the previous good
 * version, and the same content is not sent again); a change of subscribed names is answered at
 * once. `update()` pushes changes to every stream immediately: each response holds every
 * subscribed resource of its type (as LDS and CDS require), and is sent only when that set changed.
 * Versions are the server's change counter, unique per content; nonces count per stream.
 */
export class XdsServer {
  private readonly streams = new Set<StreamState>();
  private readonly ackListeners = new Set<(ack: XdsAck) => void>();
  private readonly logger: Logger;
  private generation = 1;

  constructor(
    private readonly source: ResourceSource,
    logger: Logger,
  ) {
    this.logger = logger.child({ component: "controlplane.xds" });
  }

  /** The StreamAggregatedResources handler (ADS); DeltaAggregatedResources is left UNIMPLEMENTED. */
  readonly implementation = {
    StreamAggregatedResources: (call: AdsStream) => this.serve(call),
  };

  /**
   * Resources may have changed: push what differs to every subscribed client now, in the order a
   * client resolves them (LDS, RDS, CDS, EDS), whatever order it subscribed in: grpc-js-xds applies
   * a changed Listener (a fault filter added) only with the RouteConfiguration that follows it.
   */
  update(): void {
    this.generation += 1;
    for (const stream of this.streams) {
      for (const typeUrl of XDS_TYPE_URLS) if (stream.types.has(typeUrl)) this.maybeSend(stream, typeUrl);
    }
  }

  /** Calls `listener` on every ACK and NACK; returns a function that removes it. */
  onAck(listener: (ack: XdsAck) => void): () => void {
    this.ackListeners.add(listener);
    return () => this.ackListeners.delete(listener);
  }

  /** Number of open ADS streams. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Ends every ADS stream (clients keep what they have and reconnect). */
  endStreams(): void {
    for (const stream of [...this.streams]) {
      this.streams.delete(stream);
      stream.call.end();
    }
  }

  private serve(call: AdsStream): void {
    const stream: StreamState = { call, nodeId: "", peer: call.getPeer(), nextNonce: 1, types: new Map() };
    this.streams.add(stream);
    const close = () => {
      if (this.streams.delete(stream)) {
        this.logger.debug({ node: stream.nodeId, peer: stream.peer }, "ADS stream closed");
      }
    };
    call.on("data", (request: DiscoveryRequest) => this.handleRequest(stream, request));
    call.on("end", () => {
      close();
      call.end();
    });
    call.on("cancelled", close);
    call.on("error", close);
  }

  private handleRequest(stream: StreamState, request: DiscoveryRequest): void {
    if (request.node?.id && stream.nodeId === "") {
      stream.nodeId = request.node.id;
      this.logger.info({ node: stream.nodeId, peer: stream.peer }, "ADS stream opened");
    }
    const typeUrl = request.type_url;
    if (!XDS_TYPE_URLS.includes(typeUrl)) {
      this.logger.warn({ node: stream.nodeId, typeUrl }, "ADS request for an unsupported type ignored");
      return;
    }
    let state = stream.types.get(typeUrl);
    if (state && request.response_nonce !== "" && request.response_nonce !== state.nonce) {
      return; // stale: answers a response that has been superseded
    }
    if (state && request.response_nonce !== "") {
      const error = request.error_detail ? (request.error_detail.message ?? "NACK without a message") : undefined;
      if (error === undefined) {
        state.ackedVersion = request.version_info;
      } else {
        this.logger.warn(
          { node: stream.nodeId, typeUrl, rejectedVersion: state.sentVersion, keptVersion: request.version_info, error },
          "client rejected xDS resources (NACK); its previous version stays in force",
        );
      }
      for (const listener of this.ackListeners) {
        listener({ nodeId: stream.nodeId, typeUrl, version: error ? state.sentVersion : request.version_info, error });
      }
    }
    if (!state) {
      state = { names: [], nonce: "", sentContent: undefined, sentVersion: "", ackedVersion: request.version_info };
      stream.types.set(typeUrl, state);
    }
    const names = [...request.resource_names].sort();
    const isSubscriptionChange = names.join("\n") !== state.names.join("\n") || state.nonce === "";
    state.names = names;
    if (isSubscriptionChange) this.maybeSend(stream, typeUrl, true);
  }

  private maybeSend(stream: StreamState, typeUrl: string, isRequested = false): void {
    const state = stream.types.get(typeUrl)!;
    const isWildcard = state.names.length === 0 && (typeUrl === LISTENER_TYPE_URL || typeUrl === CLUSTER_TYPE_URL);
    const names = isWildcard ? this.source.names(typeUrl) : state.names;
    const resources: XdsResource[] = [];
    for (const name of names) {
      const resource = this.source.resource(typeUrl, name);
      if (resource) resources.push(resource);
    }
    const content = JSON.stringify(resources);
    // A changed subscription is always answered (a name with no resource learns it does not
    // exist); otherwise only a changed set is sent, so a NACKed set is not sent again.
    if (!isRequested && content === state.sentContent) return;
    state.sentContent = content;
    state.sentVersion = String(this.generation);
    state.nonce = String(stream.nextNonce++);
    stream.call.write({ version_info: state.sentVersion, resources, type_url: typeUrl, nonce: state.nonce });
  }
}
