import * as fs from "node:fs";
import { parse as parseYaml } from "yaml";
import { invalidArgument, isServiceError } from "../../mesh/errors";
import { knownKeys, objectAt, optionalInteger } from "../../mesh/config-fields";
import type { RateLimitSettings } from "./rate-limit";

/**
 * The gateway config (deploy/gateway.yaml): plain YAML until here, then validated with an error
 * naming the field (`routes["shop.orders.v1.OrderService/*"].auth: must be one of none, required,
 * got "yes"`).
 */

/** Who may call a route: `none` takes any caller (a token, if sent, must still be valid), `required` a valid token with `scopes`. */
export type AuthRequirement = "none" | "required";

/** The requirement of one route (a method, a service's methods, or every method). */
export interface RouteRule {
  auth: AuthRequirement;
  /** Scopes the token must carry (its `scope` claim, space-separated, or `scp` list), all of them. */
  scopes: string[];
}

export interface JwtSettings {
  /** A JWKS file (public keys), relative to the working directory. */
  jwksFile?: string;
  /** A JWKS URL, fetched and cached by jose. */
  jwksUrl?: string;
  /** The `iss` a token must have. */
  issuer?: string;
  /** The `aud` a token must have. */
  audience?: string;
}

export interface GatewayConfig {
  /** The HTTP port (GATEWAY_HTTP_PORT overrides it). */
  httpPort: number;
  /** Browser origins allowed to call over gRPC-Web; empty: any (development). */
  corsOrigins: string[];
  /** gRPC service → mesh service, where it is not the package's segment before the version. */
  backends: Record<string, string>;
  jwt: JwtSettings | undefined;
  rateLimit: RateLimitSettings | undefined;
  /** By key: "pkg.Service/Method", "pkg.Service/*" or "*"; the most specific applies. */
  routes: Map<string, RouteRule>;
}

/** The gateway's HTTP port unless the config or GATEWAY_HTTP_PORT says otherwise. */
export const GATEWAY_HTTP_DEFAULT_PORT = 8080;
const AUTH_REQUIREMENTS: readonly AuthRequirement[] = ["none", "required"];
const ROUTE_KEY = /^(\*|[A-Za-z_][\w.]*\/(\*|[A-Za-z_]\w*))$/;

/** Reads and validates the config file at `file`; an error names the file and the field. */
export function loadGatewayConfig(file: string): GatewayConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    throw new TypeError(`gateway config ${file}: ${(error as Error).message}`, { cause: error });
  }
  try {
    return parseGatewayConfig(parseYaml(text) ?? {});
  } catch (error) {
    const problem = isServiceError(error) ? error.details : (error as Error).message;
    throw new TypeError(`gateway config ${file}: ${problem}`, { cause: error });
  }
}

export function parseGatewayConfig(document: unknown): GatewayConfig {
  const root = objectAt(document, "(root)");
  knownKeys(root, "(root)", ["http_port", "cors_origins", "backends", "jwt", "rate_limit", "routes"]);
  const corsOrigins = stringList(root.cors_origins, "cors_origins");
  const backends: Record<string, string> = {};
  for (const [service, target] of Object.entries(objectAt(root.backends ?? {}, "backends"))) {
    if (typeof target !== "string" || target === "") throw invalidArgument(`backends["${service}"]`, "must be a mesh service name or a target");
    backends[service] = target;
  }
  const routes = new Map<string, RouteRule>();
  for (const [key, value] of Object.entries(objectAt(root.routes ?? {}, "routes"))) {
    const field = `routes["${key}"]`;
    if (!ROUTE_KEY.test(key)) throw invalidArgument(field, 'must be "package.Service/Method", "package.Service/*" or "*"');
    const rule = objectAt(value, field);
    knownKeys(rule, field, ["auth", "scopes"]);
    const auth = rule.auth ?? "required";
    if (typeof auth !== "string" || !(AUTH_REQUIREMENTS as readonly string[]).includes(auth)) {
      throw invalidArgument(`${field}.auth`, `must be one of ${AUTH_REQUIREMENTS.join(", ")}, got ${JSON.stringify(auth)}`);
    }
    routes.set(key, { auth: auth as AuthRequirement, scopes: stringList(rule.scopes, `${field}.scopes`) });
  }
  return {
    httpPort: optionalInteger(root.http_port, "http_port", 1, 65535) ?? GATEWAY_HTTP_DEFAULT_PORT,
    corsOrigins,
    backends,
    jwt: root.jwt === undefined ? undefined : parseJwt(root.jwt),
    rateLimit: root.rate_limit === undefined ? undefined : parseRateLimit(root.rate_limit),
    routes,
  };
}

function parseJwt(value: unknown): JwtSettings {
  const jwt = objectAt(value, "jwt");
  knownKeys(jwt, "jwt", ["jwks_file", "jwks_url", "issuer", "audience"]);
  const text = (key: string) => {
    const field = jwt[key];
    if (field === undefined) return undefined;
    if (typeof field !== "string" || field === "") throw invalidArgument(`jwt.${key}`, "must be a non-empty string");
    return field;
  };
  const settings = { jwksFile: text("jwks_file"), jwksUrl: text("jwks_url"), issuer: text("issuer"), audience: text("audience") };
  if ((settings.jwksFile === undefined) === (settings.jwksUrl === undefined)) throw invalidArgument("jwt", "needs one of jwks_file or jwks_url");
  if (settings.jwksUrl !== undefined && !/^https?:\/\//.test(settings.jwksUrl)) throw invalidArgument("jwt.jwks_url", "must be an http(s) URL");
  return settings;
}

function parseRateLimit(value: unknown): RateLimitSettings {
  const limit = objectAt(value, "rate_limit");
  knownKeys(limit, "rate_limit", ["requests_per_second", "burst"]);
  const requestsPerSecond = optionalInteger(limit.requests_per_second, "rate_limit.requests_per_second", 1, 1_000_000);
  if (requestsPerSecond === undefined) throw invalidArgument("rate_limit.requests_per_second", "is required");
  return { requestsPerSecond, burst: optionalInteger(limit.burst, "rate_limit.burst", 1, 1_000_000) ?? requestsPerSecond };
}

function stringList(value: unknown, field: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((item) => typeof item !== "string" || item === "")) {
    throw invalidArgument(field, "must be a list of non-empty strings");
  }
  return value as string[];
}

/** The rule for a method: its own, else its service's, else "*", else none (no requirement). */
export function ruleFor(config: Pick<GatewayConfig, "routes">, service: string, method: string): RouteRule {
  return config.routes.get(`${service}/${method}`) ?? config.routes.get(`${service}/*`) ?? config.routes.get("*") ?? { auth: "none", scopes: [] };
}
