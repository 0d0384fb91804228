import { Metadata, makeGenericClientConstructor, status } from "@grpc/grpc-js";
import type { Client, ClientReadableStream, ServiceError } from "@grpc/grpc-js";
import { createClient } from "../../mesh/client";
import type { MeshTlsOptions } from "../../mesh/tls";
import type { Tracer } from "@opentelemetry/api";
import type { Logger } from "../../mesh/logger";
import { GatewayError } from "./errors";
import type { GatewayMethod } from "./methods";

/** Options of {@link Backends}. */
export interface BackendsOptions {
  /** Control plane address: mesh services are dialled by name over xDS through it. */
  controlPlane?: string;
  /** mTLS of the backend calls (the gateway's own identity). */
  tls?: MeshTlsOptions;
  /** Where grpc-js-xds reads xDS from with `tls` (the control plane's xDS socket, MeshClientOptions.xdsServer). */
  xdsServer?: string;
  /** The gateway's zone (its xDS locality). */
  zone?: string;
  logger: Logger;
  /** grpc-js targets by gRPC service ("shop.catalog.v1.CatalogService" → "127.0.0.1:50051"), ahead of the mesh name. */
  targets?: Record<string, string>;
  /** Makes a client span per backend call (tracing.ts), the child of the HTTP caller's traceparent when it sent one. */
  tracer?: Tracer;
}

/** What a unary call answered: the response bytes and the server's headers and trailers. */
export interface UnaryResult {
  response: Uint8Array;
  headers: Metadata;
  trailers: Metadata;
}

// Requests and responses pass through as bytes: the gateway encodes and decodes with the
// descriptors (@bufbuild/protobuf), the mesh client only carries them.
const passThrough = (value: Uint8Array): Buffer => Buffer.from(value.buffer, value.byteOffset, value.byteLength);
const keepBytes = (value: Buffer): Uint8Array => value;

const GenericClient = makeGenericClientConstructor({}, "");

/**
 * The gateway's clients of the mesh: one kit client (createClient) per mesh service, made on first
 * use, so each call gets the mesh's load balancing, deadlines, retries, request id and call log.
 * close() closes them all.
 */
export class Backends {
  private readonly clients = new Map<string, Client>();
  private readonly logger: Logger;

  constructor(private readonly options: BackendsOptions) {
    this.logger = options.logger.child({ component: "gateway.backends" });
  }

  /**
   * The mesh service a gRPC service runs in: the package segment before its version
   * ("shop.orders.v1.OrderService" → "orders"), the shop's naming rule.
   */
  static meshServiceOf(service: string): string {
    const parts = service.split(".");
    const version = parts.findIndex((part, index) => index > 0 && /^v\d+/.test(part));
    return version > 0 ? parts[version - 1] : parts[Math.max(0, parts.length - 2)];
  }

  /**
   * One unary call; rejects with the call's ServiceError, or a GatewayError when no client can be
   * made. `signal` (the HTTP client went away) cancels the call.
   */
  call(method: GatewayMethod, request: Uint8Array, metadata: Metadata, deadline: number | undefined, signal?: AbortSignal): Promise<UnaryResult> {
    const client = this.clientFor(method);
    return new Promise((resolve, reject) => {
      let headers = new Metadata();
      let response: Uint8Array | undefined;
      let failure: ServiceError | undefined;
      const call = client.makeUnaryRequest(
        method.path,
        passThrough,
        keepBytes,
        request,
        metadata,
        deadline === undefined ? {} : { deadline },
        (error, value) => {
          failure = error ?? undefined;
          response = value;
        },
      );
      signal?.addEventListener("abort", () => call.cancel(), { once: true });
      call.on("metadata", (received: Metadata) => {
        headers = received;
      });
      // The status comes after the callback, with the trailers.
      call.on("status", (callStatus) => {
        if (failure !== undefined || callStatus.code !== status.OK) {
          reject(failure ?? Object.assign(new Error(callStatus.details), callStatus));
        } else {
          resolve({ response: response ?? new Uint8Array(), headers, trailers: callStatus.metadata });
        }
      });
    });
  }

  /**
   * One server-streaming call: the stream emits "metadata", "data" (response bytes), "error"
   * (a ServiceError) and "status". The caller cancels it when its own client goes away.
   */
  stream(method: GatewayMethod, request: Uint8Array, metadata: Metadata, deadline: number | undefined): ClientReadableStream<Uint8Array> {
    return this.clientFor(method).makeServerStreamRequest(
      method.path,
      passThrough,
      keepBytes,
      request,
      metadata,
      deadline === undefined ? {} : { deadline },
    );
  }

  /** Closes every client; calls in flight end CANCELLED. */
  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private clientFor(method: GatewayMethod): Client {
    const target = this.options.targets?.[method.service] ?? Backends.meshServiceOf(method.service);
    let client = this.clients.get(target);
    if (client !== undefined) return client;
    try {
      client = createClient(GenericClient, target, {
        logger: this.options.logger,
        controlPlane: this.options.controlPlane,
        zone: this.options.zone,
        tls: this.options.tls,
        xdsServer: this.options.xdsServer,
        tracer: this.options.tracer,
      });
    } catch (error) {
      this.logger.error({ err: error, service: method.service, target }, "no client for the service");
      throw new GatewayError(503, status.UNAVAILABLE, `no route to ${method.service}`);
    }
    this.clients.set(target, client);
    return client;
  }
}
