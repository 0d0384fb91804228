/**
 * The address a service binds: HOST (default 127.0.0.1, loopback only) and PORT (default
 * `defaultPort`) from the environment. A PORT that is not a port number is refused, naming it.
 */
export function listenAddress(defaultPort: number, env: NodeJS.ProcessEnv = process.env): string {
  const host = env.HOST ?? "127.0.0.1";
  const port = env.PORT === undefined || env.PORT === "" ? defaultPort : Number(env.PORT);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new TypeError(`PORT must be an integer from 0 to 65535, got ${JSON.stringify(env.PORT)}`);
  }
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
