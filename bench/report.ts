// The table people read and the JSON file machines read, from the recorded samples.
import type { Row, Sample } from "./record.js";
import { type Summary, summarize } from "./stats.js";

/** Event-loop targets of the issue, ms (a 1 ms timer's lateness). */
export const LOOP_TARGET = { p99: 10, worst: 20 };

/** A row reduced to what the table shows: min / median / max over runs of each side. */
export interface RowSummary {
  id: string;
  section: string;
  what: string;
  unit: "ms" | "µs";
  ours?: Summary;
  baseline?: Summary;
  /** baseline median / our median: how many times faster we are. */
  ratio?: number;
  /** Target for our median, ms. */
  target?: number;
  met?: boolean;
  /** Our side's loop lag over runs, ms. */
  lagP99?: Summary;
  lagWorst?: Summary;
  oursDoes: string;
  baselineDoes?: string;
}

const over = (samples: Sample[], f: (s: Sample) => number) =>
  samples.length ? summarize(samples.map(f)) : undefined;

/** Reduces every row to its summary. */
export function summarizeRows(rows: Iterable<Row>): RowSummary[] {
  const out: RowSummary[] = [];
  for (const r of rows) {
    const ours = over(r.oursSamples, (s) => s.value);
    const baseline = over(r.baselineSamples, (s) => s.value);
    out.push({
      id: r.id,
      section: r.section,
      what: r.what,
      unit: r.unit,
      ours,
      baseline,
      ratio: ours && baseline && ours.median > 0 ? baseline.median / ours.median : undefined,
      target: r.target,
      met: r.target !== undefined && ours ? ours.median <= r.target : undefined,
      lagP99: over(r.oursSamples, (s) => s.lag.p99),
      lagWorst: over(r.oursSamples, (s) => s.lag.worst),
      oursDoes: r.ours,
      baselineDoes: r.baseline,
    });
  }
  return out;
}

/** 3 significant digits, no exponent: 0.000412, 0.0412, 0.412, 4.12, 41.2, 412, 4120. */
export function num(v: number): string {
  if (v === 0) return "0";
  if (Math.abs(v) >= 100) return v.toFixed(0);
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(v))));
  return v.toFixed(Math.min(digits, 6));
}

function cell(s: Summary | undefined, unit: "ms" | "µs"): string {
  if (!s) return "—";
  const k = unit === "µs" ? 1000 : 1;
  if (s.min === s.max) return `${num(s.median * k)} ${unit}`;
  return `**${num(s.median * k)}** (${num(s.min * k)}–${num(s.max * k)}) ${unit}`;
}

const SECTION_TITLES: Record<string, string> = {
  tap: "TAP devices",
  portmap: "Port mappings",
  bootstrap: "Bootstrap",
  alloc: "Allocators",
  host: "Attach / detach per VM",
};

/**
 * The markdown table: median (min–max over runs) of each side, the ratio of medians, the target and
 * our side's loop lag (median over runs of each run's p99 / worst).
 */
export function renderTable(rows: RowSummary[]): string {
  const lines = [
    "| measurement | ours | baseline | baseline ÷ ours | target | met | loop lag p99 / worst (ms) |",
    "|---|---|---|---|---|---|---|",
  ];
  let section = "";
  for (const r of rows) {
    if (r.section !== section) {
      section = r.section;
      lines.push(`| **${SECTION_TITLES[section] ?? section}** | | | | | | |`);
    }
    const target = r.target === undefined ? "" : `≤ ${num(r.target)} ms`;
    const met = r.met === undefined ? "" : r.met ? "yes" : "**no**";
    const ratio = r.ratio === undefined ? "—" : `×${num(r.ratio)}`;
    const lag = r.lagP99 && r.lagWorst ? `${num(r.lagP99.median)} / ${num(r.lagWorst.median)}` : "—";
    lines.push(
      `| ${r.what} | ${cell(r.ours, r.unit)} | ${cell(r.baseline, r.unit)} | ${ratio} | ${target} | ${met} | ${lag} |`,
    );
  }
  return lines.join("\n");
}

/** Which rows miss the loop-lag targets (median over runs), as lines; empty when none does. */
export function loopLagMisses(rows: RowSummary[]): string[] {
  const misses: string[] = [];
  for (const r of rows) {
    if (!r.lagP99 || !r.lagWorst) continue;
    const p99 = r.lagP99.median;
    const worst = r.lagWorst.median;
    if (p99 > LOOP_TARGET.p99 || worst > LOOP_TARGET.worst) {
      misses.push(
        `${r.what}: p99 ${num(p99)} ms, worst ${num(worst)} ms (max over runs ${num(r.lagWorst.max)})`,
      );
    }
  }
  return misses;
}

/** The per-run facts (RSS, totals) as a small table. */
export function renderFacts(facts: Record<string, number[]>): string {
  const lines = ["| fact | median (min–max) over runs |", "|---|---|"];
  for (const [name, values] of Object.entries(facts)) {
    const s = summarize(values);
    lines.push(`| ${name} | ${num(s.median)} (${num(s.min)}–${num(s.max)}) |`);
  }
  return lines.join("\n");
}
