/**
 * Root hooks: after the whole run no socket, server or child process may be left open. A leaked
 * handle is a failing test (STYLE.md), not something mocha's `exit` option may hide.
 */
const NETWORK_RESOURCES = new Set(["TCPWrap", "TCPSocketWrap", "TCPServerWrap", "ProcessWrap", "PipeServerWrap"]);

function openNetworkResources(): string[] {
  return process.getActiveResourcesInfo().filter((name) => NETWORK_RESOURCES.has(name));
}

export const mochaHooks = {
  async afterAll(): Promise<void> {
    // grpc-js closes sockets asynchronously after close() / forceShutdown(): allow a moment.
    const deadline = Date.now() + 3_000;
    while (openNetworkResources().length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const leaked = openNetworkResources();
    if (leaked.length > 0) throw new Error(`handles left open after the suite: ${leaked.join(", ")}`);
  },
};
