import { status } from "@grpc/grpc-js";
import { MeshError } from "../errors";
import { peerIdentity } from "../tls";
import type { CallWithAuthContext } from "../tls";

/**
 * Who may do what at a control plane on mTLS (issue 13): any workload of the mesh may read (xDS,
 * ListServices, WatchServices, ListFaults); a workload may register, renew and remove endpoints
 * only under its own service name; only an admin identity, `spiffe://<trust domain>/admin/<name>`,
 * may inject or clear faults. Every caller has passed the mesh CA's handshake (STRICT); these are
 * the checks on what its SPIFFE ID may do. A control plane without TLS checks nothing (the
 * plaintext mesh of local debugging), as it always has.
 */
export interface ControlPlaneAccess {
  /** Throws PERMISSION_DENIED unless the caller is the workload of `service` (or the control plane is plaintext). */
  checkWorkload(call: CallWithAuthContext, service: string, what: string): void;
  /** Throws PERMISSION_DENIED unless the caller is an admin identity (or the control plane is plaintext). */
  checkAdmin(call: CallWithAuthContext, what: string): void;
  /** The caller's SPIFFE ID, of the trust domain; throws UNAUTHENTICATED / PERMISSION_DENIED otherwise. */
  identity(call: CallWithAuthContext): string;
}

/** A plaintext control plane: everyone may do everything (issue 13's loud debugging switch). */
export const OPEN_ACCESS: ControlPlaneAccess = Object.freeze({
  checkWorkload: () => undefined,
  checkAdmin: () => undefined,
  identity: (): never => {
    throw new MeshError(status.UNAUTHENTICATED, "a control plane without mTLS knows no caller identity");
  },
});

/** The checks of a control plane on mTLS in `trustDomain`. */
export function meshAccess(trustDomain: string): ControlPlaneAccess {
  const prefix = `spiffe://${trustDomain}/`;
  const identity = (call: CallWithAuthContext): string => {
    const spiffeId = peerIdentity(call);
    if (spiffeId === undefined) {
      throw new MeshError(status.UNAUTHENTICATED, "needs a caller identity: a client certificate from the mesh CA with a SPIFFE ID");
    }
    if (!spiffeId.startsWith(prefix)) throw new MeshError(status.PERMISSION_DENIED, `${spiffeId} is not of the trust domain ${trustDomain}`);
    return spiffeId;
  };
  return Object.freeze({
    identity,
    checkWorkload(call: CallWithAuthContext, service: string, what: string): void {
      const spiffeId = identity(call);
      if (spiffeId !== `${prefix}service/${service}`) {
        throw new MeshError(status.PERMISSION_DENIED, `${spiffeId} may not ${what} of ${service}: a workload registers only itself`);
      }
    },
    checkAdmin(call: CallWithAuthContext, what: string): void {
      const spiffeId = identity(call);
      if (!/^admin\/[A-Za-z0-9._-]+$/.test(spiffeId.slice(prefix.length))) {
        throw new MeshError(status.PERMISSION_DENIED, `${spiffeId} may not ${what}: only an admin identity (${prefix}admin/<name>) may`);
      }
    },
  });
}
