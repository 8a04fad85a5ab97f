// `npm run bench`: our operations against what a shell script (or the seed) spawns for the same work,
// in one run on one machine, inside a private network namespace (scripts/bench.mjs makes it).
// Prints a table and writes JSON under bench/results/.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { arch, cpus, release, totalmem } from "node:os";
import { join } from "node:path";
import {
  addPortMapping,
  closeShared,
  createPointToPointTap,
  deleteTap,
  removePortMapping,
} from "../src/index.js";
import { now, type Summary, summarize, withLoopLag } from "./stats.js";

const quick = process.argv.includes("--quick");
const RUNS = quick ? 1 : 3;
const N_TAP = quick ? 10 : 200;
const N_MAP = quick ? 20 : 1000;
const N_SPAWN_MAP = quick ? 5 : 100;

const guest = (i: number) => `10.200.${(i + 2) >> 8}.${(i + 2) & 255}`;

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
}

interface Sample {
  /** per-operation times, ms */
  perOp: number[];
  /** worst event-loop lateness during the phase, ms */
  lagWorst: number;
  lagP99: number;
}

async function phase(n: number, op: (i: number) => Promise<void> | void): Promise<Sample> {
  const perOp: number[] = [];
  const { worst, p99 } = await withLoopLag(async () => {
    for (let i = 0; i < n; i++) {
      const t = now();
      await op(i);
      perOp.push(now() - t);
    }
  });
  return { perOp, lagWorst: worst, lagP99: p99 };
}

const results: Record<string, Sample[]> = {};
const record = (name: string, s: Sample) => {
  results[name] ??= [];
  results[name].push(s);
};

for (let r = 0; r < RUNS; r++) {
  record(
    "tap create+addr+up: ours",
    await phase(N_TAP, (i) =>
      createPointToPointTap(`bo${i}`, "10.200.0.1", guest(i), 1000, 1000).then(() => {}),
    ),
  );
  record("tap delete: ours", await phase(N_TAP, (i) => deleteTap(`bo${i}`)));
  record(
    "tap create+addr+up: 3x ip",
    await phase(N_TAP, (i) => {
      run("ip", [
        "tuntap",
        "add",
        "dev",
        `bi${i}`,
        "mode",
        "tap",
        "vnet_hdr",
        "user",
        "1000",
        "group",
        "1000",
      ]);
      run("ip", ["addr", "add", "10.200.0.1/32", "peer", `${guest(i)}/32`, "dev", `bi${i}`]);
      run("ip", ["link", "set", `bi${i}`, "up"]);
    }),
  );
  record("tap delete: ip link del", await phase(N_TAP, (i) => run("ip", ["link", "del", `bi${i}`])));

  record(
    "port mapping add: ours",
    await phase(N_MAP, (i) => addPortMapping("", 10000 + i, guest(i), 80, "tcp")),
  );
  record(
    "port mapping remove: ours",
    await phase(N_MAP, (i) => removePortMapping("", 10000 + i, guest(i), 80, "tcp")),
  );
  const seedRules = (i: number, op: "-A" | "-D") => {
    const dport = String(10000 + i);
    const to = `${guest(i)}:80`;
    for (const chain of ["PREROUTING", "OUTPUT"]) {
      const match = ["-p", "tcp", "-m", "addrtype", "--dst-type", "LOCAL", "--dport", dport];
      run("iptables", ["-t", "nat", op, chain, ...match, "-j", "DNAT", "--to-destination", to]);
    }
    run("iptables", [op, "FORWARD", "-p", "tcp", "-d", guest(i), "--dport", "80", "-j", "ACCEPT"]);
  };
  record("port mapping add: 3x iptables (seed)", await phase(N_SPAWN_MAP, (i) => seedRules(i, "-A")));
  record("port mapping remove: 3x iptables (seed)", await phase(N_SPAWN_MAP, (i) => seedRules(i, "-D")));
}
await closeShared();

const median = (xs: number[]) => summarize(xs).median;
const rows = Object.entries(results).map(([name, samples]) => ({
  name,
  perOpMedianMs: summarize(samples.map((s) => median(s.perOp))),
  lagWorstMs: summarize(samples.map((s) => s.lagWorst)),
  lagP99Ms: summarize(samples.map((s) => s.lagP99)),
  ops: samples[0]?.perOp.length ?? 0,
}));
const fmt = (s: Summary) => `${s.min.toFixed(3)} / ${s.median.toFixed(3)} / ${s.max.toFixed(3)}`;
console.log(
  `runs: ${RUNS}${quick ? " (quick mode)" : ""}; per-operation median, min / median / max over runs, ms`,
);
console.log(`| measurement | ops per run | per op (ms) | loop lag worst (ms) | loop lag p99 (ms) |`);
console.log("|---|---|---|---|---|");
for (const r of rows) {
  console.log(
    `| ${r.name} | ${r.ops} | ${fmt(r.perOpMedianMs)} | ${fmt(r.lagWorstMs)} | ${fmt(r.lagP99Ms)} |`,
  );
}
const ratio = (ours: string, base: string) => {
  const o = rows.find((r) => r.name === ours)?.perOpMedianMs.median;
  const b = rows.find((r) => r.name === base)?.perOpMedianMs.median;
  return o && b ? `${(b / o).toFixed(1)}x` : "n/a";
};
console.log("");
console.log(
  `ratio (baseline / ours, medians): tap create ${ratio("tap create+addr+up: ours", "tap create+addr+up: 3x ip")}, tap delete ${ratio("tap delete: ours", "tap delete: ip link del")}, mapping add ${ratio("port mapping add: ours", "port mapping add: 3x iptables (seed)")}, mapping remove ${ratio("port mapping remove: ours", "port mapping remove: 3x iptables (seed)")}`,
);

const machine = {
  cpus: cpus().length,
  cpu: cpus()[0]?.model,
  memGiB: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  arch: arch(),
  node: process.version,
};
const dir = join(new URL("..", import.meta.url).pathname, "bench", "results");
mkdirSync(dir, { recursive: true });
const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, "-")}${quick ? "-quick" : ""}.json`);
writeFileSync(file, `${JSON.stringify({ machine, runs: RUNS, quick, rows }, null, 2)}\n`);
console.log(`\nwritten: ${file}`);
