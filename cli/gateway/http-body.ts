import type { IncomingMessage } from "node:http";
import { status } from "@grpc/grpc-js";
import { GatewayError } from "./errors";

/** Largest HTTP request body the gateway reads: 4 MiB, grpc-js's default receive limit, so any body read fits one gRPC message. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** The 413 of a body over `limit` bytes; the connection closes after it, so the rest is not read. */
export function bodyTooLarge(limit: number): GatewayError {
  return new GatewayError(413, status.RESOURCE_EXHAUSTED, `request body is larger than ${limit} bytes`, { connection: "close" });
}

/** Reads a request body as UTF-8 text, at most `limit` bytes (see readBody). */
export async function readBodyText(req: IncomingMessage, limit: number = MAX_BODY_BYTES): Promise<string> {
  return (await readBody(req, limit)).toString("utf8");
}

/**
 * Reads a request body, at most `limit` bytes: a declared Content-Length over it is refused before
 * reading, a body that grows past it is refused as soon as it does (bodyTooLarge).
 */
export function readBody(req: IncomingMessage, limit: number = MAX_BODY_BYTES): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limit) return Promise.reject(bodyTooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      req.off("data", onData);
      reject(bodyTooLarge(limit));
    };
    req.on("data", onData);
    req.once("error", () => reject(new GatewayError(400, status.CANCELLED, "the request body could not be read")));
    req.once("end", () => resolve(Buffer.concat(chunks)));
  });
}
