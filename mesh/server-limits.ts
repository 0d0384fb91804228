import type { ChannelOptions } from "@grpc/grpc-js";

/** Resource limits every protomesh server sets explicitly, so that no client can exhaust it. */
export interface ServerLimits {
  /** Largest request message accepted; larger ones end in RESOURCE_EXHAUSTED (gRPC default 4 MiB). */
  maxReceiveMessageBytes: number;
  /** Largest response message sent; larger ones end in RESOURCE_EXHAUSTED. */
  maxSendMessageBytes: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection. */
  maxConcurrentStreams: number;
  /**
   * Memory one HTTP/2 session may buffer before Node refuses new streams (ENHANCE_YOUR_CALM).
   * grpc-js sets no limit by default; Node's own default is 10 MB.
   */
  maxSessionMemoryMb: number;
}

/** The limits used when a server names none. */
export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = Object.freeze({
  maxReceiveMessageBytes: 4 * 1024 * 1024,
  maxSendMessageBytes: 4 * 1024 * 1024,
  maxConcurrentStreams: 1000,
  maxSessionMemoryMb: 64,
});

/** Validates limits and turns them into grpc-js channel options; the error names the field. */
export function limitsToChannelOptions(limits: Partial<ServerLimits> = {}): ChannelOptions {
  const merged: ServerLimits = { ...DEFAULT_SERVER_LIMITS, ...limits };
  for (const [field, value] of Object.entries(merged)) {
    if (!Number.isInteger(value) || value <= 0) {
      throw new TypeError(`server limits: ${field} must be a positive integer, got ${String(value)}`);
    }
  }
  return {
    "grpc.max_receive_message_length": merged.maxReceiveMessageBytes,
    "grpc.max_send_message_length": merged.maxSendMessageBytes,
    "grpc.max_concurrent_streams": merged.maxConcurrentStreams,
    "grpc-node.max_session_memory": merged.maxSessionMemoryMb,
  };
}
