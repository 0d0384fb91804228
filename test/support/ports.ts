import * as net from "node:net";

/** Ports that were free a moment ago, found by binding 127.0.0.1:0 and closing. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => listenOn(0)));
  const ports = servers.map((server) => (server.address() as net.AddressInfo).port);
  await Promise.all(servers.map(closeServer));
  return ports;
}

/** A TCP server on 127.0.0.1:`port` (0: any free port), bound exclusively. */
export function listenOn(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => resolve(server));
  });
}

/** Closes `server`. */
export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * A port `base` such that base, base + stride, ... (`count` ports) were all free a moment ago and
 * none is in `taken`; adds them to `taken`. For processes that listen on ports a stride apart.
 */
export async function freePortRun(count: number, stride: number, taken: Set<number>, offsets: readonly number[] = [0]): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const [base] = await freePorts(1);
    const ports = offsets.flatMap((offset) => Array.from({ length: count }, (_, index) => base + offset + stride * index));
    if (ports.some((port) => port > 65535 || taken.has(port))) continue;
    const bound = await Promise.allSettled(ports.map(listenOn));
    await Promise.all(bound.map((result) => (result.status === "fulfilled" ? closeServer(result.value) : undefined)));
    if (bound.every((result) => result.status === "fulfilled")) {
      ports.forEach((port) => taken.add(port));
      return base;
    }
  }
  throw new Error(`found no ${count} free ports ${stride} apart`);
}
