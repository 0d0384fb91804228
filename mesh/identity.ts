import { execFile } from "node:child_process";
import { X509Certificate, createPublicKey } from "node:crypto";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { isServiceName } from "./names";
import type { CertificateFiles } from "./tls-certificate-files";

/**
 * Workload identities of the mesh: a development CA and short-lived X.509-SVIDs (SPIFFE's X509-SVID
 * spec: one URI SAN `spiffe://<trust-domain>/service/<name>`, which other SAN types may accompany,
 * here DNS names and IP addresses; CA:FALSE, digitalSignature, serverAuth and clientAuth), made by
 * the openssl CLI (a kept tool; no crypto is written here).
 * `openssl ca` issues the workload certificates because it alone of the 3.0 commands takes a start
 * and an end date to the second (`x509 -req` and `req -x509` count whole days), which short
 * lifetimes and already-expired test certificates need.
 */

const run = promisify(execFile);

/** The openssl binary; the development CA needs 3.0 or later (`-rand_serial`, `-addext`). */
export const OPENSSL = "openssl";
/** Lifetime of a workload certificate unless given: one hour, as SPIRE's default X509-SVID TTL. */
export const DEFAULT_WORKLOAD_TTL_MS = 60 * 60 * 1000;
/** Lifetime of a development CA unless given: thirty days. */
export const DEFAULT_CA_TTL_MS = 30 * 24 * 60 * 60 * 1000;
/** A SPIFFE trust domain: lowercase letters, digits, dots, dashes and underscores (SPIFFE ID spec, 2.1). */
export const TRUST_DOMAIN_PATTERN = /^[a-z0-9._-]{1,255}$/;
/** A SPIFFE ID (SPIFFE ID spec, 2.1 and 2.2): spiffe://<trust domain>/<segment>[/<segment>...]. */
export const SPIFFE_ID_PATTERN = /^spiffe:\/\/[^/]+(\/[A-Za-z0-9._-]+)+$/;

const DAY_MS = 24 * 60 * 60 * 1000;

/** A mesh CA on disk: what issues workload certificates and what every peer trusts. */
export interface MeshCa {
  trustDomain: string;
  /** The CA certificate (PEM): the trust bundle every workload is given as its `caFile`. */
  certFile: string;
  /** The CA's private key (PEM); it never leaves `dir`. */
  keyFile: string;
  certPem: string;
}

/** A workload's key and certificate on disk. */
export interface WorkloadCertificate {
  spiffeId: string;
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
  /** The certificate's serial number, hex as node:crypto prints it. */
  serialNumber: string;
  notAfter: Date;
}

/** Options of {@link createMeshCa}. */
export interface MeshCaOptions {
  /** Directory to write ca.crt and ca.key into; made if missing. */
  dir: string;
  /** The mesh's SPIFFE trust domain, e.g. "protomesh.local". */
  trustDomain: string;
  /** Lifetime of the CA certificate (ms), rounded up to whole days; DEFAULT_CA_TTL_MS unless given. */
  ttlMs?: number;
}

/** Options of {@link issueWorkloadCertificate}. */
export interface WorkloadCertificateOptions {
  /**
   * The mesh service name the certificate names (a DNS label, as `xds:///<name>`): its SPIFFE ID
   * `spiffe://<trust domain>/service/<name>`, and a DNS SAN of the name.
   */
  service: string;
  /**
   * Another SPIFFE ID of the CA's trust domain to name instead of the service's, e.g. an operator's
   * `spiffe://<trust domain>/admin/<name>`; then `service` only names the files and the CN.
   */
  spiffeId?: string;
  /** Lifetime (ms), rounded up to whole seconds; DEFAULT_WORKLOAD_TTL_MS unless given. */
  ttlMs?: number;
  /** Start of validity; now unless given (a time in the past makes an expired certificate for tests). */
  notBefore?: Date;
  /** Directory to write <service>.crt and <service>.key into; the CA's directory unless given. */
  dir?: string;
  /** File name stem of the key and certificate; `service` unless given (two of one service side by side). */
  fileStem?: string;
  /** DNS SANs beside the SPIFFE ID; [service] unless given (what grpcurl's -servername checks). */
  dnsNames?: readonly string[];
  /** IP address SANs (e.g. the control plane's 127.0.0.1, which xDS clients verify its host against). */
  ipAddresses?: readonly string[];
}

/** Options of {@link signCertificateRequest}. */
export interface SignOptions {
  /** The PKCS#10 request (PEM); only its public key is used, after its signature is verified. */
  csrPem: string;
  /** The SPIFFE ID to name, of the CA's trust domain. */
  spiffeId: string;
  /** Lifetime (ms), rounded up to whole seconds; DEFAULT_WORKLOAD_TTL_MS unless given. */
  ttlMs?: number;
  /** Start of validity, rounded down to the second; now unless given. */
  notBefore?: Date;
  /** DNS SANs beside the SPIFFE ID; none unless given. */
  dnsNames?: readonly string[];
  /** IP address SANs beside the SPIFFE ID; none unless given. */
  ipAddresses?: readonly string[];
}

/** A certificate {@link signCertificateRequest} signed. */
export interface SignedCertificate {
  spiffeId: string;
  certPem: string;
  serialNumber: string;
  notAfter: Date;
}

/** The SPIFFE ID of a mesh service: `spiffe://<trustDomain>/service/<service>`. */
export function spiffeIdFor(trustDomain: string, service: string): string {
  checkTrustDomain(trustDomain);
  if (!isServiceName(service)) {
    throw new TypeError(`identity: service must be a mesh service name (a DNS label such as "catalog"), got ${JSON.stringify(service)}`);
  }
  return `spiffe://${trustDomain}/service/${service}`;
}

/** The files that give a workload its identity (a `tls` option): `ca`'s certificate as the trust bundle, the workload's key and certificate. */
export function workloadFiles(ca: MeshCa, workload: { certFile: string; keyFile: string }): CertificateFiles {
  return { caFile: ca.certFile, certFile: workload.certFile, keyFile: workload.keyFile };
}

/**
 * Writes a self-signed development CA (EC P-256, CA:TRUE, keyCertSign, its SAN the trust domain's
 * SPIFFE ID) into `dir` as ca.crt and ca.key.
 */
export async function createMeshCa(options: MeshCaOptions): Promise<MeshCa> {
  checkTrustDomain(options.trustDomain);
  const ttlMs = checkTtl("ttlMs", options.ttlMs ?? DEFAULT_CA_TTL_MS);
  await mkdir(options.dir, { recursive: true });
  const keyFile = path.join(options.dir, "ca.key");
  const certFile = path.join(options.dir, "ca.crt");
  await generateKey(keyFile);
  await openssl([
    "req", "-x509", "-new", "-sha256",
    "-key", keyFile,
    "-out", certFile,
    "-days", String(Math.ceil(ttlMs / DAY_MS)),
    "-subj", `/O=protomesh/CN=protomesh mesh CA ${options.trustDomain}`,
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    "-addext", `subjectAltName=URI:spiffe://${options.trustDomain}`,
  ]);
  return { trustDomain: options.trustDomain, certFile, keyFile, certPem: await readFile(certFile, "utf8") };
}

/**
 * Issues `service` a key (EC P-256) and a certificate signed by `ca`, whose SANs are its SPIFFE ID
 * (or `spiffeId`), its DNS names and its IP addresses, valid from `notBefore` (now) for `ttlMs`.
 * The files are replaced by rename (writeKeyAndCertificate), key first, so that a reader never
 * sees half a file (a watcher may still see a new key beside the old certificate for an instant:
 * tls-certificate-files.ts holds such a pair back).
 */
export async function issueWorkloadCertificate(ca: MeshCa, options: WorkloadCertificateOptions): Promise<WorkloadCertificate> {
  const spiffeId = options.spiffeId ?? spiffeIdFor(ca.trustDomain, options.service);
  const dir = options.dir ?? path.dirname(ca.certFile);
  const stem = options.fileStem ?? options.service;
  const { keyPem, csrPem } = await createCertificateRequest();
  const signed = await signCertificateRequest(ca, {
    csrPem,
    spiffeId,
    ttlMs: options.ttlMs,
    notBefore: options.notBefore,
    dnsNames: options.dnsNames ?? (options.spiffeId === undefined ? [options.service] : []),
    ipAddresses: options.ipAddresses,
  });
  await mkdir(dir, { recursive: true });
  const keyFile = path.join(dir, `${stem}.key`);
  const certFile = path.join(dir, `${stem}.crt`);
  await writeKeyAndCertificate({ keyFile, certFile }, keyPem, signed.certPem);
  return { ...signed, keyFile, certFile, keyPem };
}

/** A new EC P-256 key and a PKCS#10 request for it (PEM both), for a CA to sign. */
export async function createCertificateRequest(): Promise<{ keyPem: string; csrPem: string }> {
  return withWorkDir(async (work) => {
    const key = path.join(work, "workload.key");
    const csr = path.join(work, "workload.csr");
    await generateKey(key);
    await openssl(["req", "-new", "-key", key, "-out", csr, "-subj", "/O=protomesh"]);
    return { keyPem: await readFile(key, "utf8"), csrPem: await readFile(csr, "utf8") };
  });
}

/**
 * Signs the public key of a PKCS#10 request with `ca`: a certificate whose only URI SAN is
 * `spiffeId`, with `dnsNames` and `ipAddresses` beside it, CN the SPIFFE ID's last segment. The
 * request's subject and extensions are never copied: what a certificate names is the caller's to
 * decide (the control plane's CertificateService passes the caller's own identity). A request that
 * is not PEM, whose signature does not verify, or whose key is weaker than EC P-256 / RSA 2048 is
 * refused with a TypeError saying why, as are a `spiffeId` of another trust domain and bad SANs.
 */
export async function signCertificateRequest(ca: MeshCa, options: SignOptions): Promise<SignedCertificate> {
  if (trustDomainOf(options.spiffeId) !== ca.trustDomain || !SPIFFE_ID_PATTERN.test(options.spiffeId)) {
    throw new TypeError(`identity: spiffeId must be a SPIFFE ID of spiffe://${ca.trustDomain}, got ${JSON.stringify(options.spiffeId)}`);
  }
  const ttlMs = checkTtl("ttlMs", options.ttlMs ?? DEFAULT_WORKLOAD_TTL_MS);
  const notBefore = new Date(Math.floor((options.notBefore ?? new Date()).getTime() / 1000) * 1000);
  const notAfter = new Date(notBefore.getTime() + Math.ceil(ttlMs / 1000) * 1000);
  if (!/^-----BEGIN CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE REQUEST-----\s*$/.test(options.csrPem)) {
    throw new TypeError("identity: csr must be one PEM CERTIFICATE REQUEST");
  }
  return withWorkDir(async (work) => {
    const csr = path.join(work, "workload.csr");
    const cert = path.join(work, "workload.crt");
    const config = path.join(work, "ca.cnf");
    await writeFile(csr, options.csrPem);
    const publicKeyPem = await opensslOut(["req", "-in", csr, "-noout", "-verify", "-pubkey"], "csr: its signature does not verify");
    checkKeyStrength(publicKeyPem);
    await writeFile(path.join(work, "index.txt"), "");
    await writeFile(config, caConfig(work, ca, subjectAltName(options)));
    const commonName = options.spiffeId.slice(options.spiffeId.lastIndexOf("/") + 1);
    await openssl([
      "ca", "-batch", "-notext", "-rand_serial",
      "-config", config,
      "-in", csr,
      "-out", cert,
      "-subj", `/O=protomesh/CN=${commonName}`,
      "-startdate", asn1Time(notBefore),
      "-enddate", asn1Time(notAfter),
    ]);
    const certPem = await readFile(cert, "utf8");
    const x509 = new X509Certificate(certPem);
    return { spiffeId: options.spiffeId, certPem, serialNumber: x509.serialNumber, notAfter: new Date(x509.validTo) };
  });
}

/**
 * Writes a key and its certificate over `files`, each by rename, key first (what renewal and
 * issuance both do): a watcher sees the old pair, a new key beside the old certificate (which it
 * holds back as no pair), or the new pair.
 */
export async function writeKeyAndCertificate(files: { keyFile: string; certFile: string }, keyPem: string, certPem: string): Promise<void> {
  await replaceFile(files.keyFile, keyPem, 0o600);
  await replaceFile(files.certFile, certPem, 0o644);
}

/**
 * The SPIFFE ID a certificate (PEM or DER) names: its one URI SAN with the spiffe scheme, or
 * undefined when it has none or more than one URI SAN (an X509-SVID has exactly one).
 */
export function spiffeIdOf(certificate: string | Buffer): string | undefined {
  return spiffeIdOfSubjectAltName(new X509Certificate(certificate).subjectAltName);
}

/**
 * The SPIFFE ID in a subjectAltName as node prints it ("DNS:a, URI:spiffe://td/service/x"), under
 * the same rule as {@link spiffeIdOf}. A SPIFFE ID holds no comma or quote, so splitting on ", " is exact.
 */
export function spiffeIdOfSubjectAltName(subjectAltName: string | undefined): string | undefined {
  const uris = (subjectAltName ?? "")
    .split(", ")
    .filter((name) => name.startsWith("URI:"))
    .map((name) => name.slice("URI:".length));
  if (uris.length !== 1 || !uris[0].startsWith("spiffe://")) return undefined;
  return uris[0];
}

/**
 * The DNS names and IP addresses beside the SPIFFE ID in a subjectAltName as node prints it
 * ("URI:spiffe://td/service/x, DNS:x, IP Address:127.0.0.1"): what a renewal names again.
 */
export function otherNamesOf(subjectAltName: string | undefined): { dnsNames: string[]; ipAddresses: string[] } {
  const names = (subjectAltName ?? "").split(", ");
  return {
    dnsNames: names.filter((name) => name.startsWith("DNS:")).map((name) => name.slice("DNS:".length)),
    ipAddresses: names.filter((name) => name.startsWith("IP Address:")).map((name) => name.slice("IP Address:".length)),
  };
}

/** The trust domain a SPIFFE ID names ("spiffe://td/service/x" → "td"). */
export function trustDomainOf(spiffeId: string): string | undefined {
  return /^spiffe:\/\/([^/]+)/.exec(spiffeId)?.[1];
}

function checkTrustDomain(trustDomain: string): void {
  if (!TRUST_DOMAIN_PATTERN.test(trustDomain)) {
    throw new TypeError(
      `identity: trustDomain must be lowercase letters, digits, ".", "-" or "_" (SPIFFE ID spec), got ${JSON.stringify(trustDomain)}`,
    );
  }
}

function checkTtl(field: string, ttlMs: number): number {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new TypeError(`identity: ${field} must be a positive number of milliseconds, got ${ttlMs}`);
  return ttlMs;
}

/** The minimal `openssl ca` configuration: a throwaway database in `work`, the SVID's extensions. */
function caConfig(work: string, ca: MeshCa, subjectAltNames: string): string {
  return [
    "[ca]",
    "default_ca = mesh",
    "[mesh]",
    `dir = ${work}`,
    "database = $dir/index.txt",
    // Named because `openssl ca` looks it up; -rand_serial picks the serial, as RFC 5280 asks (unpredictable).
    "serial = $dir/serial",
    "new_certs_dir = $dir",
    `certificate = ${ca.certFile}`,
    `private_key = ${ca.keyFile}`,
    "default_md = sha256",
    "policy = any",
    "unique_subject = no",
    "copy_extensions = none",
    "x509_extensions = svid",
    "[any]",
    "organizationName = optional",
    "commonName = optional",
    "[svid]",
    "basicConstraints = critical,CA:FALSE",
    "keyUsage = critical,digitalSignature,keyAgreement",
    "extendedKeyUsage = serverAuth,clientAuth",
    "authorityKeyIdentifier = keyid",
    `subjectAltName = ${subjectAltNames}`,
    "",
  ].join("\n");
}

/** An ASN.1 UTCTime (YYMMDDHHMMSSZ), what `openssl ca -startdate/-enddate` read; good until 2050. */
function asn1Time(date: Date): string {
  return date.toISOString().replace(/[-:T]/g, "").slice(2, 14) + "Z";
}

/** The SAN extension's value: the SPIFFE ID first, then DNS names and IP addresses; a bad name or address is a TypeError. */
function subjectAltName(options: SignOptions): string {
  for (const name of options.dnsNames ?? []) {
    if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(name)) throw new TypeError(`identity: dnsNames: not a DNS name: ${JSON.stringify(name)}`);
  }
  for (const address of options.ipAddresses ?? []) {
    if (isIP(address) === 0) throw new TypeError(`identity: ipAddresses: not an IP address: ${JSON.stringify(address)}`);
  }
  return [
    `URI:${options.spiffeId}`,
    ...(options.dnsNames ?? []).map((name) => `DNS:${name}`),
    ...(options.ipAddresses ?? []).map((address) => `IP:${address}`),
  ].join(",");
}

/** Refuses a public key weaker than EC P-256 or RSA 2048 (what the mesh's own keys are); Ed25519 passes. */
function checkKeyStrength(publicKeyPem: string): void {
  const key = createPublicKey(publicKeyPem);
  const details = key.asymmetricKeyDetails ?? {};
  const isStrong =
    (key.asymmetricKeyType === "ec" && ["prime256v1", "secp384r1", "secp521r1"].includes(details.namedCurve ?? "")) ||
    (key.asymmetricKeyType === "rsa" && (details.modulusLength ?? 0) >= 2048) ||
    key.asymmetricKeyType === "ed25519";
  if (!isStrong) {
    throw new TypeError(`identity: csr: its ${key.asymmetricKeyType} key is too weak (EC P-256 or stronger, RSA 2048 or more, or Ed25519)`);
  }
}

async function withWorkDir<T>(body: (work: string) => Promise<T>): Promise<T> {
  const work = await mkdtemp(path.join(tmpdir(), "protomesh-issue-"));
  try {
    return await body(work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function generateKey(file: string): Promise<void> {
  await openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file]);
}

/** Writes `content` beside `file` and renames it over `file`: readers see the old file or the new one. */
async function replaceFile(file: string, content: string, mode: number): Promise<void> {
  const next = `${file}.${process.pid}.${Date.now()}.next`;
  await writeFile(next, content, { mode });
  await rename(next, file);
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run(OPENSSL, args, { timeout: 30_000 });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`identity: openssl ${args[0]} failed${stderr ? `: ${stderr}` : ""}`, { cause: error });
  }
}

/** Runs openssl and resolves to what it printed; a failure is a TypeError saying `refusal` (bad input, not a fault). */
async function opensslOut(args: string[], refusal: string): Promise<string> {
  try {
    return (await run(OPENSSL, args, { timeout: 30_000 })).stdout;
  } catch (error) {
    throw new TypeError(`identity: ${refusal}`, { cause: error });
  }
}
