/**
 * gRPC's length-prefixed message framing (PROTOCOL-HTTP2.md in grpc/grpc): one byte compressed
 * flag, four bytes big-endian length, then the serialized message. The benchmarks need it twice:
 * to pre-encode the body h2load sends, and to answer gRPC by hand in the raw node:http2 server (B0).
 */

/** Size of the prefix in front of every gRPC message: 1 flag byte + 4 length bytes. */
export const GRPC_FRAME_PREFIX_BYTES = 5;

/** Wraps one serialized, uncompressed message in a gRPC frame. */
export function encodeGrpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(GRPC_FRAME_PREFIX_BYTES + message.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, GRPC_FRAME_PREFIX_BYTES);
  return frame;
}

/**
 * Returns the message of the first complete frame in `body`, or undefined when `body` holds no
 * complete uncompressed frame (a short read or a compressed message, which the raw server refuses).
 */
export function decodeGrpcFrame(body: Buffer): Buffer | undefined {
  if (body.length < GRPC_FRAME_PREFIX_BYTES || body.readUInt8(0) !== 0) return undefined;
  const length = body.readUInt32BE(1);
  if (body.length < GRPC_FRAME_PREFIX_BYTES + length) return undefined;
  return body.subarray(GRPC_FRAME_PREFIX_BYTES, GRPC_FRAME_PREFIX_BYTES + length);
}
