// `npm run bench [-- --quick] [-- --runs N] [-- --only tap,portmap,bootstrap,alloc,host,breakdown]`: our
// operations against what the seed (or a shell script) spawns for the same work, in one run on one
// machine, inside a private network namespace (scripts/bench.mjs makes it). Prints a table and writes
// JSON under bench/results/. No assertion on times: the targets are reported, not enforced.
import { mkdirSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { closeShared } from "../src/index.js";
import { parseConfig } from "./config.js";
import { describeMachine, loadAverage, rssMiB, uptime } from "./machine.js";
import { Recorder } from "./record.js";
import { LOOP_TARGET, loopLagMisses, renderFacts, renderTable, summarizeRows } from "./report.js";
import { sleep, withLoopLag } from "./stats.js";
import { allocSuite } from "./suites/alloc.js";
import { bootstrapSuite } from "./suites/bootstrap.js";
import { breakdownSuite } from "./suites/breakdown.js";
import { hostSuite } from "./suites/host.js";
import { portmapSuite } from "./suites/portmap.js";
import { tapSuite } from "./suites/tap.js";

if (!process.env.MVNET_TEST_NETNS || readlinkSync("/proc/self/ns/net") !== process.env.MVNET_TEST_NETNS) {
  console.error("refusing to run outside a private network namespace: use `npm run bench`");
  process.exit(2);
}

const root = new URL("..", import.meta.url).pathname;
const cfg = parseConfig(process.argv.slice(2));
const rec = new Recorder();
const started = new Date();
const machine = describeMachine(root);
const uptimeStart = uptime();
const loads: Array<{ run: number; start: number[]; end: number[] }> = [];
const notes: string[] = [];
console.log(`microvm-net benchmark, ${cfg.quick ? "quick mode, " : ""}${cfg.runs} run(s); ${uptimeStart}`);

rec.fact("rss_mib_start", rssMiB());
for (let r = 0; r < cfg.runs; r++) {
  rec.run = r;
  const start = loadAverage();
  rec.load1 = start[0];
  // The control: how late a 1 ms timer fires with nothing of ours running (machine noise).
  const idle = await withLoopLag(() => sleep(1000));
  rec.fact("idle_loop_lag_p99_ms", idle.p99);
  rec.fact("idle_loop_lag_worst_ms", idle.worst);
  for (const suite of cfg.suites) {
    const t = Date.now();
    if (suite === "tap") await tapSuite(cfg, rec, root);
    else if (suite === "portmap") await portmapSuite(cfg, rec);
    else if (suite === "bootstrap") await bootstrapSuite(cfg, rec);
    else if (suite === "alloc") await allocSuite(cfg, rec);
    else if (suite === "breakdown") await breakdownSuite(cfg, rec);
    else if (suite === "host") {
      const why = await hostSuite(cfg, rec);
      if (why && r === 0) notes.push(why);
    }
    console.log(`run ${r + 1}/${cfg.runs}: ${suite} done in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  }
  loads.push({ run: r, start, end: loadAverage() });
}
rec.fact("rss_mib_end", rssMiB());
await closeShared();

const rows = summarizeRows(rec.rows.values());
const misses = loopLagMisses(rows);
const uptimeEnd = uptime();
console.log("");
console.log(
  `Median (min–max) over ${cfg.runs} run(s) of each run's per-call median (or total, for batches); ` +
    `ratio = baseline median ÷ ours; loop lag = a 1 ms timer's lateness in our phases.`,
);
console.log("");
console.log(renderTable(rows));
console.log("");
console.log(renderFacts(rec.facts));
console.log("");
console.log(
  misses.length === 0
    ? `loop lag: every phase of ours within p99 ≤ ${LOOP_TARGET.p99} ms and worst ≤ ${LOOP_TARGET.worst} ms`
    : `loop lag over target (p99 ≤ ${LOOP_TARGET.p99} ms, worst ≤ ${LOOP_TARGET.worst} ms):\n  ${misses.join("\n  ")}`,
);
for (const n of notes) console.log(`note: ${n}`);
console.log(
  `load (1/5/15 min) per run: ${loads.map((l) => `[${l.start.join(" ")}] → [${l.end.join(" ")}]`).join("; ")}`,
);
console.log(
  `machine: ${machine.cpus} × ${machine.cpu}, ${machine.memGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}`,
);

const dir = join(root, "bench", "results");
mkdirSync(dir, { recursive: true });
const file = join(dir, `${started.toISOString().replace(/[:.]/g, "-")}${cfg.quick ? "-quick" : ""}.json`);
const json = {
  version: 1,
  started: started.toISOString(),
  finished: new Date().toISOString(),
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
  config: cfg,
  machine,
  uptime: { start: uptimeStart, end: uptimeEnd },
  loadPerRun: loads,
  notes,
  summary: rows,
  loopLagMisses: misses,
  facts: rec.facts,
  rows: [...rec.rows.values()],
};
writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
console.log(`\nwritten: ${file}`);
