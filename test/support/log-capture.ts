import { Writable } from "node:stream";
import { createLogger } from "../../mesh/logger";
import type { Logger } from "../../mesh/logger";

/** A pino logger whose JSON lines are kept in memory, parsed, for assertions. */
export interface CapturedLog {
  logger: Logger;
  lines: Record<string, unknown>[];
}

/** Creates a logger at `level` (default info) that records every line instead of printing it. */
export function captureLog(level = "info"): CapturedLog {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString("utf8").split("\n")) {
        if (text.trim() !== "") lines.push(JSON.parse(text) as Record<string, unknown>);
      }
      callback();
    },
  });
  return { logger: createLogger({ level, destination }), lines };
}
