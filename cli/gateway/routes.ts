import type { HttpRule } from "../../generated/ts/google/api/http";
import { resolveFieldPath } from "./field-path";
import type { GatewayMethod } from "./methods";
import { compareSpecificity, matchPathTemplate, parsePathTemplate, templateShape } from "./path-template";
import type { PathBindings, PathTemplate } from "./path-template";

/** One HTTP binding of a gRPC method: an HTTP method and path template, and how the body maps. */
export interface Route {
  httpMethod: string;
  template: PathTemplate;
  method: GatewayMethod;
  /** "" (no body), "*" (the whole request message) or a top-level field name. */
  body: string;
  /** "" (the whole response message) or a top-level field name of the response. */
  responseBody: string;
}

/** What a request's method and path find in the table. */
export type RouteMatch =
  | { kind: "found"; route: Route; bindings: PathBindings }
  /** The path is known but not with this method: answer 405 with `Allow`. */
  | { kind: "method-not-allowed"; allow: string[] }
  | { kind: "not-found" };

/**
 * The gateway's HTTP routes, from every method's google.api.http rules. Routes are tried from the
 * most specific template to the least (path-template.ts compareSpecificity), so `/v1/products:search`
 * and `/v1/products/{id}` never take each other's requests; two rules of one HTTP method whose
 * templates take the same paths are a configuration error, refused when the table is built.
 */
export class RouteTable {
  private readonly routes: Route[];

  constructor(methods: readonly GatewayMethod[]) {
    const routes: Route[] = [];
    const seen = new Map<string, GatewayMethod>();
    for (const method of methods) {
      for (const rule of method.rules) {
        const route = routeOf(method, rule);
        if (route === undefined) continue;
        const key = `${route.httpMethod} ${templateShape(route.template)}`;
        const other = seen.get(key);
        if (other !== undefined) {
          throw new TypeError(`google.api.http: ${key} is bound by both ${other.path} and ${method.path}`);
        }
        seen.set(key, method);
        routes.push(route);
      }
    }
    // A stable sort: equally specific templates (different shapes) keep the descriptor's order.
    this.routes = routes.sort((a, b) => compareSpecificity(a.template, b.template));
  }

  /** Every route, most specific first. */
  list(): readonly Route[] {
    return this.routes;
  }

  /**
   * The route for a request (path without its query string). Throws URIError when the path that
   * matched carries a malformed percent-encoding in a variable.
   */
  match(httpMethod: string, requestPath: string): RouteMatch {
    const allow = new Set<string>();
    for (const route of this.routes) {
      if (route.httpMethod !== httpMethod) {
        if (!allow.has(route.httpMethod) && matchesQuietly(route.template, requestPath)) allow.add(route.httpMethod);
        continue;
      }
      const bindings = matchPathTemplate(route.template, requestPath);
      if (bindings !== undefined) return { kind: "found", route, bindings };
    }
    return allow.size > 0 ? { kind: "method-not-allowed", allow: [...allow].sort() } : { kind: "not-found" };
  }
}

function matchesQuietly(template: PathTemplate, requestPath: string): boolean {
  try {
    return matchPathTemplate(template, requestPath) !== undefined;
  } catch {
    return true;
  }
}

/** The route of one rule; checks that its variables and body name fields of the messages. */
function routeOf(method: GatewayMethod, rule: HttpRule): Route | undefined {
  const pattern = rule.pattern;
  if (pattern === undefined) return undefined;
  const [httpMethod, source] =
    pattern.$case === "custom" ? [pattern.value.kind.toUpperCase(), pattern.value.path] : [pattern.$case.toUpperCase(), pattern.value];
  const where = `google.api.http of ${method.path}`;
  let template: PathTemplate;
  try {
    template = parsePathTemplate(source);
  } catch (error) {
    throw new TypeError(`${where}: ${(error as Error).message}`, { cause: error });
  }
  for (const variable of template.variables) {
    const resolved = resolveFieldPath(method.input, variable.fieldPath);
    if (typeof resolved === "string") throw new TypeError(`${where}: path variable ${variable.fieldPath}: ${resolved}`);
  }
  for (const [name, message] of [
    [rule.body, method.input],
    [rule.responseBody, method.output],
  ] as const) {
    if (name !== "" && name !== "*" && message.fields.find((field) => field.name === name) === undefined) {
      throw new TypeError(`${where}: body field ${name} is not a field of ${message.typeName}`);
    }
  }
  return { httpMethod, template, method, body: rule.body, responseBody: rule.responseBody };
}
