import * as fs from "node:fs";
import * as path from "node:path";
import { createFileRegistry, fromBinary, getOption, hasOption, toBinary } from "@bufbuild/protobuf";
import type { DescExtension, DescMessage, DescMethod, FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { HttpRule } from "../../generated/ts/google/api/http";

/** The descriptor set `make gen` writes (every proto of the repository, with source info). */
export const DEFAULT_DESCRIPTOR_SET = path.resolve(__dirname, "..", "..", "..", "generated", "descriptor.binpb");

/** Packages whose services the gateway exposes: the shop's, never the mesh's own APIs. */
const EXPOSED_PACKAGE = /^shop\./;

/** One gRPC method the gateway may call, with its HTTP rules. */
export interface GatewayMethod {
  /** Full service name: "shop.orders.v1.OrderService". */
  service: string;
  /** Method name: "PlaceOrder". */
  name: string;
  /** gRPC path: "/shop.orders.v1.OrderService/PlaceOrder". */
  path: string;
  desc: DescMethod;
  input: DescMessage;
  output: DescMessage;
  serverStreaming: boolean;
  /** The google.api.http rule and its additional_bindings, in that order; [] when the method has none. */
  rules: HttpRule[];
}

/**
 * Reads a descriptor set and lists the unary and server-streaming methods of the shop.* packages
 * (client and bidi streaming do not fit HTTP/1.1 request/response), with their google.api.http rules.
 */
export function loadGatewayMethods(descriptorSetPath: string = DEFAULT_DESCRIPTOR_SET): { registry: FileRegistry; methods: GatewayMethod[] } {
  const set = fromBinary(FileDescriptorSetSchema, fs.readFileSync(descriptorSetPath));
  const registry = createFileRegistry(set);
  const http = registry.getExtension("google.api.http");
  const methods: GatewayMethod[] = [];
  for (const file of registry.files) {
    if (!EXPOSED_PACKAGE.test(file.proto.package)) continue;
    for (const service of file.services) {
      for (const desc of service.methods) {
        if (desc.methodKind !== "unary" && desc.methodKind !== "server_streaming") continue;
        methods.push({
          service: service.typeName,
          name: desc.name,
          path: `/${service.typeName}/${desc.name}`,
          desc,
          input: desc.input,
          output: desc.output,
          serverStreaming: desc.methodKind === "server_streaming",
          rules: http ? httpRules(desc, http) : [],
        });
      }
    }
  }
  return { registry, methods };
}

/**
 * The method's HttpRule and its additional_bindings as the generated (ts-proto) type: the option
 * read through the registry is re-encoded and decoded by the generated codec, so no second
 * declaration of google.api.HttpRule exists here.
 */
function httpRules(desc: DescMethod, http: DescExtension): HttpRule[] {
  if (!hasOption(desc, http) || http.message === undefined) return [];
  const option = getOption(desc, http);
  const rule = HttpRule.decode(toBinary(http.message, option as never));
  const bindings = rule.additionalBindings;
  return [{ ...rule, additionalBindings: [] }, ...bindings];
}
