import type { ServerDuplexStream, ServiceDefinition } from "@grpc/grpc-js";
import type { Logger } from "../logger";
import type { XdsResource } from "./resources";
import { encodeDiscoveryResponse, encodeResourceEntry, preEncodedAdsService } from "./xds-encoding";
import { XDS_TYPE_URLS, loadXdsProtos } from "./xds-protos";
import { SubscriptionIndex, WILDCARD_TYPE_URLS, isWildcard } from "./xds-subscriptions";

/**
 * Where the xDS server gets resources from: on a subscription change, and after a change named by
 * `update` (at most once per resource and change: every stream that needs it shares it).
 */
export interface ResourceSource {
  /** The resource of `typeUrl` named `name`, or undefined when none is served (now). */
  resource(typeUrl: string, name: string): XdsResource | undefined;
  /** Every name of `typeUrl` served now: the answer to a wildcard (empty) LDS or CDS subscription. */
  names(typeUrl: string): string[];
  /**
   * True when resource `name` of `typeUrl` is to be left out of a response to a stream for now
   * (the control plane's warm-up); `isResuming`: the stream's first request of the type named the
   * version it holds (a client reconnecting with its cached resources). A later `update` naming
   * the resource sends it.
   */
  holdsBack?(typeUrl: string, name: string, isResuming: boolean): boolean;
}

/** One resource by type and name: what a change names (`XdsServer.update`). */
export interface ResourceKey {
  readonly typeUrl: string;
  readonly name: string;
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

/** Responses are written as encoded DiscoveryResponses (xds-encoding.ts: `preEncodedAdsService`). */
type AdsStream = ServerDuplexStream<DiscoveryRequest, Buffer>;

/** What one stream has asked for and been sent, for one resource type. */
interface TypeState {
  names: string[];
  /** Nonce of the last response; a request carrying another (older) nonce is stale and ignored. */
  nonce: string;
  /** The resource entries of the last response (encoded), so that only real changes are pushed. */
  sentContent: Buffer | undefined;
  sentVersion: string;
  /** The last version the client accepted; a NACK leaves it in force on the client. */
  ackedVersion: string;
  /** The stream's first request named a version: the client holds resources from an earlier stream. */
  isResuming: boolean;
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
 * once. `update()` pushes changes immediately: each response holds every subscribed resource of
 * its type (as LDS and CDS require), and is sent only when that set changed. Versions are the
 * server's change counter, unique per content; nonces count per stream.
 *
 * Cost per change: streams are indexed by the names they subscribed to (xds-subscriptions.ts), so
 * a change that names its resources visits only their subscribers (and the wildcard ones when the
 * set of names or one of its resources changed), and each resource is built and serialized once
 * per change however many streams are sent it.
 */
export class XdsServer {
  private readonly streams = new Set<StreamState>();
  private readonly subscriptions = new SubscriptionIndex<StreamState>();
  private readonly ackListeners = new Set<(ack: XdsAck) => void>();
  private readonly sendListeners = new Set<(typeUrl: string) => void>();
  private readonly logger: Logger;
  private generation = 1;
  /** Resources built and encoded since the last change (undefined: none served), by type then name; `update` empties it. */
  private built = new Map<string, Map<string, Buffer | undefined>>();
  /** Names served for wildcard subscriptions since the last change, by type; `update` empties it. */
  private builtNames = new Map<string, string[]>();
  /** Per wildcard type, the names as last served (joined), to tell whether a change altered the set. */
  private readonly lastWildcardNames = new Map<string, string>();

  constructor(
    private readonly source: ResourceSource,
    logger: Logger,
  ) {
    this.logger = logger.child({ component: "controlplane.xds" });
  }

  /**
   * The StreamAggregatedResources handler (ADS); DeltaAggregatedResources is left UNIMPLEMENTED.
   * Add it to a server with {@link definition}: it writes responses already encoded.
   */
  readonly implementation = {
    StreamAggregatedResources: (call: AdsStream) => this.serve(call),
  };

  /** The ADS service definition to add {@link implementation} with. */
  get definition(): ServiceDefinition {
    return preEncodedAdsService(loadXdsProtos().adsService);
  }

  /**
   * Resources may have changed: push what differs to the subscribed clients now, in the order a
   * client resolves them (LDS, RDS, CDS, EDS), whatever order it subscribed in: grpc-js-xds applies
   * a changed Listener (a fault filter added) only with the RouteConfiguration that follows it.
   *
   * `changed` names every resource the change may have altered; the set of names served to
   * wildcard subscribers is checked on each call (a service that came or went). Without it, every
   * stream and every type it subscribed to is checked: for changes that touch everything (a mesh
   * config). A resource the caller leaves out is not pushed until a later change names it.
   */
  update(changed?: readonly ResourceKey[]): void {
    this.generation += 1;
    this.built = new Map();
    this.builtNames = new Map();
    if (changed === undefined) {
      for (const stream of this.streams) {
        for (const typeUrl of XDS_TYPE_URLS) if (stream.types.has(typeUrl)) this.maybeSend(stream, typeUrl);
      }
      return;
    }
    const affected = new Map<StreamState, Set<string>>();
    const visit = (streams: ReadonlySet<StreamState>, typeUrl: string) => {
      for (const stream of streams) {
        let types = affected.get(stream);
        if (!types) affected.set(stream, (types = new Set()));
        types.add(typeUrl);
      }
    };
    for (const { typeUrl, name } of changed) visit(this.subscriptions.streamsOf(typeUrl, name), typeUrl);
    for (const typeUrl of WILDCARD_TYPE_URLS) {
      const wildcards = this.subscriptions.wildcardStreamsOf(typeUrl);
      if (wildcards.size === 0) continue;
      const previous = this.lastWildcardNames.get(typeUrl);
      const names = this.namesOf(typeUrl); // and records them as the last served
      const isChanged =
        this.lastWildcardNames.get(typeUrl) !== previous ||
        changed.some((key) => key.typeUrl === typeUrl && names.includes(key.name));
      if (isChanged) visit(wildcards, typeUrl);
    }
    for (const [stream, types] of affected) {
      for (const typeUrl of XDS_TYPE_URLS) if (types.has(typeUrl)) this.maybeSend(stream, typeUrl);
    }
  }

  /** Calls `listener` on every ACK and NACK; returns a function that removes it. */
  onAck(listener: (ack: XdsAck) => void): () => void {
    this.ackListeners.add(listener);
    return () => this.ackListeners.delete(listener);
  }

  /** Calls `listener` with the type of every response sent; returns a function that removes it. */
  onSend(listener: (typeUrl: string) => void): () => void {
    this.sendListeners.add(listener);
    return () => this.sendListeners.delete(listener);
  }

  /** Number of open ADS streams. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Ends every ADS stream (clients keep what they have and reconnect). */
  endStreams(): void {
    for (const stream of [...this.streams]) {
      this.forget(stream);
      stream.call.end();
    }
  }

  private serve(call: AdsStream): void {
    const stream: StreamState = { call, nodeId: "", peer: call.getPeer(), nextNonce: 1, types: new Map() };
    this.streams.add(stream);
    const close = () => {
      if (this.forget(stream)) {
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

  /** Drops `stream` and its subscriptions; false when it was gone already. */
  private forget(stream: StreamState): boolean {
    if (!this.streams.delete(stream)) return false;
    for (const [typeUrl, state] of stream.types) this.subscriptions.unsubscribe(stream, typeUrl, state.names);
    return true;
  }

  private handleRequest(stream: StreamState, request: DiscoveryRequest): void {
    if (!this.streams.has(stream)) return; // ended by endStreams: its subscriptions are gone
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
      const isResuming = request.version_info !== "";
      state = { names: [], nonce: "", sentContent: undefined, sentVersion: "", ackedVersion: request.version_info, isResuming };
      stream.types.set(typeUrl, state);
    }
    const names = [...request.resource_names].sort();
    const isSubscriptionChange = names.join("\n") !== state.names.join("\n") || state.nonce === "";
    if (isSubscriptionChange) this.subscriptions.subscribe(stream, typeUrl, state.names, names);
    state.names = names;
    if (isSubscriptionChange) this.maybeSend(stream, typeUrl, true);
  }

  private maybeSend(stream: StreamState, typeUrl: string, isRequested = false): void {
    const state = stream.types.get(typeUrl)!;
    const names = isWildcard(typeUrl, state.names) ? this.namesOf(typeUrl) : state.names;
    const entries: Buffer[] = [];
    for (const name of names) {
      if (this.source.holdsBack?.(typeUrl, name, state.isResuming)) continue;
      const entry = this.entryOf(typeUrl, name);
      if (entry) entries.push(entry);
    }
    const content = entries.length === 1 ? entries[0] : Buffer.concat(entries);
    // A changed subscription is always answered (a name with no resource learns it does not
    // exist); otherwise only a changed set is sent, so a NACKed set is not sent again.
    if (!isRequested && state.sentContent?.equals(content)) return;
    state.sentContent = content;
    state.sentVersion = String(this.generation);
    state.nonce = String(stream.nextNonce++);
    stream.call.write(encodeDiscoveryResponse(state.sentVersion, content, typeUrl, state.nonce));
    for (const listener of this.sendListeners) listener(typeUrl);
  }

  /** The names a wildcard subscription of `typeUrl` is served now, asked of the source once per change. */
  private namesOf(typeUrl: string): string[] {
    let names = this.builtNames.get(typeUrl);
    if (!names) {
      names = this.source.names(typeUrl);
      this.builtNames.set(typeUrl, names);
      this.lastWildcardNames.set(typeUrl, names.join("\n"));
    }
    return names;
  }

  /**
   * Resource `name` of `typeUrl` as its encoded entry of a response (undefined when none is
   * served), asked of the source and encoded once per change. The bytes also tell a changed
   * resource from an unchanged one.
   */
  private entryOf(typeUrl: string, name: string): Buffer | undefined {
    let byName = this.built.get(typeUrl);
    if (!byName) this.built.set(typeUrl, (byName = new Map()));
    if (byName.has(name)) return byName.get(name);
    const resource = this.source.resource(typeUrl, name);
    const entry = resource ? encodeResourceEntry(resource) : undefined;
    byName.set(name, entry);
    return entry;
  }
}
