import pino from "pino";
import type { Logger, LoggerOptions, DestinationStream } from "pino";

export type { Logger } from "pino";

/** Log level of a logger created without one (a program passes its settings' level). */
export const DEFAULT_LOG_LEVEL = "info";

/** Characters of waiting lines at which {@link BatchedLines} writes at once rather than at the end of the turn. */
export const MAX_BATCHED_CHARS = 64 * 1024;

/**
 * A log destination that writes the lines logged during one turn of the event loop together, at
 * the end of the turn (setImmediate), or at once when MAX_BATCHED_CHARS are waiting: one write per
 * turn instead of one per line, which is most of what a line costs at a few thousand calls a second.
 * Every write is synchronous (sonic-boom in sync mode, which retries a full pipe), so lines keep
 * their order, there is never a write in flight, and the process's `exit` writes whatever is still
 * waiting: a line is lost only when the process is killed by a signal it does not handle within the
 * turn that logged it. (pino's asynchronous destination costs the same but can leave a write in
 * flight at exit, behind the lines flushed then, and was seen to reorder a process's last lines.)
 */
export class BatchedLines implements DestinationStream {
  private waiting = "";
  private isScheduled = false;
  private readonly writeWaiting = () => {
    this.isScheduled = false;
    this.flushSync();
  };

  constructor(private readonly target: { write(text: string): unknown }) {}

  write(line: string): void {
    this.waiting += line;
    if (this.waiting.length >= MAX_BATCHED_CHARS) {
      this.flushSync();
    } else if (!this.isScheduled) {
      this.isScheduled = true;
      setImmediate(this.writeWaiting);
    }
  }

  /** Writes what is waiting, now. */
  flushSync(): void {
    if (this.waiting === "") return;
    const text = this.waiting;
    this.waiting = "";
    this.target.write(text);
  }

  /** pino's `logger.flush(callback)`: writes what is waiting, then calls back. */
  flush(callback?: (error?: Error) => void): void {
    this.flushSync();
    callback?.();
  }
}

let stdoutLines: BatchedLines | undefined;

/** The process's one stdout destination, shared by every logger made without one so that their lines keep one order. */
export function stdoutDestination(): BatchedLines {
  if (stdoutLines === undefined) {
    const lines = new BatchedLines(pino.destination({ dest: 1, sync: true }));
    process.on("exit", () => lines.flushSync());
    stdoutLines = lines;
  }
  return stdoutLines;
}

/**
 * Creates the root pino logger of a process at `options.level` (default `info`; a program passes the
 * level of its settings, PROTOMESH_LOG_LEVEL). Pass `destination` to capture lines (tests).
 *
 * By default lines go to stdout through the process's one {@link BatchedLines}: written in order,
 * synchronously, at the end of the event-loop turn that logged them, and at exit.
 */
export function createLogger(
  options: { name?: string; level?: string; destination?: DestinationStream } = {},
): Logger {
  const pinoOptions: LoggerOptions = {
    name: options.name,
    level: options.level ?? DEFAULT_LOG_LEVEL,
    base: { pid: process.pid },
  };
  return pino(pinoOptions, options.destination ?? stdoutDestination());
}

let sharedLogger: Logger | undefined;

/**
 * The process's default logger, made on first use, for servers and clients created without one:
 * one stdout destination per process rather than one per server or client.
 */
export function defaultLogger(): Logger {
  sharedLogger ??= createLogger();
  return sharedLogger;
}

/** Longest wait for buffered log lines before an exit goes ahead without them. */
export const EXIT_FLUSH_TIMEOUT_MS = 2_000;

/**
 * Exits the process with `code` once every buffered line of `logger` has been written (bounded by
 * EXIT_FLUSH_TIMEOUT_MS), for a destination that writes asynchronously (a file or transport a
 * program chose): exiting at once could leave a write in flight behind lines flushed at exit.
 */
export function exitAfterFlush(logger: Logger, code: number): void {
  const timer = setTimeout(() => process.exit(code), EXIT_FLUSH_TIMEOUT_MS);
  logger.flush(() => {
    clearTimeout(timer);
    process.exit(code);
  });
}
