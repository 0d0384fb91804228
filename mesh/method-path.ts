/** A gRPC method path split into its fully-qualified service name and method name. */
export interface MethodPath {
  service: string;
  method: string;
}

/** Splits "/package.Service/Method" into its parts; an unexpected shape keeps the whole path. */
export function splitPath(path: string): MethodPath {
  const match = /^\/([^/]+)\/([^/]+)$/.exec(path);
  return match ? { service: match[1], method: match[2] } : { service: path, method: "" };
}
