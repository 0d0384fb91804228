/**
 * Waiting on a state of another process (a replica healthy, a call served) by asking it again
 * every few milliseconds, bounded in time: the processes of a scenario share no event to await.
 */

/** How often {@link pollUntil} asks again. */
export const POLL_INTERVAL_MS = 25;

/**
 * Resolves with the time (epoch ms) `isDone` first held, or rejects naming `what` after `timeoutMs`.
 */
export async function pollUntil(what: string, isDone: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await isDone()) return Date.now();
    if (Date.now() >= deadline) throw new Error(`bench: ${what} not within ${timeoutMs} ms`);
    await sleep(POLL_INTERVAL_MS);
  }
}

/** Waits `ms`: the fixed phases of a scenario (steady traffic, a frozen replica), not state. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
