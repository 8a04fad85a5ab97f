/**
 * Keeps back-to-back synchronous kernel work from starving the event loop. With its element changes
 * on our own netlink socket, an attach completes without a single loop turn (every exchange is
 * answered inside its `send`), so a caller attaching VMs in a loop would hold the loop for the whole
 * loop. After {@link LOOP_BUDGET_MS} of such work without a turn, the next caller waits for one; a
 * marker in the check phase notes that the loop turned, so callers spread out in time never pay
 * for the hop. (firewall/portmap.ts does the same for single mapping changes.)
 */

/** Time of synchronous work allowed between two loop turns, in ms. */
export const LOOP_BUDGET_MS = 4;

/** When the current run of work without a loop turn began; undefined once the loop turned. */
let heldSince: number | undefined;

function startHold(now: number): void {
  heldSince = now;
  setImmediate(() => {
    heldSince = undefined;
  });
}

/**
 * Resolves at once while the budget lasts; past it, after one loop turn (timers and I/O first).
 * Call before each piece of synchronous kernel work.
 */
export async function yieldIfHeld(): Promise<void> {
  const now = performance.now();
  if (heldSince === undefined) {
    startHold(now);
    return;
  }
  if (now - heldSince <= LOOP_BUDGET_MS) return;
  await new Promise<void>((r) => setImmediate(r));
  startHold(performance.now());
}
