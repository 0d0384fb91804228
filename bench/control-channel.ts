/**
 * The request/response protocol between the harness and the processes it starts (servers, Node load
 * clients), over Node's IPC channel. stdout stays the process's log, as in production; figures
 * travel here instead.
 */

/** A request from the harness: `op` names a handler of the child. */
export interface ControlRequest {
  id: number;
  op: string;
  args?: unknown;
}

/** The child's answer to one request. */
export interface ControlResponse {
  id: number;
  result?: unknown;
  error?: string;
}

/** Sent once by a child when it is ready; `port` for servers. */
export interface ReadyMessage {
  ready: true;
  port?: number;
}

/** Handlers of a child, by op name; the returned value goes back to the harness. */
export type ControlHandlers = Record<string, (args: unknown) => unknown>;

/**
 * Child side: answers the harness's requests with `handlers` and reports ready. The child exits when
 * the harness disconnects, so a harness that dies leaves no process behind.
 */
export function serveControl(handlers: ControlHandlers, ready: Omit<ReadyMessage, "ready">): void {
  const send = process.send?.bind(process);
  if (!send) throw new Error("bench: this process must be started by the harness (no IPC channel)");
  process.on("message", (message: ControlRequest) => {
    const handler = handlers[message.op];
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`unknown op ${message.op}`);
        return handler(message.args);
      })
      .then(
        (result) => send({ id: message.id, result } satisfies ControlResponse),
        (error: unknown) => send({ id: message.id, error: String(error) } satisfies ControlResponse),
      );
  });
  process.once("disconnect", () => process.exit(0));
  send({ ready: true, ...ready } satisfies ReadyMessage);
}

/** Reads `--name value` from argv; throws naming the flag when it is missing and has no default. */
export function flag(name: string, fallback?: string, argv: readonly string[] = process.argv): string {
  const index = argv.indexOf(`--${name}`);
  const value = index >= 0 ? argv[index + 1] : fallback;
  if (value === undefined) throw new Error(`bench: --${name} is required`);
  return value;
}
