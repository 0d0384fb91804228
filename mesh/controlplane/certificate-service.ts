import type { CertificateServiceServer } from "../../generated/ts/protomesh/certificate/v1/certificate";
import type { Duration } from "../../generated/ts/google/protobuf/duration";
import { invalidArgument } from "../errors";
import { unary } from "../handler";
import { DEFAULT_WORKLOAD_TTL_MS, signCertificateRequest } from "../identity";
import type { MeshCa } from "../identity";
import type { ControlPlaneAccess } from "./access";

/** Full name of the certificate service, for health and reflection. */
export const CERTIFICATE_SERVICE_NAME = "protomesh.certificate.v1.CertificateService";
/** The largest CSR accepted (bytes): a P-256 or RSA 4096 request is well under it. */
export const MAX_CSR_BYTES = 16 * 1024;

/** Options of {@link certificateService}. */
export interface CertificateServiceOptions {
  ca: MeshCa;
  access: ControlPlaneAccess;
  /** The longest (and the default) lifetime of a certificate it signs (ms); DEFAULT_WORKLOAD_TTL_MS unless given. */
  workloadTtlMs?: number;
}

/**
 * protomesh.certificate.v1.CertificateService: signs a workload's CSR for the caller's own SPIFFE
 * ID (the one its client certificate proves), never for a name the request asks for, so that a
 * workload renews its identity and gains no other. The certificate carries the service's DNS name
 * beside the SPIFFE ID, as the first one `protomesh up` issued it does.
 */
export function certificateService(options: CertificateServiceOptions): CertificateServiceServer {
  const maxTtlMs = options.workloadTtlMs ?? DEFAULT_WORKLOAD_TTL_MS;
  return {
    signCertificate: unary(async (request, call) => {
      const spiffeId = options.access.identity(call);
      if (request.csrPem === "") throw invalidArgument("csr_pem", "required");
      if (Buffer.byteLength(request.csrPem) > MAX_CSR_BYTES) throw invalidArgument("csr_pem", `must be at most ${MAX_CSR_BYTES} bytes`);
      const ttlMs = ttlOf(request.ttl, maxTtlMs);
      const service = /\/service\/([^/]+)$/.exec(spiffeId)?.[1];
      let signed;
      try {
        signed = await signCertificateRequest(options.ca, { csrPem: request.csrPem, spiffeId, ttlMs, dnsNames: service === undefined ? [] : [service] });
      } catch (error) {
        // signCertificateRequest refuses bad input with a TypeError saying why; anything else is ours.
        if (error instanceof TypeError) throw invalidArgument("csr_pem", error.message.replace(/^identity: (csr: |csr )?/, ""));
        throw error;
      }
      return { certificatePem: signed.certPem, caCertificatePem: options.ca.certPem, spiffeId, notAfter: signed.notAfter };
    }),
  };
}

/** The lifetime asked for, capped at `maxTtlMs`; unset or 0 means `maxTtlMs`. */
function ttlOf(ttl: Duration | undefined, maxTtlMs: number): number {
  if (ttl === undefined) return maxTtlMs;
  if (ttl.seconds < 0 || ttl.nanos < 0) throw invalidArgument("ttl", "must not be negative");
  const ms = ttl.seconds * 1000 + Math.floor(ttl.nanos / 1e6);
  return ms === 0 ? maxTtlMs : Math.min(ms, maxTtlMs);
}
