/** Summary of repeated measurements. */
export interface Summary {
  min: number;
  median: number;
  max: number;
}

/** min / median / max of a non-empty list. */
export function summarize(values: number[]): Summary {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
  return { min: s[0] as number, median, max: s[s.length - 1] as number };
}

/** The q-quantile (0–1) of an ascending list, nearest rank; 0 for an empty list. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

/** Distribution of the per-operation times of one phase, all in ms. */
export interface OpStats {
  n: number;
  total: number;
  mean: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
}

/** {@link OpStats} of a list of per-operation times (ms). */
export function opStats(times: number[]): OpStats {
  const s = [...times].sort((a, b) => a - b);
  const total = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    total,
    mean: s.length ? total / s.length : 0,
    min: s[0] ?? 0,
    p50: quantile(s, 0.5),
    p99: quantile(s, 0.99),
    max: s[s.length - 1] ?? 0,
  };
}

/** Milliseconds since an arbitrary origin, sub-microsecond resolution. */
export function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Event-loop lateness seen by a 1 ms interval timer, ms. */
export interface LagStats {
  /** Worst lateness of one tick. */
  worst: number;
  /** 99th percentile of the ticks' lateness. */
  p99: number;
  /** Number of ticks observed. */
  ticks: number;
}

/**
 * Measures the event loop's lateness while `fn` runs: a 1 ms interval timer records how late each
 * tick fires (Node never fires it early, so lateness = gap − 1 ms). Returns `fn`'s result and the
 * worst and 99th-percentile lateness in ms. A loop blocked until the very end still shows, through
 * one last sample taken after `fn` settles.
 */
export async function withLoopLag<T>(fn: () => Promise<T>): Promise<{ result: T } & LagStats> {
  const lags: number[] = [];
  let last = now();
  const timer = setInterval(() => {
    const t = now();
    lags.push(Math.max(0, t - last - 1));
    last = t;
  }, 1);
  try {
    const result = await fn();
    await new Promise((r) => setImmediate(r));
    lags.push(Math.max(0, now() - last - 1));
    return { result, ...lagStats(lags) };
  } finally {
    clearInterval(timer);
  }
}

/** {@link LagStats} of a list of tick latenesses (ms). */
export function lagStats(lags: number[]): LagStats {
  const s = [...lags].sort((a, b) => a - b);
  return { worst: s[s.length - 1] ?? 0, p99: quantile(s, 0.99), ticks: s.length };
}
