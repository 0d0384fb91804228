import * as fs from "node:fs";
import * as path from "node:path";
import { SignJWT, exportJWK, generateKeyPair, importJWK } from "jose";
import type { JWK } from "jose";

/**
 * The development token issuer of `protomesh up`: an ES256 key pair in the working directory's
 * .data/ (git-ignored), the public half as the JWKS the gateway config names, and `protomesh
 * token`, which signs tokens with the private half. For a laptop only: a real deployment points
 * `jwt.jwks_url` at its identity provider and never holds a signing key.
 */

export const DEV_JWKS_FILE = path.join(".data", "gateway-jwks.json");
export const DEV_SIGNING_KEY_FILE = path.join(".data", "gateway-signing-key.json");
/** The `iss` and `aud` of development tokens, as deploy/gateway.yaml expects them. */
export const DEV_ISSUER = "protomesh-dev";
export const DEV_AUDIENCE = "protomesh-gateway";

/** Makes the key pair and the JWKS under `dir` unless they are there; resolves to the JWKS path. */
export async function ensureDevKeys(dir = process.cwd()): Promise<string> {
  const jwksFile = path.join(dir, DEV_JWKS_FILE);
  const keyFile = path.join(dir, DEV_SIGNING_KEY_FILE);
  if (fs.existsSync(jwksFile) && fs.existsSync(keyFile)) return jwksFile;
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const kid = `dev-${Date.now().toString(36)}`;
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" };
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: "ES256" };
  fs.mkdirSync(path.dirname(jwksFile), { recursive: true });
  fs.writeFileSync(keyFile, `${JSON.stringify(privateJwk)}\n`, { mode: 0o600 });
  fs.writeFileSync(jwksFile, `${JSON.stringify({ keys: [publicJwk] }, null, 2)}\n`);
  return jwksFile;
}

/** A development token: `sub`, the space-separated `scope`, valid for `ttlS` seconds. */
export async function mintDevToken(options: { subject: string; scopes: string[]; ttlS: number; dir?: string }): Promise<string> {
  await ensureDevKeys(options.dir);
  const jwk = JSON.parse(fs.readFileSync(path.join(options.dir ?? process.cwd(), DEV_SIGNING_KEY_FILE), "utf8")) as JWK;
  const key = await importJWK(jwk, "ES256");
  return new SignJWT({ scope: options.scopes.join(" ") })
    .setProtectedHeader({ alg: "ES256", kid: jwk.kid })
    .setSubject(options.subject)
    .setIssuer(DEV_ISSUER)
    .setAudience(DEV_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(`${options.ttlS}s`)
    .sign(key);
}
