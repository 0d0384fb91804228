import type {
  CertificateServiceServer,
  SignCertificateRequest,
  SignCertificateResponse,
} from "../../generated/ts/protomesh/certificate/v1/certificate";
import type { Duration } from "../../generated/ts/google/protobuf/duration";
import { status } from "@grpc/grpc-js";
import { MeshError, invalidArgument } from "../errors";
import { unary } from "../handler";
import { DEFAULT_WORKLOAD_TTL_MS, otherNamesOf, signCertificateRequest } from "../identity";
import type { MeshCa } from "../identity";
import type { CallWithAuthContext } from "../tls";
import type { ControlPlaneAccess } from "./access";

/** Full name of the certificate service, for health and reflection. */
export const CERTIFICATE_SERVICE_NAME = "protomesh.certificate.v1.CertificateService";
/**
 * Signings in flight at most (each runs openssl): beyond them a request is refused
 * RESOURCE_EXHAUSTED, which renewals retry with backoff, so that no caller can load the control
 * plane's CPU with requests.
 */
export const MAX_SIGNINGS_IN_FLIGHT = 4;
/** The largest CSR accepted (bytes): a P-256 or RSA 4096 request is well under it. */
export const MAX_CSR_BYTES = 16 * 1024;

/** Options of {@link certificateService}. */
export interface CertificateServiceOptions {
  ca: MeshCa;
  access: ControlPlaneAccess;
  /** Signings in flight at most; MAX_SIGNINGS_IN_FLIGHT unless given. */
  maxSigningsInFlight?: number;
  /** The longest (and the default) lifetime of a certificate it signs (ms); DEFAULT_WORKLOAD_TTL_MS unless given. */
  workloadTtlMs?: number;
}

/**
 * protomesh.certificate.v1.CertificateService: signs a workload's CSR for the caller's own SPIFFE
 * ID (the one its client certificate proves), never for a name the request asks for, so that a
 * workload renews its identity and gains no other. Beside the SPIFFE ID the certificate names what
 * the caller's current certificate (signed by the same CA) names, its DNS names and IP addresses,
 * so that a renewal keeps what peers verify it by; a caller whose certificate names no DNS name gets
 * its service's.
 */
export function certificateService(options: CertificateServiceOptions): CertificateServiceServer {
  const maxTtlMs = options.workloadTtlMs ?? DEFAULT_WORKLOAD_TTL_MS;
  const maxInFlight = options.maxSigningsInFlight ?? MAX_SIGNINGS_IN_FLIGHT;
  let inFlight = 0;
  return {
    signCertificate: unary(async (request, call) => {
      const spiffeId = options.access.identity(call);
      if (inFlight >= maxInFlight) {
        throw new MeshError(status.RESOURCE_EXHAUSTED, `${inFlight} certificates are being signed; retry with backoff`);
      }
      inFlight += 1;
      try {
        return await sign(request, call, spiffeId);
      } finally {
        inFlight -= 1;
      }
    }),
  };

  async function sign(request: SignCertificateRequest, call: CallWithAuthContext, spiffeId: string): Promise<SignCertificateResponse> {
    if (request.csrPem === "") throw invalidArgument("csr_pem", "required");
    if (Buffer.byteLength(request.csrPem) > MAX_CSR_BYTES) throw invalidArgument("csr_pem", `must be at most ${MAX_CSR_BYTES} bytes`);
    const ttlMs = ttlOf(request.ttl, maxTtlMs);
    const presented = otherNamesOf(call.getAuthContext().sslPeerCertificate?.subjectaltname);
    const service = /\/service\/([^/]+)$/.exec(spiffeId)?.[1];
    const dnsNames = presented.dnsNames.length > 0 || service === undefined ? presented.dnsNames : [service];
    let signed;
    try {
      signed = await signCertificateRequest(options.ca, { csrPem: request.csrPem, spiffeId, ttlMs, dnsNames, ipAddresses: presented.ipAddresses });
    } catch (error) {
      // signCertificateRequest refuses a bad CSR with a TypeError saying why ("identity: csr..."); a
      // name it cannot put in a certificate is the caller's identity's, not the request's.
      if (error instanceof TypeError && /^identity: csr/.test(error.message)) {
        throw invalidArgument("csr_pem", error.message.replace(/^identity: (csr: |csr )?/, ""));
      }
      if (error instanceof TypeError) throw new MeshError(status.PERMISSION_DENIED, `${spiffeId}: no certificate can be issued for it (${error.message})`);
      throw error;
    }
    return { certificatePem: signed.certPem, caCertificatePem: options.ca.certPem, spiffeId, notAfter: signed.notAfter };
  }
}

/** The lifetime asked for, capped at `maxTtlMs`; unset or 0 means `maxTtlMs`. */
function ttlOf(ttl: Duration | undefined, maxTtlMs: number): number {
  if (ttl === undefined) return maxTtlMs;
  if (ttl.seconds < 0 || ttl.nanos < 0) throw invalidArgument("ttl", "must not be negative");
  const ms = ttl.seconds * 1000 + Math.floor(ttl.nanos / 1e6);
  return ms === 0 ? maxTtlMs : Math.min(ms, maxTtlMs);
}
