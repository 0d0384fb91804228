import * as fs from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { ServerCredentials, credentials } from "@grpc/grpc-js";
import type { ChannelCredentials, ChannelOptions } from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import { createMeshCa, issueWorkloadCertificate, spiffeIdFor, spiffeIdOfSubjectAltName, workloadFiles } from "../mesh/identity";
import type { MeshTlsOptions } from "../mesh/tls";
import { flag } from "./control-channel";

/**
 * The mTLS of B1T and B2T (issue 13): one development mesh CA (mesh/identity.ts, EC P-256, openssl)
 * and two X.509-SVIDs from it, one for the bench server and one for the load clients. protomesh's
 * side gets them as createServer's and createClient's `tls` option; the plain grpc-js baseline gets
 * the same files as grpc-js' own credentials (createSsl, client certificate required), so both sides
 * shake hands with the same CA, keys and curves, and differ only in the code around the handshake.
 */

/** The mesh service the bench server's certificate names, and the one its clients expect to reach. */
export const BENCH_TLS_SERVER_SERVICE = "bench-catalog";
/** The mesh service the load clients' certificate names. */
export const BENCH_TLS_CLIENT_SERVICE = "bench-client";
/** Trust domain of the bench CA. */
export const BENCH_TRUST_DOMAIN = "bench.protomesh.local";
/** Lifetime of the bench certificates: longer than any run, so that none is renewed mid-measurement. */
const BENCH_CERTIFICATE_TTL_MS = 12 * 60 * 60 * 1000;

/** The PEM files of one side of the handshake, as every bench process takes them (`--ca --cert --key`). */
export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** The bench CA's files: the server's identity and the clients'; `remove` deletes them all. */
export interface BenchTls {
  server: TlsFiles;
  client: TlsFiles;
  remove(): Promise<void>;
}

/** Makes the CA and both certificates in a fresh temporary directory. */
export async function createBenchTls(): Promise<BenchTls> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "protomesh-bench-tls-"));
  try {
    const ca = await createMeshCa({ dir, trustDomain: BENCH_TRUST_DOMAIN });
    const issue = (service: string) => issueWorkloadCertificate(ca, { service, ttlMs: BENCH_CERTIFICATE_TTL_MS });
    const server = await issue(BENCH_TLS_SERVER_SERVICE);
    const client = await issue(BENCH_TLS_CLIENT_SERVICE);
    return { server: workloadFiles(ca, server), client: workloadFiles(ca, client), remove: () => rm(dir, { recursive: true, force: true }) };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** The command-line flags that hand `files` to a bench process. */
export function tlsFlags(files: TlsFiles): string[] {
  return ["--ca", files.caFile, "--cert", files.certFile, "--key", files.keyFile];
}

/** The files a bench process was handed with {@link tlsFlags}. */
export function tlsFilesFromFlags(): TlsFiles {
  return { caFile: flag("ca"), certFile: flag("cert"), keyFile: flag("key") };
}

/** The `tls` option of protomesh's createClient for the bench: the server must be the bench server's SPIFFE ID. */
export function meshClientTls(files: TlsFiles): MeshTlsOptions {
  return { ...files, serverService: BENCH_TLS_SERVER_SERVICE };
}

/** Plain grpc-js server credentials from `files`: the server's certificate, a client certificate from the CA required. */
export function plainServerCredentials(files: TlsFiles): ServerCredentials {
  const [ca, cert, key] = readPem(files);
  return ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true);
}

/**
 * Plain grpc-js channel credentials from `files`, as a grpc-js user writes them for SPIFFE peers:
 * the chain checked by Node against the CA, then the server's SPIFFE ID compared with the bench
 * server's (the peer is an IP address, which the certificate does not name, so Node's host-name
 * check cannot apply), and the same TLS server name protomesh sends (the service, not an IP
 * address: RFC 6066).
 */
export function plainChannelTls(files: TlsFiles): { credentials: ChannelCredentials; options: ChannelOptions } {
  const [ca, cert, key] = readPem(files);
  return {
    credentials: credentials.createSsl(ca, key, cert, { checkServerIdentity: checkBenchServerIdentity }),
    options: { "grpc.ssl_target_name_override": BENCH_TLS_SERVER_SERVICE },
  };
}

/** Node's checkServerIdentity for the bench server: its SPIFFE ID (its one URI SAN) must be the bench server's. */
export function checkBenchServerIdentity(_host: string, certificate: PeerCertificate): Error | undefined {
  const expected = spiffeIdFor(BENCH_TRUST_DOMAIN, BENCH_TLS_SERVER_SERVICE);
  const actual = spiffeIdOfSubjectAltName(certificate.subjectaltname);
  return actual === expected ? undefined : new Error(`bench: the server is ${String(actual)}, not ${expected}`);
}

/** The CA, certificate and key of `files`, read. */
export function readPem(files: TlsFiles): [Buffer, Buffer, Buffer] {
  return [fs.readFileSync(files.caFile), fs.readFileSync(files.certFile), fs.readFileSync(files.keyFile)];
}

/**
 * The four comparisons of B1T and B2T, each a metric prefix and the name of its baseline column;
 * the protomesh column holds the side the prefix names first. `mtls` is issue 13's figure,
 * protomesh against plain grpc-js with the same mTLS; `plaintext` is B1's and B2's in the same run
 * (and, in B1T, through the same relay); the last two are what mTLS itself costs each side.
 */
export const MTLS_COMPARISONS = {
  mtls: { prefix: "mTLS, protomesh vs plain grpc-js", baselineName: "plain grpc-js, mTLS" },
  plaintext: { prefix: "plaintext, protomesh vs plain grpc-js", baselineName: "plain grpc-js" },
  plainCost: { prefix: "plain grpc-js, mTLS vs plaintext", baselineName: "plain grpc-js, plaintext" },
  meshCost: { prefix: "protomesh, mTLS vs plaintext", baselineName: "protomesh, plaintext" },
} as const;

/** One of {@link MTLS_COMPARISONS}. */
export type MtlsComparison = (typeof MTLS_COMPARISONS)[keyof typeof MTLS_COMPARISONS];
