/**
 * The names the mesh gives things. A mesh service name is a DNS label (RFC 1123), so that
 * `xds:///<name>`, the registry and Kubernetes Service names agree; a zone follows the same rule or
 * is empty (the default locality).
 */
export const SERVICE_NAME_PATTERN = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** A zone (xDS locality): empty, or a DNS label. */
export const ZONE_PATTERN = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)?$/;

/** True when `name` is a mesh service name ("catalog"), i.e. what a client dials as `xds:///<name>`. */
export function isServiceName(name: string): boolean {
  return SERVICE_NAME_PATTERN.test(name);
}

/**
 * The mesh service name of the control plane's identity: over mTLS its certificate names
 * spiffe://<trust domain>/service/control-plane, which the kits' registry and xDS clients require.
 */
export const CONTROL_PLANE_SERVICE = "control-plane";
