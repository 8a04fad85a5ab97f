/**
 * How a socket resumes the callers of requests the kernel already answered, without holding the
 * event loop for a whole batch.
 *
 * rtnetlink runs a request inside the sender's `send()` (netlink_unicast_kernel() → rtnetlink_rcv()
 * in net/netlink/af_netlink.c), so the answer is queued before `send()` returns and a request can
 * settle in the same macrotask. Settling every one from `setImmediate` costs a loop turn (≈ 20 µs
 * idle, more under load) per request; settling every one at once lets a caller making requests back
 * to back (500 TAPs in a loop) hold the loop for the whole batch (0.6–0.9 s measured). A slice does
 * both: callers resume at once while the current slice of loop time is younger than `budgetMs`, and
 * after a full loop turn once it is older, which gives timers and I/O their turn and starts a new
 * slice. The loop's stall from our side is then about `budgetMs` plus one request.
 */
export class LoopSlice {
  private since: number | undefined;

  /**
   * @param budgetMs how long callers may be resumed back to back before the loop gets a turn, in
   *   milliseconds; the loop's stall from our side is about this plus one request.
   * @param clock milliseconds, monotonic (tests pass their own).
   */
  constructor(
    readonly budgetMs: number,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** Runs `fn` now when the current slice has time left, otherwise from the check phase. */
  run(fn: () => void): void {
    if (!this.expired()) fn();
    // Two hops: an immediate queued from a check-phase callback runs in the next iteration, so the
    // timers phase comes between the slice that ran out and the one `fn` starts.
    else setImmediate(() => setImmediate(fn));
  }

  /**
   * True when the current slice (started now if none is running) is older than the budget: work
   * that can be split — reading a long dump — stops there and goes on after a loop turn.
   */
  expired(): boolean {
    const now = this.clock();
    if (this.since === undefined) {
      this.since = now;
      // Runs at the next check phase, i.e. once the loop has turned: a new slice starts there.
      setImmediate(() => {
        this.since = undefined;
      });
    }
    return now - this.since >= this.budgetMs;
  }
}
