import * as fs from "node:fs";
import type { IncomingMessage } from "node:http";
import { Metadata, status } from "@grpc/grpc-js";
import { createLocalJWKSet, createRemoteJWKSet, jwtVerify } from "jose";
import type { JWTPayload, JWTVerifyGetKey } from "jose";
import { ruleFor } from "./config";
import type { GatewayConfig } from "./config";
import { GatewayError } from "./errors";
import { RateLimiter } from "./rate-limit";

/**
 * Auth and limits at the edge: the gateway's guard. For the route of a call (its method's rule in
 * the gateway config) it verifies the bearer token (jose: signature against the JWKS, `exp`/`nbf`,
 * the configured issuer and audience), checks the route's scopes, and takes a token from the
 * caller's rate-limit bucket. What the services learn is metadata, never the token itself:
 *
 * - `x-auth-subject`: the token's `sub`;
 * - `x-auth-scopes`: its scopes, space-separated;
 * - `x-auth-issuer`: its `iss`.
 *
 * A missing or bad token is 401 (with `WWW-Authenticate: Bearer`), a missing scope 403, an empty
 * bucket 429 with `Retry-After`.
 */

/** The metadata keys of a verified token's claims. */
export const CLAIM_METADATA = { subject: "x-auth-subject", scopes: "x-auth-scopes", issuer: "x-auth-issuer" } as const;

/** The least a guard needs to know of a call's method. */
export interface GuardedMethod {
  service: string;
  name: string;
}

export class GatewayGuard {
  private readonly keys: JWTVerifyGetKey | undefined;
  private readonly limiter: RateLimiter | undefined;

  constructor(
    private readonly config: Pick<GatewayConfig, "jwt" | "rateLimit" | "routes">,
    options: { now?: () => number } = {},
  ) {
    const jwt = config.jwt;
    if (jwt?.jwksFile !== undefined) {
      let jwks: unknown;
      try {
        jwks = JSON.parse(fs.readFileSync(jwt.jwksFile, "utf8"));
      } catch (error) {
        throw new TypeError(`jwt.jwks_file ${jwt.jwksFile}: ${(error as Error).message}`, { cause: error });
      }
      this.keys = createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]);
    } else if (jwt?.jwksUrl !== undefined) {
      this.keys = createRemoteJWKSet(new URL(jwt.jwksUrl));
    }
    this.limiter = config.rateLimit && new RateLimiter(config.rateLimit, options.now);
  }

  /** The claims metadata for a call of `method`, or a GatewayError saying why it may not be made. */
  async admit(method: GuardedMethod, req: IncomingMessage): Promise<Metadata> {
    const rule = ruleFor(this.config, method.service, method.name);
    const token = bearerToken(req);
    const metadata = new Metadata();
    let claims: JWTPayload | undefined;
    if (token !== undefined) {
      claims = await this.verify(token);
    } else if (rule.auth === "required") {
      throw unauthenticated("a bearer token is required (Authorization: Bearer <token>)");
    }
    if (claims) {
      const scopes = scopesOf(claims);
      const missing = rule.scopes.filter((scope) => !scopes.includes(scope));
      if (missing.length > 0) {
        throw new GatewayError(403, status.PERMISSION_DENIED, `${method.service}/${method.name} needs scope ${missing.join(" ")}`);
      }
      if (typeof claims.sub === "string") metadata.set(CLAIM_METADATA.subject, asciiOnly(claims.sub));
      metadata.set(CLAIM_METADATA.scopes, asciiOnly(scopes.join(" ")));
      if (typeof claims.iss === "string") metadata.set(CLAIM_METADATA.issuer, asciiOnly(claims.iss));
    }
    if (this.limiter) {
      const key = typeof claims?.sub === "string" ? `sub:${claims.sub}` : `ip:${req.socket.remoteAddress ?? "?"}`;
      const retryInMs = this.limiter.take(key);
      if (retryInMs !== undefined) {
        throw new GatewayError(429, status.RESOURCE_EXHAUSTED, `rate limit: retry in ${retryInMs} ms`, {
          "retry-after": String(Math.max(1, Math.ceil(retryInMs / 1000))),
        });
      }
    }
    return metadata;
  }

  private async verify(token: string): Promise<JWTPayload> {
    if (!this.keys) throw unauthenticated("bearer tokens are not accepted here (no jwt in the gateway config)");
    try {
      const { payload } = await jwtVerify(token, this.keys, { issuer: this.config.jwt?.issuer, audience: this.config.jwt?.audience });
      return payload;
    } catch (error) {
      // jose's messages say what failed ('"exp" claim timestamp check failed'), never the token.
      throw unauthenticated(`invalid bearer token: ${(error as Error).message}`);
    }
  }
}

function unauthenticated(message: string): GatewayError {
  return new GatewayError(401, status.UNAUTHENTICATED, message, { "www-authenticate": 'Bearer realm="protomesh"' });
}

/** The token of `Authorization: Bearer <token>`; a malformed header is 401, no header undefined. */
function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer ([A-Za-z0-9\-_.~+/]+=*)$/.exec(header);
  if (!match) throw unauthenticated("the Authorization header must be `Bearer <token>`");
  return match[1];
}

/** A token's scopes: the `scope` claim (space-separated, RFC 8693) or the `scp` list. */
function scopesOf(claims: JWTPayload): string[] {
  if (typeof claims.scope === "string") return claims.scope.split(" ").filter((scope) => scope !== "");
  if (Array.isArray(claims.scp)) return claims.scp.filter((scope): scope is string => typeof scope === "string");
  return [];
}

/** A claim as a metadata value: printable ASCII only (grpc-js refuses anything else in text metadata). */
function asciiOnly(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, "?");
}
