/**
 * A port from the environment: `defaultPort` when `variable` is unset or empty, else its value,
 * refused naming the variable when it is not a port from `min` to 65535. Programs read their ports
 * with it (the launcher's need to know the address, so 1 and up; the gateway may take 0, any free one).
 */
export function portFromEnv(env: NodeJS.ProcessEnv, variable: string, defaultPort: number, min = 1): number {
  const text = env[variable];
  if (text === undefined || text.trim() === "") return defaultPort;
  const port = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isInteger(port) || port < min || port > 65535) {
    throw new TypeError(`${variable} must be a port number from ${min} to 65535, got ${JSON.stringify(text)}`);
  }
  return port;
}
