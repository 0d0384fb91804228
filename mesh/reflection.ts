import * as fs from "node:fs";
import * as path from "node:path";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import type { PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";

/** File name of the descriptor set `make gen` writes next to the generated stubs. */
export const DESCRIPTOR_SET_FILE = "descriptor.binpb";

/**
 * Finds generated/descriptor.binpb from this module, whether it runs from the sources (mesh/) or
 * from the build output (dist/mesh/).
 */
export function defaultDescriptorSetPath(): string {
  const candidates = [
    path.resolve(__dirname, "..", "generated", DESCRIPTOR_SET_FILE),
    path.resolve(__dirname, "..", "..", "generated", DESCRIPTOR_SET_FILE),
  ];
  const found = candidates.find((candidate) => fs.existsSync(candidate));
  if (!found) {
    throw new Error(`descriptor set not found (looked at ${candidates.join(", ")}); run \`make gen\``);
  }
  return found;
}

/**
 * Splits a serialized google.protobuf.FileDescriptorSet into its files, byte for byte as buf wrote
 * them (field 1, `repeated FileDescriptorProto file`). Keeping the compiler's bytes, rather than
 * re-encoding through protobufjs, keeps map entries and options exactly as protoc-compatible
 * compilers define them, which grpcurl checks.
 */
export function splitDescriptorSet(bytes: Uint8Array): Uint8Array[] {
  const reader = new BinaryReader(bytes);
  const files: Uint8Array[] = [];
  while (reader.pos < reader.len) {
    const [fieldNo, wireType] = reader.tag();
    if (fieldNo === 1 && wireType === WireType.LengthDelimited) {
      files.push(reader.bytes());
    } else {
      reader.skip(wireType);
    }
  }
  return files;
}

const filesCache = new Map<string, Uint8Array[]>();
/** Reflection services built so far, per list of extra files, then per descriptor set and services. */
const reflectionCache = new WeakMap<readonly Uint8Array[], Map<string, ReflectionService>>();
const NO_EXTRA_FILES: readonly Uint8Array[] = Object.freeze([]);

/**
 * The server reflection service (v1 and v1alpha) for the named services, from the descriptor set
 * written by `make gen` (the same compilation as the stubs, grpc.health.v1 included) followed by
 * `extraFiles` (serialized FileDescriptorProtos of services compiled elsewhere, such as the envoy
 * protos of the control plane's ADS; the first definition of a file wins), so grpcurl, buf curl and
 * Postman can list, describe and call them with no proto files at hand. Indexing a large set takes
 * most of a second, so each combination is built once per process and shared by its servers.
 */
export function createReflection(
  descriptorSetPath: string,
  services: readonly string[],
  extraFiles: readonly Uint8Array[] = NO_EXTRA_FILES,
): ReflectionService {
  let built = reflectionCache.get(extraFiles);
  if (built === undefined) {
    built = new Map();
    reflectionCache.set(extraFiles, built);
  }
  const key = JSON.stringify([descriptorSetPath, [...services].sort()]);
  let reflection = built.get(key);
  if (!reflection) {
    let files = filesCache.get(descriptorSetPath);
    if (!files) {
      files = splitDescriptorSet(fs.readFileSync(descriptorSetPath));
      filesCache.set(descriptorSetPath, files);
    }
    // @grpc/reflection indexes the `fileDescriptorProtos` of every package-definition entry; one
    // entry holding every file is all it needs.
    const fileDescriptorProtos = [...files, ...extraFiles].map((file) => Buffer.from(file));
    const definition = { "protomesh.descriptors": { fileDescriptorProtos } };
    reflection = new ReflectionService(definition as unknown as PackageDefinition, { services: [...services] });
    built.set(key, reflection);
  }
  return reflection;
}
