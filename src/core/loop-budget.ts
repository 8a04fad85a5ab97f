/**
 * Keeps back-to-back synchronous kernel work from starving the event loop. Our netlink and nf_tables
 * exchanges are answered inside their `send` (no loop turn), so a caller attaching VMs or changing
 * mappings in a loop would hold the loop for the whole loop. After {@link LOOP_BUDGET_MS} of such work
 * without a turn, the next caller waits for one; a marker in the check phase notes that the loop
 * turned, so callers spread out in time never pay for the hop. One budget for the whole process:
 * host/ (attach, detach) and firewall/portmap.ts (single mapping changes) hold the same loop.
 */

/**
 * Time of synchronous work allowed between two loop turns, in ms — the same as netlink's slice
 * (kernel/netlink/socket.ts LOOP_SLICE_MS). A piece of work that starts just before the budget runs
 * out still runs to its end, so a 1 ms timer's worst lateness is about this plus the longest piece:
 * 6–7 ms with 2 ms against 8–10 ms with 4 ms over 200 attaches in a row, and no attach cost that
 * the A/B could see (≈ 1 140 µs p50 both; ad-hoc scripts, 3–4 rounds alternating).
 */
export const LOOP_BUDGET_MS = 2;

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
