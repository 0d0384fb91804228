/**
 * The shape of B10's mesh, shared by its processes: endpoint g of N belongs to service g mod S
 * (so every replica process serves every service, as replicas spread over hosts do), is the
 * loopback address 127.1.x.y (distinct across the mesh, as in B9), and its lease dials the
 * control plane at 127.3.x.y (a connection of its own).
 */

/** Endpoints per /24 of loopback addresses (.1 to .250). */
const PER_OCTET = 250;

/** Name of service `index`: svc-000, svc-001, … */
export function serviceName(index: number): string {
  return `svc-${String(index).padStart(3, "0")}`;
}

/** The service of endpoint `g` in a mesh of `services` services. */
export function serviceOf(g: number, services: number): string {
  return serviceName(g % services);
}

/** The address endpoint `g` registers (127.1.x.y). */
export function endpointAddress(g: number): string {
  return `127.1.${Math.floor(g / PER_OCTET)}.${(g % PER_OCTET) + 1}`;
}

/** Where the lease of endpoint `g` dials the control plane listening on 0.0.0.0:`port`. */
export function leaseDialAddress(g: number, port: number): string {
  return `127.3.${Math.floor(g / PER_OCTET)}.${(g % PER_OCTET) + 1}:${port}`;
}

/** Endpoint id ("address:port", the registry's and EDS's key) of each endpoint of each service. */
export function expectedEndpoints(endpoints: number, services: number, portOf: (g: number) => number): Map<string, Set<string>> {
  const expected = new Map<string, Set<string>>();
  for (let s = 0; s < services; s++) expected.set(serviceName(s), new Set());
  for (let g = 0; g < endpoints; g++) expected.get(serviceOf(g, services))!.add(`${endpointAddress(g)}:${portOf(g)}`);
  return expected;
}
