/**
 * google.api.http path templates (googleapis google/api/http.proto, "Path template syntax"):
 *
 *     Template = "/" Segments [ Verb ] ;   Segments = Segment { "/" Segment } ;
 *     Segment  = "*" | "**" | LITERAL | Variable ;   Variable = "{" FieldPath [ "=" Segments ] "}" ;
 *     Verb     = ":" LITERAL ;
 *
 * parsed once into segment matchers and variable spans, and matched against request paths the way
 * grpc-gateway's runtime does: the verb is split off the last segment only for templates that have
 * one, so `{id}` in a template without a verb keeps a ':' of the path (`/v1/orders/a:b` → id "a:b").
 */

/** One segment of a template. */
export type TemplateSegment = { kind: "literal"; value: string } | { kind: "one" } | { kind: "rest" };

/** A `{field.path=...}` variable: the segments [start, end) it captures (end undefined: to the end). */
export interface TemplateVariable {
  fieldPath: string;
  start: number;
  end: number | undefined;
}

/** A parsed template. */
export interface PathTemplate {
  source: string;
  segments: TemplateSegment[];
  variables: TemplateVariable[];
  verb: string | undefined;
}

const LITERAL = /^[A-Za-z0-9\-._~!$&'()+,;=@%]+$/;
const FIELD_PATH = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** Parses a template; throws a TypeError naming the template and the problem. */
export function parsePathTemplate(source: string): PathTemplate {
  const fail = (problem: string): never => {
    throw new TypeError(`google.api.http path template ${JSON.stringify(source)}: ${problem}`);
  };
  if (!source.startsWith("/")) fail("must start with '/'");
  let body = source.slice(1);
  let verb: string | undefined;
  // The verb is a ':' after the last '/' that is not inside a variable.
  const lastSlash = body.lastIndexOf("/");
  const lastClose = body.lastIndexOf("}");
  const colon = body.indexOf(":", Math.max(lastSlash, lastClose) + 1);
  if (colon >= 0) {
    verb = body.slice(colon + 1);
    body = body.slice(0, colon);
    if (!LITERAL.test(verb)) fail(`verb ${JSON.stringify(verb)} is not a literal`);
  }
  const segments: TemplateSegment[] = [];
  const variables: TemplateVariable[] = [];
  for (const part of splitOutsideBraces(body, fail)) {
    if (part.startsWith("{")) {
      if (!part.endsWith("}")) fail(`unclosed variable ${part}`);
      const inner = part.slice(1, -1);
      const equals = inner.indexOf("=");
      const fieldPath = equals < 0 ? inner : inner.slice(0, equals);
      if (!FIELD_PATH.test(fieldPath)) fail(`variable ${JSON.stringify(fieldPath)} is not a field path`);
      if (variables.some((v) => v.fieldPath === fieldPath)) fail(`variable ${fieldPath} appears twice`);
      const start = segments.length;
      const inside = equals < 0 ? ["*"] : inner.slice(equals + 1).split("/");
      for (const segment of inside) {
        if (segment.includes("{")) fail("variables may not nest");
        segments.push(plainSegment(segment, fail));
      }
      variables.push({ fieldPath, start, end: segments[segments.length - 1].kind === "rest" ? undefined : segments.length });
    } else {
      segments.push(plainSegment(part, fail));
    }
  }
  const restAt = segments.findIndex((segment) => segment.kind === "rest");
  if (restAt >= 0 && restAt !== segments.length - 1) fail("'**' must be the last segment");
  return { source, segments, variables, verb };
}

function plainSegment(text: string, fail: (problem: string) => never): TemplateSegment {
  if (text === "*") return { kind: "one" };
  if (text === "**") return { kind: "rest" };
  if (!LITERAL.test(text)) fail(`segment ${JSON.stringify(text)} is not a literal, '*', '**' or a variable`);
  return { kind: "literal", value: text };
}

/** Splits on '/' outside `{...}` (a variable's own segments are split by the caller). */
function splitOutsideBraces(text: string, fail: (problem: string) => never): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = "";
  for (const char of text) {
    if (char === "{") depth += 1;
    if (char === "}") depth -= 1;
    if (depth < 0 || depth > 1) fail("unbalanced braces");
    if (char === "/" && depth === 0) {
      parts.push(current);
      current = "";
    } else {
      current += char;
    }
  }
  if (depth !== 0) fail("unbalanced braces");
  parts.push(current);
  return parts;
}

/** The values a matched path gives the template's variables, percent-decoded, by field path. */
export type PathBindings = Array<[fieldPath: string, value: string]>;

/**
 * Matches a request path (no query string) against a template: the variables' values, or undefined
 * when it does not match. Throws URIError on a malformed percent-encoding inside a variable.
 */
export function matchPathTemplate(template: PathTemplate, requestPath: string): PathBindings | undefined {
  if (!requestPath.startsWith("/")) return undefined;
  let body = requestPath.slice(1);
  if (template.verb !== undefined) {
    const suffix = `:${template.verb}`;
    if (!body.endsWith(suffix)) return undefined;
    body = body.slice(0, -suffix.length);
  }
  const parts = body.split("/");
  const { segments } = template;
  const hasRest = segments.length > 0 && segments[segments.length - 1].kind === "rest";
  if (hasRest ? parts.length < segments.length - 1 : parts.length !== segments.length) return undefined;
  for (let index = 0; index < segments.length; index += 1) {
    const segment = segments[index];
    if (segment.kind === "rest") break;
    const part = parts[index];
    if (part === "") return undefined;
    if (segment.kind === "literal" && part !== segment.value) return undefined;
  }
  return template.variables.map((variable) => {
    const captured = parts.slice(variable.start, variable.end);
    return [variable.fieldPath, captured.map((part) => decodeURIComponent(part)).join("/")];
  });
}

/**
 * Orders templates from the most specific to the least, so that the first match wins for a
 * request two templates could take: segment by segment a literal beats '*' beats '**', a longer
 * template beats its prefix, and a template with a verb beats one without (grpc-gateway and Envoy's
 * transcoder prefer literals the same way).
 */
export function compareSpecificity(a: PathTemplate, b: PathTemplate): number {
  const rank = (segment: TemplateSegment | undefined): number =>
    segment === undefined ? 0 : segment.kind === "literal" ? 3 : segment.kind === "one" ? 2 : 1;
  const length = Math.max(a.segments.length, b.segments.length);
  for (let index = 0; index < length; index += 1) {
    const difference = rank(b.segments[index]) - rank(a.segments[index]);
    if (difference !== 0) return difference;
  }
  return (b.verb === undefined ? 0 : 1) - (a.verb === undefined ? 0 : 1);
}

/** A template's shape with variable names dropped: two templates with one shape take the same paths. */
export function templateShape(template: PathTemplate): string {
  const text = template.segments
    .map((segment) => (segment.kind === "literal" ? segment.value : segment.kind === "one" ? "*" : "**"))
    .join("/");
  return `/${text}${template.verb === undefined ? "" : `:${template.verb}`}`;
}
