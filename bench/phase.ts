// One timed phase: n operations one after another, each timed, with the event loop watched.
import { type LagStats, lagStats, now, type OpStats, opStats, withLoopLag } from "./stats.js";

/**
 * Collects garbage left by earlier phases (when node runs with --expose-gc, as scripts/bench.mjs
 * starts it), so that V8's work on it does not land in this phase's loop lag.
 */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** What one phase measured. */
export interface PhaseResult {
  /** Per-operation times. */
  ops: OpStats;
  /**
   * Event-loop lateness during the phase. For an async phase: a 1 ms timer's lateness. For a
   * synchronous phase (`syncPhase`) the loop is blocked exactly as long as each call runs, so the
   * per-call times are the stalls: `worst` = the longest call, `p99` = the 99th-percentile call.
   */
  lag: LagStats;
  /** Per-operation times, ms, in order (kept when the caller wants to show flatness). */
  times: number[];
}

/**
 * Runs `op(0)` … `op(n-1)` one after another, timing each, with a 1 ms timer watching the loop.
 * `op` may be synchronous (a spawned process, say); the loop lag then shows how long it blocked.
 */
export async function phase(n: number, op: (i: number) => Promise<unknown> | unknown): Promise<PhaseResult> {
  const times: number[] = [];
  collectGarbage();
  const lag = await withLoopLag(async () => {
    for (let i = 0; i < n; i++) {
      const t = now();
      await op(i);
      times.push(now() - t);
    }
  });
  return { ops: opStats(times), lag: { worst: lag.worst, p99: lag.p99, ticks: lag.ticks }, times };
}

/**
 * Runs `n` rounds of several operations (round i: each `ops[name](i)` in the given order), timing
 * each call; returns one result per operation name, all sharing the loop lag of the whole loop.
 */
export async function rounds<K extends string>(
  n: number,
  ops: Record<K, (i: number) => Promise<unknown> | unknown>,
): Promise<Record<K, PhaseResult>> {
  const names = Object.keys(ops) as K[];
  const times = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  collectGarbage();
  const lag = await withLoopLag(async () => {
    for (let i = 0; i < n; i++) {
      for (const k of names) {
        const t = now();
        await ops[k](i);
        times[k].push(now() - t);
      }
    }
  });
  const lagOnly = { worst: lag.worst, p99: lag.p99, ticks: lag.ticks };
  return Object.fromEntries(
    names.map((k) => [k, { ops: opStats(times[k]), lag: lagOnly, times: times[k] }]),
  ) as Record<K, PhaseResult>;
}

/** The same phase restricted to its last `k` operations (the loop lag stays the whole phase's). */
export function lastOps(p: PhaseResult, k: number): PhaseResult {
  const times = p.times.slice(-k);
  return { ops: opStats(times), lag: p.lag, times };
}

/** A single timed call, as a phase of one operation. */
export function once(op: () => Promise<unknown> | unknown): Promise<PhaseResult> {
  return phase(1, () => op());
}

/**
 * Runs a synchronous `op(0)` … `op(n-1)`, timing each; the loop's stall is the calls themselves
 * (see {@link PhaseResult.lag}).
 */
export function syncPhase(n: number, op: (i: number) => unknown): PhaseResult {
  const times = new Array<number>(n);
  collectGarbage();
  for (let i = 0; i < n; i++) {
    const t = now();
    op(i);
    times[i] = now() - t;
  }
  return { ops: opStats(times), lag: lagStats(times), times };
}
