// The allocators: IPAM over a whole /16 (including the exhausted pool and the last free address) and
// PortManager's ephemeral ports, ours against models of the seed's algorithms run in the same process.

import { PortManager as PurePortManager } from "../../src/alloc/index.js";
import { PortManager } from "../../src/api/ports.js";
import { IPAM, SUBNET } from "../../src/index.js";
import { isPortFree } from "../../src/kernel/probe.js";
import type { Config } from "../config.js";
import { type PhaseResult, phase, syncPhase } from "../phase.js";
import type { Recorder, RowSpec } from "../record.js";
import { SeedStyleIpam, SeedStylePortManager } from "../seed.js";
import { now } from "../stats.js";

interface Allocator {
  acquire(): string;
  release(ip: string): unknown;
}

const SEED_IPAM = "model of the seed's IPAM: cursor walk, addresses as text in a Map";
const SEED_PORTS = "model of the seed's PortManager: first fit from the range start";

const rows = {
  fill: {
    id: "alloc.ipam.acquire",
    section: "alloc",
    what: "IPAM acquire, mean over a whole /16 (65 533 addresses)",
    stat: "mean",
    unit: "µs",
    ours: "IPAM.acquire (bitmap, next fit)",
    baseline: SEED_IPAM,
  },
  exhausted: {
    id: "alloc.ipam.exhausted",
    section: "alloc",
    what: "IPAM acquire on an exhausted /16 (throws)",
    stat: "p50",
    unit: "µs",
    ours: "IPAM.acquire → ExhaustedError",
    baseline: SEED_IPAM,
  },
  lastFree: {
    id: "alloc.ipam.last-free",
    section: "alloc",
    what: "IPAM acquire of the only free address, just behind the cursor",
    stat: "p50",
    unit: "µs",
    ours: "IPAM.acquire",
    baseline: SEED_IPAM,
  },
} satisfies Record<string, RowSpec>;

function portRow(probe: boolean, n: number): RowSpec {
  return {
    id: `alloc.ports.${probe ? "probe" : "no-probe"}`,
    section: "alloc",
    what: `PortManager ephemeral allocate, per call, ${n} ports, ${probe ? "with" : "without"} the host probe`,
    stat: "p50",
    unit: "µs",
    ours: probe
      ? "PortManager.allocate(0, …) with hostProbe (bind check)"
      : "PortManager.allocate(0, …), no probe",
    baseline: `${SEED_PORTS}${probe ? ", bind check" : ", no probe"}`,
  };
}

/**
 * The three IPAM measurements for one allocator: acquire until exhausted (a tight loop for the mean,
 * a second, per-call timed pass for the longest call), then `calls` failing acquires, then `calls`
 * acquires of the only free address (released just behind the cursor, the longest search).
 */
function ipamRuns(make: () => Allocator, calls: number): Record<keyof typeof rows, PhaseResult> {
  const tight = make();
  let n = 0;
  const t0 = now();
  for (;;) {
    try {
      tight.acquire();
      n++;
    } catch {
      break;
    }
  }
  const total = now() - t0;
  const timed = make();
  const perCall = syncPhase(n, () => timed.acquire());
  const fill: PhaseResult = {
    ops: { ...perCall.ops, n, total, mean: total / n },
    lag: perCall.lag,
    times: [],
  };
  const exhausted = syncPhase(calls, () => {
    try {
      timed.acquire();
    } catch {
      return;
    }
    throw new Error("acquire on a full pool succeeded");
  });
  // The last address handed out sits just behind both cursors, so finding it again is a full search.
  const victim = "10.200.255.254";
  const lastFree = syncPhase(calls, () => {
    timed.release(victim);
    const got = timed.acquire();
    if (got !== victim) throw new Error(`expected ${victim}, got ${got}`);
  });
  return { fill, exhausted, lastFree };
}

/** One run of the allocator measurements. */
export async function allocSuite(cfg: Config, rec: Recorder): Promise<void> {
  const ours = ipamRuns(() => new IPAM(SUBNET), cfg.ipamCalls);
  const seed = ipamRuns(() => new SeedStyleIpam(SUBNET), cfg.ipamCalls);
  for (const k of Object.keys(rows) as Array<keyof typeof rows>) {
    rec.add(rows[k], "ours", ours[k]);
    rec.add(rows[k], "baseline", seed[k]);
  }

  const n = cfg.ports;
  const vm = (i: number) => `vm${i}`;
  const pure = new PurePortManager(30000, 32767);
  rec.add(portRow(false, n), "ours", await phase(n, (i) => pure.allocate(0, "tcp", "", vm(i))));
  const seedPure = new SeedStylePortManager(30000, 32767);
  rec.add(portRow(false, n), "baseline", await phase(n, (i) => seedPure.allocateEphemeral(vm(i))));

  const probed = new PortManager(30000, 32767);
  rec.add(portRow(true, n), "ours", await phase(n, (i) => probed.allocate(0, "tcp", "", vm(i))));
  const seedProbed = new SeedStylePortManager(30000, 32767, (p) => isPortFree("tcp", "0.0.0.0", p));
  rec.add(portRow(true, n), "baseline", await phase(n, (i) => seedProbed.allocateEphemeral(vm(i))));
}
