// The benchmark's results as data: one row per measurement, our side and the baseline's, one
// sample per run. report.ts turns them into the table and the JSON file.
import type { PhaseResult } from "./phase.js";
import type { LagStats, OpStats } from "./stats.js";

/** How a run's value is read out of its phase. */
export type Stat = "p50" | "total" | "mean";

/** What a row measures; values are in ms, `unit` only changes how they are shown. */
export interface RowSpec {
  /** Stable identifier (JSON key, and what `--compare` would match on). */
  id: string;
  /** Table section: `tap`, `portmap`, `bootstrap`, `alloc`, `host`. */
  section: string;
  /** What is measured, for people. */
  what: string;
  /** Which statistic of the phase is the row's value. */
  stat: Stat;
  /** Display unit. */
  unit: "ms" | "µs";
  /** What our side runs. */
  ours: string;
  /** What the baseline runs (absent: no baseline for this row). */
  baseline?: string;
  /** Target for our median value, ms (absent: none). */
  target?: number;
}

/** One run's measurement of one side. */
export interface Sample {
  run: number;
  /** The row's statistic, ms. */
  value: number;
  ops: OpStats;
  lag: LagStats;
  /** 1-minute load average when the run started. */
  load1: number;
}

/** A row with its samples. */
export interface Row extends RowSpec {
  oursSamples: Sample[];
  baselineSamples: Sample[];
}

function statOf(stat: Stat, p: PhaseResult): number {
  return stat === "p50" ? p.ops.p50 : stat === "total" ? p.ops.total : p.ops.mean;
}

/** Collects samples, in the order rows are first seen. */
export class Recorder {
  readonly rows = new Map<string, Row>();
  /** Extra facts per run: RSS, fill times and the like, by name. */
  readonly facts: Record<string, number[]> = {};
  run = 0;
  load1 = 0;

  /** Adds one sample of `side` to the row `spec` (created on first use). */
  add(spec: RowSpec, side: "ours" | "baseline", p: PhaseResult): void {
    let row = this.rows.get(spec.id);
    if (!row) {
      row = { ...spec, oursSamples: [], baselineSamples: [] };
      this.rows.set(spec.id, row);
    }
    const sample: Sample = {
      run: this.run,
      value: statOf(spec.stat, p),
      ops: p.ops,
      lag: p.lag,
      load1: this.load1,
    };
    (side === "ours" ? row.oursSamples : row.baselineSamples).push(sample);
  }

  /** Records a named number for this run (e.g. `rss_mib_1000_taps`). */
  fact(name: string, value: number): void {
    this.facts[name] ??= [];
    this.facts[name].push(value);
  }
}
