import assert from "node:assert/strict";
import { DEFAULT_SERVER_LIMITS, limitsToChannelOptions } from "../../mesh/server-limits";
import { createServer } from "../../mesh/server";
import { captureLog } from "../support/log-capture";

describe("server limits", () => {
  it("sets every limit explicitly, HTTP/2 session memory included", () => {
    assert.deepEqual(limitsToChannelOptions(), {
      "grpc.max_receive_message_length": DEFAULT_SERVER_LIMITS.maxReceiveMessageBytes,
      "grpc.max_send_message_length": DEFAULT_SERVER_LIMITS.maxSendMessageBytes,
      "grpc.max_concurrent_streams": DEFAULT_SERVER_LIMITS.maxConcurrentStreams,
      "grpc-node.max_session_memory": DEFAULT_SERVER_LIMITS.maxSessionMemoryMb,
    });
    assert.equal(limitsToChannelOptions({ maxConcurrentStreams: 7 })["grpc.max_concurrent_streams"], 7);
  });

  it("refuses a limit that is not a positive integer, naming the field", () => {
    assert.throws(() => limitsToChannelOptions({ maxConcurrentStreams: 0 }), /server limits: maxConcurrentStreams must be a positive integer/);
    assert.throws(() => limitsToChannelOptions({ maxSessionMemoryMb: 1.5 }), /maxSessionMemoryMb/);
    assert.throws(() => createServer({ name: "x", logger: captureLog().logger, limits: { maxReceiveMessageBytes: -1 } }), /maxReceiveMessageBytes/);
  });
});
