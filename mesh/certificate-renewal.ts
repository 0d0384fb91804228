import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { CertificateServiceClient } from "../generated/ts/protomesh/certificate/v1/certificate";
import type { SignCertificateResponse } from "../generated/ts/protomesh/certificate/v1/certificate";
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
/** Deadline of one SignCertificate call: the control plane signs with openssl, in milliseconds. */
export const SIGN_DEADLINE_MS = 10_000;

/** Options of a {@link CertificateRenewer}. */
export interface RenewalOptions {
  clock?: Clock;
  random?: () => number;
  /** Called after each renewal has been written, with the new certificate's serial (tests, logs). */
  onRenewed?: (certificate: X509Certificate) => void;
}

/**
 * Keeps a workload's certificate files fresh: once `RENEW_AT_FRACTION` of the certificate's
 * validity has passed, it makes a new key and CSR (openssl), asks the control plane's
 * protomesh.certificate.v1.CertificateService to sign it over mTLS with the current certificate,
 * and writes the key and the certificate over the files by rename. Every server and client of the
 * process watches those files (tls-certificate-files.ts), so new handshakes use the new
 * certificate and open connections keep theirs: no restart, no broken stream. A failure is logged
 * and retried with backoff while the current certificate serves; a control plane that issues no
 * certificates (UNIMPLEMENTED: it holds no CA key) ends the renewals with one warning.
 */
export class CertificateRenewer {
  private readonly client: CertificateServiceClient;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private cancelTimer: Cancel | undefined;
  private isStopped = false;

  constructor(
    controlPlane: string,
    private readonly files: MeshTlsOptions,
    logger: Logger,
    private readonly options: RenewalOptions = {},
  ) {
    this.logger = logger.child({ component: "certificate-renewal", certFile: files.certFile });
    this.clock = options.clock ?? systemClock;
    this.backoff = new Backoff({ initialMs: 500, maxMs: 30_000 }, options.random);
    const tls = clientTls(files, CONTROL_PLANE_SERVICE, this.logger);
    this.client = new CertificateServiceClient(controlPlane, tls.credentials, { "grpc.ssl_target_name_override": tls.serverName });
  }

  /** Schedules the first renewal from the certificate on disk. */
  async start(): Promise<void> {
    this.schedule(this.renewalDelayMs(await this.current()));
  }

  /** Stops renewing and closes the channel. */
  stop(): void {
    this.isStopped = true;
    this.cancelTimer?.();
    this.client.close();
  }

  /** Renews now: a new key and certificate written over the files. Resolves to the new certificate. */
  async renew(): Promise<X509Certificate> {
    const before = await this.current();
    const { keyPem, csrPem } = await createCertificateRequest();
    const lifetimeMs = Date.parse(before.validTo) - Date.parse(before.validFrom);
    const response = await this.sign(csrPem, lifetimeMs);
    const renewed = new X509Certificate(response.certificatePem);
    if (spiffeIdOf(response.certificatePem) !== spiffeIdOf(before.raw)) {
      throw new Error(`certificate renewal: the control plane signed ${spiffeIdOf(response.certificatePem)}, not ${spiffeIdOf(before.raw)}`);
    }
    await writeKeyAndCertificate(this.files, keyPem, response.certificatePem);
    this.logger.info({ serialNumber: renewed.serialNumber, notAfter: renewed.validTo, spiffeId: response.spiffeId }, "certificate renewed");
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
      this.schedule(this.renewalDelayMs(renewed));
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

  private sign(csrPem: string, lifetimeMs: number): Promise<SignCertificateResponse> {
    const ttl = { seconds: Math.floor(lifetimeMs / 1000), nanos: 0 };
    return new Promise((resolve, reject) => {
      this.client.signCertificate({ csrPem, ttl }, new Metadata(), { deadline: Date.now() + SIGN_DEADLINE_MS }, (error, response) =>
        error ? reject(error) : resolve(response),
      );
    });
  }
}
