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

/** Milliseconds since an arbitrary origin, sub-microsecond resolution. */
export function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * Measures the event loop's worst lateness while `fn` runs: a 1 ms timer that records how late each
 * tick fires. Returns `fn`'s result and the worst and 99th-percentile lateness in ms.
 */
export async function withLoopLag<T>(
  fn: () => Promise<T>,
): Promise<{ result: T; worst: number; p99: number }> {
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
    lags.push(Math.max(0, now() - last - 1)); // a loop blocked until the very end shows here
    return { result, ...lagStats(lags) };
  } finally {
    clearInterval(timer);
  }
}

function lagStats(lags: number[]): { worst: number; p99: number } {
  if (lags.length === 0) return { worst: 0, p99: 0 };
  const s = [...lags].sort((a, b) => a - b);
  return {
    worst: s[s.length - 1] as number,
    p99: s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] as number,
  };
}
