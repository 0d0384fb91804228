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
/** Wire type of strings, bytes and messages (protobuf encoding: "LEN"). */
const LENGTH_DELIMITED = 2;

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
  return Buffer.concat([stringField(VERSION_INFO_FIELD, versionInfo), entries, typeUrlField(typeUrl), stringField(NONCE_FIELD, nonce)]);
}

const typeUrlFields = new Map<string, Buffer>();

/** The type_url field of `typeUrl` (one of a few), encoded once. */
function typeUrlField(typeUrl: string): Buffer {
  let field = typeUrlFields.get(typeUrl);
  if (!field) typeUrlFields.set(typeUrl, (field = stringField(TYPE_URL_FIELD, typeUrl)));
  return field;
}

/** A string field (number below 16, so its tag is one byte): tag, UTF-8 length as a varint, UTF-8. */
function stringField(fieldNo: number, value: string): Buffer {
  const length = Buffer.byteLength(value, "utf8");
  const header = [(fieldNo << 3) | LENGTH_DELIMITED];
  for (let rest = length; ; rest >>>= 7) {
    if (rest < 0x80) {
      header.push(rest);
      break;
    }
    header.push((rest & 0x7f) | 0x80);
  }
  const field = Buffer.allocUnsafe(header.length + length);
  field.set(header);
  field.write(value, header.length, "utf8");
  return field;
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
