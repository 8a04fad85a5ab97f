// Prints the tables of a result file again (e.g. the reference run in docs/performance.md):
//   npx tsx bench/render.ts bench/results/reference/<file>.json
import { readFileSync } from "node:fs";
import type { Row } from "./record.js";
import { loopLagMisses, renderFacts, renderTable, summarizeRows } from "./report.js";

const file = process.argv[2];
if (!file) {
  console.error("usage: npx tsx bench/render.ts <result.json>");
  process.exit(2);
}
const json = JSON.parse(readFileSync(file, "utf8")) as {
  rows: Row[];
  facts: Record<string, number[]>;
  config: { runs: number; quick: boolean };
  uptime: { start: string; end: string };
  loadPerRun: Array<{ start: number[]; end: number[] }>;
};
const rows = summarizeRows(json.rows);
console.log(renderTable(rows));
console.log("");
console.log(renderFacts(json.facts));
const misses = loopLagMisses(rows);
if (misses.length > 0) console.log(`\nloop lag over target:\n  ${misses.join("\n  ")}`);
console.log(
  `\nruns: ${json.config.runs}${json.config.quick ? " (quick)" : ""}; uptime at start: ${json.uptime.start}`,
);
console.log(
  `load (1/5/15 min) per run: ${json.loadPerRun.map((l) => `[${l.start.join(" ")}] → [${l.end.join(" ")}]`).join("; ")}`,
);
