import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { CertificateServiceClient } from "../generated/ts/protomesh/certificate/v1/certificate";
import { Backoff } from "./backoff";
import { systemClock } from "./clock";
import type { Cancel, Clock } from "./clock";
import { createCertificateRequest, spiffeIdOf, writeKeyAndCertificate } from "./identity";
import type { Logger } from "./logger";
import { CONTROL_PLANE_SERVICE } from "./names";
import { clientTls } from "./tls";
import type { MeshTlsOptions } from "./tls";

/** The fraction of a certificate's validity after which it is renewed (SPIRE's agent: one half). */
export const RENEW_AT_FRACTION = 1 / 2;
/** The shortest wait between two renewals (ms), as the Go kit's. */
export const MIN_RENEWAL_INTERVAL_MS = 500;
/** Deadline of one SignCertificate call: the control plane signs with openssl, in milliseconds. */
export const SIGN_DEADLINE_MS = 10_000;

/** Has a CSR (PEM) signed for the certificate's own identity, for `lifetimeMs`; resolves to the certificate (PEM). */
export interface CertificateSigner {
  (csrPem: string, lifetimeMs: number): Promise<string>;
  /** Releases what the signer holds (a channel); none unless given. */
  close?(): void;
}

/** Options of a {@link CertificateRenewer}. */
export interface RenewalOptions {
  clock?: Clock;
  random?: () => number;
  /** Called after each renewal has been written, with the new certificate (tests, logs). */
  onRenewed?: (certificate: X509Certificate) => void;
}

/**
 * Keeps a workload's certificate files fresh: once `RENEW_AT_FRACTION` of the certificate's
 * validity has passed, it makes a new key and CSR (openssl), has it signed (a workload asks the
 * control plane's protomesh.certificate.v1.CertificateService over mTLS with its current
 * certificate, `throughControlPlane`; the control plane, which holds the CA, signs its own), and
 * writes the key and the certificate over the files by rename. Every server and client of the
 * process watches those files (tls-certificate-files.ts), so new handshakes use the new
 * certificate and open connections keep theirs: no restart, no broken stream. A failure is logged
 * and retried with backoff while the current certificate serves; a control plane that issues no
 * certificates (UNIMPLEMENTED: it holds no CA key) ends the renewals with one warning.
 */
export class CertificateRenewer {
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private cancelTimer: Cancel | undefined;
  private isStopped = false;

  /** `sign` has a CSR signed, asking for `lifetimeMs` (the control plane's CertificateService, or the CA itself). */
  constructor(
    private readonly files: MeshTlsOptions,
    logger: Logger,
    private readonly sign: CertificateSigner,
    private readonly options: RenewalOptions = {},
  ) {
    this.logger = logger.child({ component: "certificate-renewal", certFile: files.certFile });
    this.clock = options.clock ?? systemClock;
    this.backoff = new Backoff({ initialMs: 500, maxMs: 30_000 }, options.random);
  }

  /** A renewer that has the control plane at `controlPlane` sign, over mTLS with the current certificate. */
  static throughControlPlane(controlPlane: string, files: MeshTlsOptions, logger: Logger, options: RenewalOptions = {}): CertificateRenewer {
    const tls = clientTls(files, CONTROL_PLANE_SERVICE, logger);
    const client = new CertificateServiceClient(controlPlane, tls.credentials, tls.channelOptions);
    const sign: CertificateSigner = (csrPem, lifetimeMs) =>
      new Promise((resolve, reject) => {
        const ttl = { seconds: Math.floor(lifetimeMs / 1000), nanos: 0 };
        client.signCertificate({ csrPem, ttl }, new Metadata(), { deadline: Date.now() + SIGN_DEADLINE_MS }, (error, response) =>
          error ? reject(error) : resolve(response.certificatePem),
        );
      });
    sign.close = () => client.close();
    return new CertificateRenewer(files, logger, sign, options);
  }

  /** Schedules the first renewal from the certificate on disk. */
  async start(): Promise<void> {
    this.schedule(this.renewalDelayMs(await this.current()));
  }

  /** Stops renewing (and closes the signer's channel). */
  stop(): void {
    this.isStopped = true;
    this.cancelTimer?.();
    this.sign.close?.();
  }

  /** Renews now: a new key and certificate written over the files. Resolves to the new certificate. */
  async renew(): Promise<X509Certificate> {
    const before = await this.current();
    const { keyPem, csrPem } = await createCertificateRequest();
    const lifetimeMs = Date.parse(before.validTo) - Date.parse(before.validFrom);
    const certificatePem = await this.sign(csrPem, lifetimeMs);
    const renewed = new X509Certificate(certificatePem);
    const spiffeId = spiffeIdOf(certificatePem);
    const expected = spiffeIdOf(before.raw);
    if (spiffeId !== expected) throw new Error(`certificate renewal: the signer signed ${spiffeId}, not ${expected}`);
    await writeKeyAndCertificate(this.files, keyPem, certificatePem);
    this.logger.info({ serialNumber: renewed.serialNumber, notAfter: renewed.validTo, spiffeId }, "certificate renewed");
    this.options.onRenewed?.(renewed);
    return renewed;
  }

  private schedule(delayMs: number): void {
    if (this.isStopped) return;
    this.cancelTimer?.();
    this.cancelTimer = this.clock.schedule(() => void this.attempt(), Math.max(0, delayMs), { unref: true });
  }

  private async attempt(): Promise<void> {
    if (this.isStopped) return;
    try {
      const renewed = await this.renew();
      this.backoff.reset();
      // At least a moment: a certificate already past its half (a clock ahead of the signer's) must
      // not make renewals spin.
      this.schedule(Math.max(MIN_RENEWAL_INTERVAL_MS, this.renewalDelayMs(renewed)));
    } catch (error) {
      if (this.isStopped) return;
      if ((error as Partial<ServiceError>).code === status.UNIMPLEMENTED) {
        this.logger.warn("the control plane issues no certificates (it holds no CA key): this certificate will not be renewed");
        return;
      }
      const retryMs = this.backoff.next();
      this.logger.error({ err: error, retryMs }, "certificate renewal failed; the current certificate serves until it expires");
      this.schedule(retryMs);
    }
  }

  /** How long until `certificate` is due: RENEW_AT_FRACTION of its validity after its start. */
  private renewalDelayMs(certificate: X509Certificate): number {
    const from = Date.parse(certificate.validFrom);
    const to = Date.parse(certificate.validTo);
    return from + (to - from) * RENEW_AT_FRACTION - this.clock.now();
  }

  private async current(): Promise<X509Certificate> {
    return new X509Certificate(await readFile(this.files.certFile));
  }
}
