import { ScalarType, fromJson, mergeFromJson } from "@bufbuild/protobuf";
import type { DescField, DescMessage, JsonObject, JsonValue, Message } from "@bufbuild/protobuf";
import { badRequest } from "./errors";
import { resolveFieldPath } from "./field-path";
import type { PathBindings } from "./path-template";
import type { Route } from "./routes";

/** Well-known message types whose proto3 JSON is a string, so a query parameter may carry them. */
const STRING_JSON_TYPES = new Set(["google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"]);
const WRAPPER_TYPE = /^google\.protobuf\.(Int32|UInt32|Int64|UInt64|Float|Double|String|Bytes|Bool)Value$/;

/**
 * The gRPC request of an HTTP request, per the route's rule (google/api/http.proto): path variables,
 * then the body (`*`: the whole message; a field name: that field; "": none), then the query
 * parameters for every field neither binds. Everything goes through proto3 JSON (fromJson), so a
 * bad value fails with fromJson's message naming the field. Throws a 400 GatewayError.
 */
export function bindRequest(route: Route, bindings: PathBindings, query: URLSearchParams, bodyText: string): Message {
  const input = route.method.input;
  const params: JsonObject = {};
  const bound = new Set<string>();
  for (const [fieldPath, value] of bindings) {
    const fields = resolveFieldPath(input, fieldPath);
    if (typeof fields === "string") throw badRequest(`path variable ${fieldPath}: ${fields}`);
    bound.add(fields.map((field) => field.name).join("."));
    setLeaf(params, fields, leafJson(fields[fields.length - 1], [value], `path variable ${fieldPath}`));
  }
  for (const { name, fields, values } of groupQuery(input, query, route.body)) {
    const protoPath = fields.map((field) => field.name).join(".");
    for (const taken of [...bound, route.body]) {
      if (taken !== "" && (protoPath === taken || protoPath.startsWith(`${taken}.`))) {
        throw badRequest(`query parameter ${name}: ${taken} is already bound by the ${taken === route.body ? "body" : "path"}`);
      }
    }
    setLeaf(params, fields, leafJson(fields[fields.length - 1], values, `query parameter ${name}`));
  }
  const body = route.body === "" ? undefined : parseBody(bodyText);
  return decode(() => {
    if (route.body === "*") return mergeFromJson(input, fromJson(input, body ?? {}), params);
    if (route.body !== "" && body !== undefined) {
      const field = input.fields.find((candidate) => candidate.name === route.body);
      if (field !== undefined) params[field.jsonName] = body;
    }
    return fromJson(input, params);
  });
}

function decode(run: () => Message): Message {
  try {
    return run();
  } catch (error) {
    throw badRequest(error instanceof Error ? error.message : "the request does not decode");
  }
}

/** The body as JSON; an empty body is no body (an empty message for `body: "*"`). */
function parseBody(text: string): JsonValue | undefined {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text) as JsonValue;
  } catch (error) {
    throw badRequest(`malformed JSON body: ${(error as Error).message}`);
  }
}

/**
 * Query values by the field they name, in order: a repeated key gives several values, and so do
 * the proto and JSON names of one field (`page_size` and `pageSize`) given together.
 */
function groupQuery(input: DescMessage, query: URLSearchParams, body: string): Array<{ name: string; fields: DescField[]; values: string[] }> {
  const groups = new Map<string, { name: string; fields: DescField[]; values: string[] }>();
  for (const [name, value] of query) {
    if (body === "*") throw badRequest(`query parameter ${name}: not accepted, the body carries the whole request`);
    const fields = resolveFieldPath(input, name);
    if (typeof fields === "string") throw badRequest(`query parameter ${name}: ${fields}`);
    const key = fields.map((field) => field.number).join(".");
    const group = groups.get(key);
    if (group === undefined) groups.set(key, { name, fields, values: [value] });
    else group.values.push(value);
  }
  return [...groups.values()];
}

/** Sets `value` at the JSON names of `fields` in `target`, making the intermediate objects. */
function setLeaf(target: JsonObject, fields: DescField[], value: JsonValue): void {
  let node = target;
  for (const field of fields.slice(0, -1)) {
    const next = node[field.jsonName];
    if (next === undefined || next === null || typeof next !== "object" || Array.isArray(next)) {
      const created: JsonObject = {};
      node[field.jsonName] = created;
      node = created;
    } else {
      node = next;
    }
  }
  node[fields[fields.length - 1].jsonName] = value;
}

/** The proto3 JSON of text values for one field: an array for a repeated field, else the one value. */
function leafJson(field: DescField, values: string[], where: string): JsonValue {
  switch (field.fieldKind) {
    case "list":
      if (field.listKind === "message") return values.map((value) => messageText(field.message.typeName, value, where));
      if (field.listKind === "enum") return values.map(enumText);
      return values.map((value) => scalarText(field.scalar, value, where));
    case "map":
      throw badRequest(`${where}: ${field.name} is a map, which a path or query parameter cannot set`);
    default:
      break;
  }
  if (values.length > 1) throw badRequest(`${where}: ${field.name} is not repeated, but was given ${values.length} times`);
  const [value] = values;
  if (field.fieldKind === "enum") return enumText(value);
  if (field.fieldKind === "message") return messageText(field.message.typeName, value, where);
  return scalarText(field.scalar, value, where);
}

function scalarText(type: ScalarType, value: string, where: string): JsonValue {
  if (type !== ScalarType.BOOL) return value;
  if (value === "true" || value === "false") return value === "true";
  throw badRequest(`${where}: expected true or false, got ${JSON.stringify(value)}`);
}

/** An enum by name, or by number when the text is an integer. */
function enumText(value: string): JsonValue {
  return /^-?\d+$/.test(value) ? Number(value) : value;
}

function messageText(typeName: string, value: string, where: string): JsonValue {
  if (STRING_JSON_TYPES.has(typeName)) return value;
  const wrapper = WRAPPER_TYPE.exec(typeName);
  if (wrapper) return wrapper[1] === "Bool" ? scalarText(ScalarType.BOOL, value, where) : value;
  throw badRequest(`${where}: ${typeName} is a message; set its fields (name.field=value)`);
}
