import { readFileSync } from "node:fs";
import { status } from "@grpc/grpc-js";
import { parse as parseYaml } from "yaml";
import { knownKeys, objectAt } from "./config-fields";
import type { Plain } from "./config-fields";
import { invalidArgument } from "./errors";
import { SPIFFE_ID_PATTERN, TRUST_DOMAIN_PATTERN, trustDomainOf } from "./identity";
import { MESH_SERVICES, methodOf } from "./method-path";
import { isServiceName } from "./names";

/**
 * Per-method authorization of a server's callers by their SPIFFE ID (issue 13), with the semantics
 * of gRPC's own authorization policy (gRFC A43) and Istio's AuthorizationPolicy: a deny rule that
 * matches wins over any allow rule; once a policy exists a call no allow rule matches is refused
 * (default deny), PERMISSION_DENIED; a call without a peer identity is refused UNAUTHENTICATED. The
 * mesh's own services (health, reflection, ORCA: MESH_SERVICES) are never authorized, so probes and
 * load reports keep working. Matching is on the method descriptor's registered path: grpc-js routes
 * by the exact `:path` before any interceptor runs, so another spelling of a path never reaches a
 * handler (it gets UNIMPLEMENTED) and cannot slip past a rule.
 */

/** What a rule does to the calls it matches. */
export type AuthorizationAction = "allow" | "deny";

/** One rule of a policy: `action` for calls of any of `methods` by any of `callers`. */
export interface AuthorizationRule {
  readonly action: AuthorizationAction;
  /**
   * Who: "*" (any caller with a mesh identity), a mesh service name ("orders": its SPIFFE ID
   * `spiffe://<trust domain>/service/orders`), or a full SPIFFE ID.
   */
  readonly callers: readonly string[];
  /**
   * What: "*" (every method of the server's application services), "/pkg.Service/*" (every method
   * of one), a full path ("/pkg.Service/Method"), or a method name ("Method", of any of them).
   */
  readonly methods: readonly string[];
}

/** A validated `authorization` block: its rules, in the order written. */
export interface AuthorizationPolicy {
  readonly rules: readonly AuthorizationRule[];
}

/** The outcome of authorizing one call. A refusal carries the status the caller gets. */
export type AuthorizationDecision =
  | { readonly outcome: "allow" }
  | { readonly outcome: "deny"; readonly code: status.PERMISSION_DENIED; readonly details: string }
  | { readonly outcome: "unauthenticated"; readonly code: status.UNAUTHENTICATED; readonly details: string };

const ALLOWED: AuthorizationDecision = Object.freeze({ outcome: "allow" });
/** "*", "/pkg.Service/*", "/pkg.Service/Method" or "Method" (the method keys of the mesh config, plus wildcards). */
const METHOD_PATTERN = /^(\*|\/[A-Za-z_][A-Za-z0-9_.]*\/\*|(\/[A-Za-z_][A-Za-z0-9_.]*\/)?[A-Za-z_][A-Za-z0-9_]*)$/;
/** The service name of a mesh workload's SPIFFE ID. */
const SERVICE_OF_SPIFFE_ID = /^spiffe:\/\/[^/]+\/service\/([^/]+)$/;

/**
 * Validates an `authorization` block (plain YAML or JSON, as parsed; a policy this returned parses
 * to an equal one) into a policy. Anything wrong is refused with INVALID_ARGUMENT naming the field
 * under `field`, e.g. `services.catalog.authorization.rules[0].action: must be allow or deny`.
 * An empty `rules` list is a policy that refuses every call of the application's methods.
 */
export function parseAuthorizationPolicy(block: unknown, field: string): AuthorizationPolicy {
  const node = objectAt(block, field);
  knownKeys(node, field, ["rules"]);
  if (!Array.isArray(node.rules)) throw invalidArgument(`${field}.rules`, "must be a list of rules ({ action, callers, methods })");
  const rules = node.rules.map((item: unknown, index) => parseRule(item, `${field}.rules[${index}]`));
  return Object.freeze({ rules: Object.freeze(rules) });
}

function parseRule(value: unknown, field: string): AuthorizationRule {
  const node: Plain = objectAt(value, field);
  knownKeys(node, field, ["action", "callers", "methods"]);
  if (node.action !== "allow" && node.action !== "deny") throw invalidArgument(`${field}.action`, "must be allow or deny");
  const callers = nonEmptyStrings(node.callers, `${field}.callers`, 'mesh service names (orders), SPIFFE IDs or "*"');
  callers.forEach((caller, index) => {
    if (caller !== "*" && !isServiceName(caller) && !isSpiffeId(caller)) {
      throw invalidArgument(
        `${field}.callers[${index}]`,
        `must be a mesh service name (orders), a SPIFFE ID (spiffe://protomesh.local/service/orders) or "*", got ${JSON.stringify(caller)}`,
      );
    }
  });
  const methods = nonEmptyStrings(node.methods, `${field}.methods`, 'method names (GetProduct), full paths or "*"');
  methods.forEach((method, index) => {
    const methodField = `${field}.methods[${index}]`;
    if (!METHOD_PATTERN.test(method)) {
      throw invalidArgument(
        methodField,
        `must be a method name (GetProduct), a full path (/shop.catalog.v1.CatalogService/GetProduct), /<service>/* or "*", got ${JSON.stringify(method)}`,
      );
    }
    if (method.startsWith("/") && MESH_SERVICES.has(method.slice(1, method.lastIndexOf("/")))) {
      throw invalidArgument(methodField, "names a mesh service (health, reflection, ORCA), whose calls are never authorized");
    }
  });
  return Object.freeze({ action: node.action, callers: Object.freeze(callers), methods: Object.freeze(methods) });
}

function nonEmptyStrings(value: unknown, field: string, what: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((item) => typeof item === "string")) {
    throw invalidArgument(field, `must be a non-empty list of ${what}`);
  }
  return [...(value as string[])];
}

function isSpiffeId(value: string): boolean {
  const trustDomain = trustDomainOf(value);
  return SPIFFE_ID_PATTERN.test(value) && trustDomain !== undefined && TRUST_DOMAIN_PATTERN.test(trustDomain);
}

/** Callers a rule names, compiled for a set lookup per call. */
interface CallerSet {
  readonly isAny: boolean;
  readonly spiffeIds: ReadonlySet<string>;
  /** Service names to match in any trust domain; empty when the server's trust domain is known. */
  readonly serviceNames: ReadonlySet<string>;
}

/** How the calls of one method are authorized: the policy's rules for it, compiled. */
export interface MethodAuthorization {
  /** The method is a mesh service's (health, reflection, ORCA): every call is allowed. */
  readonly isExempt: boolean;
  /** Decides a call of this method by the caller's SPIFFE ID (undefined: no peer identity). */
  check(spiffeId: string | undefined): AuthorizationDecision;
}

const EXEMPT: MethodAuthorization = Object.freeze({ isExempt: true, check: () => ALLOWED });

/**
 * A policy compiled per method path, on the method's first call, for a server: a call costs one
 * Map lookup and a few set lookups. The paths are the server's registered ones only (grpc-js answers
 * any other UNIMPLEMENTED before the interceptors), so the map stays as small as the services.
 */
export class Authorizer {
  private readonly methods = new Map<string, MethodAuthorization>();

  /**
   * `trustDomain` is the server's (tls.trustDomain, or its CA's): a caller given as a service name
   * matches only `spiffe://<trustDomain>/service/<name>`; without one, that name in any trust domain.
   */
  constructor(
    readonly policy: AuthorizationPolicy,
    readonly trustDomain?: string,
  ) {}

  /** How calls to `path` are authorized; the same object for every call of the method. */
  method(path: string): MethodAuthorization {
    let compiled = this.methods.get(path);
    if (compiled === undefined) {
      compiled = this.compile(path);
      this.methods.set(path, compiled);
    }
    return compiled;
  }

  private compile(path: string): MethodAuthorization {
    const method = methodOf(path);
    if (MESH_SERVICES.has(method.service)) return EXEMPT;
    const denies: { index: number; callers: CallerSet }[] = [];
    const allowed: string[] = [];
    this.policy.rules.forEach((rule, index) => {
      if (!rule.methods.some((pattern) => methodMatches(pattern, path, method.service, method.method))) return;
      if (rule.action === "deny") denies.push({ index, callers: this.callerSet(rule.callers) });
      else allowed.push(...rule.callers);
    });
    const allows = this.callerSet(allowed);
    return Object.freeze({
      isExempt: false,
      check: (spiffeId: string | undefined): AuthorizationDecision => {
        if (spiffeId === undefined) {
          return {
            outcome: "unauthenticated",
            code: status.UNAUTHENTICATED,
            details: `${path} needs a caller identity: a client certificate from the mesh CA with a SPIFFE ID`,
          };
        }
        for (const deny of denies) {
          if (isIn(deny.callers, spiffeId)) return refusal(spiffeId, path, `denied by rules[${deny.index}]`);
        }
        return isIn(allows, spiffeId) ? ALLOWED : refusal(spiffeId, path, "no rule allows it");
      },
    });
  }

  private callerSet(callers: readonly string[]): CallerSet {
    const spiffeIds = new Set<string>();
    const serviceNames = new Set<string>();
    for (const caller of callers) {
      if (caller === "*" || caller.startsWith("spiffe://")) spiffeIds.add(caller);
      else if (this.trustDomain !== undefined) spiffeIds.add(`spiffe://${this.trustDomain}/service/${caller}`);
      else serviceNames.add(caller);
    }
    return { isAny: spiffeIds.has("*"), spiffeIds, serviceNames };
  }
}

function methodMatches(pattern: string, path: string, service: string, method: string): boolean {
  if (pattern === "*") return true;
  if (pattern.endsWith("/*")) return pattern.slice(1, -2) === service;
  return pattern.startsWith("/") ? pattern === path : pattern === method;
}

function isIn(callers: CallerSet, spiffeId: string): boolean {
  if (callers.isAny || callers.spiffeIds.has(spiffeId)) return true;
  if (callers.serviceNames.size === 0) return false;
  const service = SERVICE_OF_SPIFFE_ID.exec(spiffeId)?.[1];
  return service !== undefined && callers.serviceNames.has(service);
}

function refusal(spiffeId: string, path: string, why: string): AuthorizationDecision {
  return { outcome: "deny", code: status.PERMISSION_DENIED, details: `${spiffeId} may not call ${path} (${why})` };
}

/**
 * Decides one call of `path` by the caller `spiffeId` (undefined: no peer identity) under `policy`.
 * A caller named by service name matches in `trustDomain` only, or in any trust domain without one.
 * Servers use an {@link Authorizer}, which compiles the policy once per method.
 */
export function authorize(
  policy: AuthorizationPolicy,
  path: string,
  spiffeId: string | undefined,
  trustDomain?: string,
): AuthorizationDecision {
  return new Authorizer(policy, trustDomain).method(path).check(spiffeId);
}

/**
 * A service's own policy from the mesh config file: `services.<service>.authorization`, validated,
 * or undefined when the file gives none. For a program's edge; it reads no other block (the control
 * plane validates the whole file when it loads it).
 */
export function loadAuthorizationPolicy(file: string, service: string): AuthorizationPolicy | undefined {
  const text = readFileSync(file, "utf8");
  let document: unknown;
  try {
    document = parseYaml(text);
  } catch (error) {
    throw invalidArgument("(file)", `not valid YAML: ${(error as Error).message.split("\n")[0]}`);
  }
  const services = objectAt(objectAt(document ?? {}, "(root)").services ?? {}, "services");
  const block = objectAt(services[service] ?? {}, `services.${service}`).authorization;
  return block === undefined || block === null ? undefined : parseAuthorizationPolicy(block, `services.${service}.authorization`);
}
