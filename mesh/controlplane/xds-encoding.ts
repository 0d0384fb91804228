import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import type { XdsResource } from "./resources";
import { loadXdsProtos } from "./xds-protos";

/*
 * DiscoveryResponses assembled from resources encoded once. Every subscriber of a resource is sent
 * the same bytes for it, so the xDS server encodes each resource once per change (as an entry of
 * the response's repeated `resources`, an Any) and writes, per stream, only the few bytes that
 * differ: version_info, type_url and nonce. The result is byte for byte what proto-loader's
 * serializer writes for the same response (fields in number order; test/mesh/controlplane).
 *
 * envoy.service.discovery.v3.DiscoveryResponse: version_info = 1, resources = 2, canary = 3,
 * type_url = 4, nonce = 5, control_plane = 6 (envoy/service/discovery/v3/discovery.proto).
 */

const VERSION_INFO_FIELD = 1;
const TYPE_URL_FIELD = 4;
const NONCE_FIELD = 5;

type AdsMethod = MethodDefinition<unknown, unknown>;

function adsMethod(): AdsMethod {
  return loadXdsProtos().adsService.StreamAggregatedResources as AdsMethod;
}

/**
 * `resource` as its entry in DiscoveryResponse.resources: the field's tag, length and Any, as
 * proto-loader encodes it (a response holding only that resource is exactly that entry).
 */
export function encodeResourceEntry(resource: XdsResource): Buffer {
  return adsMethod().responseSerialize({ resources: [resource] });
}

/** A serialized DiscoveryResponse of the resource entries `entries` (encodeResourceEntry's, concatenated). */
export function encodeDiscoveryResponse(versionInfo: string, entries: Uint8Array, typeUrl: string, nonce: string): Buffer {
  const bytes = new BinaryWriter()
    .tag(VERSION_INFO_FIELD, WireType.LengthDelimited)
    .string(versionInfo)
    .raw(entries)
    .tag(TYPE_URL_FIELD, WireType.LengthDelimited)
    .string(typeUrl)
    .tag(NONCE_FIELD, WireType.LengthDelimited)
    .string(nonce)
    .finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * `adsService` (xds-protos.ts) with a response serializer that writes a response already encoded
 * (a Buffer, from {@link encodeDiscoveryResponse}) as it is: the definition the xDS server is
 * added to a gRPC server with.
 */
export function preEncodedAdsService(adsService: ServiceDefinition): ServiceDefinition {
  const method = adsService.StreamAggregatedResources as AdsMethod;
  const responseSerialize = (value: unknown): Buffer => (Buffer.isBuffer(value) ? value : method.responseSerialize(value));
  return { ...adsService, StreamAggregatedResources: { ...method, responseSerialize } };
}
