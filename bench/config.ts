// Benchmark sizes: the full run the issue asks for, and the quick one CI runs so the code cannot rot.
import { readFileSync } from "node:fs";

/** Sizes and repetitions of one benchmark invocation. */
export interface Config {
  quick: boolean;
  /** Runs per measurement (min / median / max are over these). */
  runs: number;
  /** Suites to run (`tap`, `portmap`, `bootstrap`, `alloc`, `host`; `breakdown` on request). */
  suites: string[];
  /** TAP counts to measure at. The first is 1 (create/delete cycles), the others fill up to N. */
  tapSizes: number[];
  /** Create+delete cycles at size 1. */
  tapCycles: number;
  /** At this size every TAP is created and deleted one by one, then all are removed at once. */
  tapRemoveAll: number;
  /** At other sizes: how many creates / single deletes are timed at the end of the fill. */
  tapSample: number;
  /** Existing mappings to measure at. */
  mapSizes: number[];
  /** Single add/remove calls timed at each size, ours. */
  mapSample: number;
  /** Single add/remove calls timed at each size, baseline (6 processes per mapping pair). */
  seedMapSample: number;
  /** bootstrap / bootstrap again / teardown rounds. */
  bootstrapRounds: number;
  /** Calls timed per IPAM edge case (exhausted, last free address). */
  ipamCalls: number;
  /** Ephemeral ports allocated per PortManager measurement. */
  ports: number;
  /** uid/gid given to the TAPs (1000 as real root; 0 in a rootless namespace, where only 0 is mapped). */
  uid: number;
}

/** True when this process is real root: its user namespace maps the whole uid range. */
function realRoot(): boolean {
  try {
    return /^\s*0\s+0\s+4294967295\s*$/m.test(readFileSync("/proc/self/uid_map", "utf8"));
  } catch {
    return false;
  }
}

const ALL_SUITES = ["tap", "portmap", "bootstrap", "alloc", "host"];
/** Run only when asked for (`--only breakdown`): per-step times behind the analysis in docs/performance.md. */
const EXTRA_SUITES = ["breakdown"];

/**
 * Reads `--quick`, `--runs N` and `--only a,b` from the command line.
 * @throws Error for an unknown flag or suite.
 */
export function parseConfig(argv: string[]): Config {
  let quick = false;
  let runs: number | undefined;
  let suites = ALL_SUITES;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") quick = true;
    else if (a === "--runs") runs = Number(argv[++i]);
    else if (a === "--only") suites = String(argv[++i]).split(",");
    else throw new Error(`unknown argument ${a}; use --quick, --runs N, --only ${ALL_SUITES.join(",")}`);
  }
  for (const s of suites) {
    if (!ALL_SUITES.includes(s) && !EXTRA_SUITES.includes(s)) throw new Error(`unknown suite ${s}`);
  }
  if (runs !== undefined && !(Number.isInteger(runs) && runs >= 1))
    throw new Error("--runs needs a count ≥ 1");
  const uid = realRoot() ? 1000 : 0;
  if (quick) {
    return {
      quick,
      runs: runs ?? 1,
      suites,
      tapSizes: [1, 20, 50],
      tapCycles: 3,
      tapRemoveAll: 20,
      tapSample: 10,
      mapSizes: [0, 100, 1000],
      mapSample: 10,
      seedMapSample: 2,
      bootstrapRounds: 2,
      ipamCalls: 10,
      ports: 100,
      uid,
    };
  }
  return {
    quick,
    runs: runs ?? 3,
    suites,
    tapSizes: [1, 200, 1000],
    tapCycles: 20,
    tapRemoveAll: 200,
    tapSample: 50,
    mapSizes: [0, 1000, 10000],
    mapSample: 200,
    seedMapSample: 20,
    bootstrapRounds: 10,
    ipamCalls: 100,
    ports: 1000,
    uid,
  };
}
