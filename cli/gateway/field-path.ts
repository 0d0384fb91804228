import type { DescField, DescMessage } from "@bufbuild/protobuf";

/**
 * The fields a dotted path names in a message ("items", "page.size"), each segment by its proto
 * name or its JSON name (both are accepted in paths and query parameters, as grpc-gateway and
 * Envoy's transcoder do); every segment but the last must be a singular message field. Returns
 * the problem as a string when the path names no field.
 */
export function resolveFieldPath(message: DescMessage, fieldPath: string): DescField[] | string {
  const fields: DescField[] = [];
  let current: DescMessage | undefined = message;
  for (const name of fieldPath.split(".")) {
    if (current === undefined) return `${fields[fields.length - 1].name} is not a message field, so it has no field ${name}`;
    const field: DescField | undefined = current.fields.find((candidate) => candidate.name === name || candidate.jsonName === name);
    if (field === undefined) return `${current.typeName} has no field ${name}`;
    fields.push(field);
    current = field.fieldKind === "message" ? field.message : undefined;
  }
  return fields;
}
