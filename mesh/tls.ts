import { readFileSync } from "node:fs";
import { experimental } from "@grpc/grpc-js";
import type { ChannelCredentials, ChannelOptions, ServerCredentials } from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import { spiffeIdFor, spiffeIdOf, spiffeIdOfSubjectAltName, trustDomainOf } from "./identity";
import type { Logger } from "./logger";
import { CertificateFileWatcher } from "./tls-certificate-files";
import type { CertificateFiles } from "./tls-certificate-files";

/**
 * Mutual TLS of the kit's servers and clients, from certificate files that may be replaced at any
 * time (grpc-js' certificate providers re-read them; new handshakes use the new files, open
 * connections and their streams keep theirs). STRICT: a server requires a client certificate from
 * the mesh CA, a client requires the server's certificate to carry the SPIFFE ID of the service it
 * dials. Identity is the SPIFFE ID, never the host name: endpoints are IP addresses.
 */

/** The `tls` option of createServer and createClient. */
export interface MeshTlsOptions extends CertificateFiles {
  /**
   * The mesh's trust domain; read from the CA certificate's SPIFFE SAN (spiffe://<trust-domain>)
   * unless given.
   */
  trustDomain?: string;
  /**
   * Client only: the mesh service whose SPIFFE ID the server's certificate must carry. Defaults to
   * the service a mesh target names ("catalog", "xds:///catalog"); for any other target, a
   * certificate with a SPIFFE ID of the trust domain is accepted.
   */
  serverService?: string;
}

/** A server's TLS: its credentials and the watcher whose first read `listen` awaits. */
export interface ServerTls {
  credentials: ServerCredentials;
  files: CertificateFileWatcher;
}

/** A client's TLS: its credentials and the SPIFFE ID (or trust domain) the server must prove. */
export interface ClientTls {
  credentials: ChannelCredentials;
  /** What `checkServerIdentity` accepts: one SPIFFE ID, or any of the trust domain. */
  expected: { trustDomain: string; spiffeId?: string };
  /**
   * The TLS server name (SNI) to send: the service dialled, or the trust domain. grpc-js would send
   * the target's host, an IP address for mesh endpoints, which RFC 6066 forbids (node's DEP0123).
   */
  serverName: string;
  /** The channel options that send `serverName` (grpc.ssl_target_name_override), for the channel these credentials go on. */
  channelOptions: ChannelOptions;
}

/** A server call's view of its connection (grpc-js' ServerUnaryCall, ServerWritableStream, ...). */
export interface CallWithAuthContext {
  getAuthContext(): { sslPeerCertificate?: PeerCertificate };
}

/** Server credentials that require a client certificate from `options.caFile`'s CA (STRICT mTLS). */
export function serverTls(options: MeshTlsOptions, logger: Logger): ServerTls {
  const files = new CertificateFileWatcher(options, logger.child({ component: "tls" }));
  // grpc-js names these parameters the other way round; the first is the identity provider.
  const credentials = experimental.createCertificateProviderServerCredentials(files, files, true);
  return { credentials, files };
}

/**
 * Channel credentials presenting `options.certFile` and accepting a server whose certificate
 * chains to `options.caFile` and names the SPIFFE ID of `service` (or, without one, any SPIFFE ID
 * of the trust domain). The host name is not checked: mesh endpoints are addresses. `shared` is a
 * watcher of the same files to take the certificates from instead of a watcher of its own.
 */
export function clientTls(options: MeshTlsOptions, service: string | undefined, logger: Logger, shared?: CertificateFileWatcher): ClientTls {
  const trustDomain = options.trustDomain ?? trustDomainOfCa(options.caFile);
  const target = options.serverService ?? service;
  const expected = { trustDomain, spiffeId: target === undefined ? undefined : spiffeIdFor(trustDomain, target) };
  // One watcher may serve many credentials (the prober's, one per service): it reads the files once.
  const files = shared ?? new CertificateFileWatcher(options, logger.child({ component: "tls" }));
  const credentials = experimental.createCertificateProviderChannelCredentials(files, files, {
    checkServerIdentity: (_host, certificate) => checkSpiffeId(expected, certificate),
  });
  const serverName = target ?? trustDomain;
  return { credentials, expected, serverName, channelOptions: { "grpc.ssl_target_name_override": serverName } };
}

/**
 * The SPIFFE ID of the workload that made `call`, from the certificate it presented in the mTLS
 * handshake; undefined on a plaintext port. The seam per-method authorization builds on.
 */
export function peerIdentity(call: CallWithAuthContext): string | undefined {
  return spiffeIdOfSubjectAltName(call.getAuthContext().sslPeerCertificate?.subjectaltname);
}

/**
 * Node's checkServerIdentity for a mesh peer: undefined when the certificate's one SPIFFE ID is the
 * expected one (or, with none expected, is of the trust domain), an error saying why otherwise.
 */
export function checkSpiffeId(expected: ClientTls["expected"], certificate: PeerCertificate): Error | undefined {
  const actual = spiffeIdOfSubjectAltName(certificate.subjectaltname);
  if (actual === undefined) return new Error("tls: the server's certificate carries no SPIFFE ID");
  if (expected.spiffeId !== undefined ? actual !== expected.spiffeId : trustDomainOf(actual) !== expected.trustDomain) {
    return new Error(`tls: the server is ${actual}, not ${expected.spiffeId ?? `a workload of spiffe://${expected.trustDomain}`}`);
  }
  return undefined;
}

/**
 * The trust domain the SPIFFE SAN of the CA certificate in `caFile` names, undefined when it names
 * none; an unreadable or unparsable file throws.
 */
export function trustDomainOfCaFile(caFile: string): string | undefined {
  const spiffeId = spiffeIdOf(readFileSync(caFile));
  return spiffeId === undefined ? undefined : trustDomainOf(spiffeId);
}

/** The trust domain the CA certificate's SPIFFE SAN names; refused when it names none. */
function trustDomainOfCa(caFile: string): string {
  const trustDomain = trustDomainOfCaFile(caFile);
  if (trustDomain === undefined) {
    throw new TypeError(`tls: trustDomain must be given, the CA certificate in caFile (${caFile}) names no spiffe:// trust domain`);
  }
  return trustDomain;
}
