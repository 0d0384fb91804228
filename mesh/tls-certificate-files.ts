import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { experimental } from "@grpc/grpc-js";
import type {
  experimental as grpcExperimental,
} from "@grpc/grpc-js";
import type { Logger } from "./logger";

type CertificateProvider = grpcExperimental.CertificateProvider;
type CaCertificateUpdate = grpcExperimental.CaCertificateUpdate;
type CaCertificateUpdateListener = grpcExperimental.CaCertificateUpdateListener;
type IdentityCertificateUpdate = grpcExperimental.IdentityCertificateUpdate;
type IdentityCertificateUpdateListener = grpcExperimental.IdentityCertificateUpdateListener;

/** How often certificate files are re-read unless given (ms); grpc-go's pemfile provider defaults to 1 h, a mesh rotates sooner. */
export const DEFAULT_CERTIFICATE_REFRESH_MS = 60_000;

/** The files of one workload's TLS: the mesh CA bundle, its certificate and its key (PEM). */
export interface CertificateFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** How often the files are re-read (ms); DEFAULT_CERTIFICATE_REFRESH_MS unless given. */
  refreshIntervalMs?: number;
}

/**
 * grpc-js' FileWatcherCertificateProvider, re-reading `caFile`, `certFile` and `keyFile` every
 * `refreshIntervalMs` so that new handshakes use replaced files without a restart, with one
 * guard: a read that fails, or that finds a key that does not match its certificate (files caught
 * between two renames), is not passed on. grpc-js would otherwise refuse every new connection until
 * the next read; the last good files stay in use instead, as grpc-go's pemfile provider does.
 */
export class CertificateFileWatcher implements CertificateProvider {
  private readonly files: experimental.FileWatcherCertificateProvider;
  private readonly caListeners = new Map<CaCertificateUpdateListener, CaCertificateUpdateListener>();
  private readonly identityListeners = new Map<IdentityCertificateUpdateListener, IdentityCertificateUpdateListener>();
  private lastIdentity: IdentityCertificateUpdate | undefined;
  private lastCa: CaCertificateUpdate | undefined;

  constructor(
    private readonly config: CertificateFiles,
    private readonly logger: Logger,
  ) {
    this.files = new experimental.FileWatcherCertificateProvider({
      caCertificateFile: config.caFile,
      certificateFile: config.certFile,
      privateKeyFile: config.keyFile,
      refreshIntervalMs: config.refreshIntervalMs ?? DEFAULT_CERTIFICATE_REFRESH_MS,
    });
  }

  addCaCertificateListener(listener: CaCertificateUpdateListener): void {
    const guarded: CaCertificateUpdateListener = (update) => {
      if (update === null) {
        if (this.lastCa === undefined) listener(null);
        else this.logger.warn({ caFile: this.config.caFile }, "CA file unreadable; keeping the last one read");
        return;
      }
      this.lastCa = update;
      listener(update);
    };
    this.caListeners.set(listener, guarded);
    this.files.addCaCertificateListener(guarded);
  }

  removeCaCertificateListener(listener: CaCertificateUpdateListener): void {
    unguard(this.caListeners, listener, (guarded) => this.files.removeCaCertificateListener(guarded));
  }

  addIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    const guarded: IdentityCertificateUpdateListener = (update) => {
      if (update !== null && isMatchingPair(update)) {
        this.lastIdentity = update;
        listener(update);
      } else if (this.lastIdentity === undefined) {
        listener(null);
      } else {
        this.logger.warn({ certFile: this.config.certFile, keyFile: this.config.keyFile }, "certificate and key unreadable or not a pair; keeping the last pair read");
      }
    };
    this.identityListeners.set(listener, guarded);
    this.files.addIdentityCertificateListener(guarded);
  }

  removeIdentityCertificateListener(listener: IdentityCertificateUpdateListener): void {
    unguard(this.identityListeners, listener, (guarded) => this.files.removeIdentityCertificateListener(guarded));
  }

  /**
   * Resolves once the files have been read, with an error naming them when the first read found
   * no usable CA, certificate or key. Listens for one read and stops, so it keeps nothing running.
   */
  firstRead(): Promise<void> {
    return new Promise((resolve, reject) => {
      let ca: boolean | undefined;
      let identity: boolean | undefined;
      const settle = () => {
        if (ca === undefined || identity === undefined) return;
        this.removeCaCertificateListener(onCa);
        this.removeIdentityCertificateListener(onIdentity);
        if (ca && identity) resolve();
        else {
          const missing = ca ? `certFile ${this.config.certFile} and keyFile ${this.config.keyFile} (unreadable or not a pair)` : `caFile ${this.config.caFile}`;
          reject(new TypeError(`tls: cannot use ${missing}`));
        }
      };
      const onIdentity: IdentityCertificateUpdateListener = (update) => {
        identity = update !== null;
        settle();
      };
      const onCa: CaCertificateUpdateListener = (update) => {
        ca = update !== null;
        settle();
      };
      // Identity first: grpc-js calls identity listeners before CA listeners, so this one's CA
      // listener runs after a server's credentials have taken the same read.
      this.addIdentityCertificateListener(onIdentity);
      this.addCaCertificateListener(onCa);
    });
  }
}

/** Forgets the guard made for `listener` and hands it to `remove`; nothing when there is none. */
function unguard<Listener>(guards: Map<Listener, Listener>, listener: Listener, remove: (guarded: Listener) => void): void {
  const guarded = guards.get(listener);
  if (!guarded) return;
  guards.delete(listener);
  remove(guarded);
}

/** True when the private key is the one the certificate's public key belongs to. */
function isMatchingPair(update: IdentityCertificateUpdate): boolean {
  try {
    const certificateKey = new X509Certificate(update.certificate).publicKey.export({ format: "der", type: "spki" });
    const privateKey = createPublicKey(createPrivateKey(update.privateKey)).export({ format: "der", type: "spki" });
    return certificateKey.equals(privateKey);
  } catch {
    return false;
  }
}
