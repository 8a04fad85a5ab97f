// Whole attach / detach per VM through HostNetwork (address, TAP, neighbour, one published port, durable
// record), against what a shell script spawns for the same: 3 `ip` + 3 `iptables` per VM, and back.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HostNetwork } from "../../src/host/index.js";
import { bootstrap, teardown } from "../../src/index.js";
import type { Config } from "../config.js";
import { rssMiB } from "../machine.js";
import { lastOps, once, phase, rounds } from "../phase.js";
import type { Recorder, RowSpec } from "../record.js";
import {
  ipDelGroup,
  ipTapBatch,
  ipTapCreate,
  iptablesClear,
  seedPortMapping,
  seedRestoreText,
} from "../seed.js";
import { available, run } from "../spawn.js";
import { sleep } from "../stats.js";
import { guestIp } from "./tap.js";

const SETTLE_MS = 300;
const OURS_ATTACH =
  'HostNetwork.attach(vm, {publish: ["80"]}): address, TAP, neighbour, 1 mapping, SQLite record';
const SHELL_ATTACH = "3 ip (TAP) + 3 iptables -A (the seed's mapping)";

/** Sampled near `n` attached VMs: ours times every attach, the shell only the last few (see docs). */
function row(kind: "attach" | "detach", n: number): RowSpec {
  const where = n === 1 ? "with 1 VM" : `near ${n} VMs`;
  return {
    id: `host.${kind}.${n}`,
    section: "host",
    what: `${kind} one VM (one published port), per VM, ${where}`,
    stat: "p50",
    unit: "ms",
    ours: kind === "attach" ? OURS_ATTACH : "HostNetwork.detach(vm)",
    baseline: kind === "attach" ? SHELL_ATTACH : "3 iptables -D + ip link del",
    target: kind === "attach" ? 1 : undefined,
  };
}

function manyRow(n: number): RowSpec {
  return {
    id: `host.detach-many.${n}`,
    section: "host",
    what: `detach ${n} VMs at once, total`,
    stat: "total",
    unit: "ms",
    ours: "HostNetwork.detachMany (mappings one by one, TAPs in one group delete)",
  };
}

async function ours(cfg: Config, rec: Recorder, n: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "mvnet-bench-"));
  const host = await HostNetwork.open({ statePath: join(dir, "state.db") });
  const vm = (i: number) => `bench-vm-${i}`;
  const attach = (i: number) => host.attach(vm(i), { uid: cfg.uid, gid: cfg.uid, publish: ["80"] });
  try {
    if (n === 1) {
      const r = await rounds(cfg.tapCycles, { attach: () => attach(0), detach: () => host.detach(vm(0)) });
      rec.add(row("attach", 1), "ours", r.attach);
      rec.add(row("detach", 1), "ours", r.detach);
      return;
    }
    const all = await phase(n, attach);
    const k = Math.min(n, cfg.tapSample);
    rec.add(row("attach", n), "ours", lastOps(all, k));
    rec.fact(`ours_attach_${n}_total_ms`, all.ops.total);
    rec.fact(`rss_mib_${n}_vms`, rssMiB());
    rec.add(row("detach", n), "ours", await phase(k, (i) => host.detach(vm(n - 1 - i))));
    const rest = Array.from({ length: n - k }, (_, i) => vm(i));
    if (rest.length > 0) rec.add(manyRow(rest.length), "ours", await once(() => host.detachMany(rest)));
  } finally {
    await host.close();
    rmSync(dir, { recursive: true, force: true });
    await sleep(SETTLE_MS);
  }
}

async function shell(cfg: Config, rec: Recorder, n: number): Promise<void> {
  const name = (i: number) => `hb${i}`;
  const port = (i: number) => 30000 + i;
  const attach = (i: number) => {
    ipTapCreate(name(i), "10.200.0.1", guestIp(i), cfg.uid);
    seedPortMapping("-A", port(i), guestIp(i), 80);
  };
  const detach = (i: number) => {
    seedPortMapping("-D", port(i), guestIp(i), 80);
    run("ip", ["link", "del", "dev", name(i)]);
  };
  iptablesClear();
  try {
    if (n === 1) {
      const r = await rounds(cfg.tapCycles, { attach: () => attach(0), detach: () => detach(0) });
      rec.add(row("attach", 1), "baseline", r.attach);
      rec.add(row("detach", 1), "baseline", r.detach);
      return;
    }
    // Six processes per VM: only the last k are timed; the others are put in place in two batches.
    const k = Math.min(n, cfg.seedMapSample);
    const filled = Array.from({ length: n - k }, (_, i) => i);
    ipTapBatch(
      filled.map((i) => ({ name: name(i), guestIp: guestIp(i) })),
      "10.200.0.1",
      cfg.uid,
    );
    if (filled.length > 0) {
      const maps = filled.map((i) => ({ hostPort: port(i), guestIp: guestIp(i), guestPort: 80 }));
      run("iptables-restore", ["--noflush"], seedRestoreText(maps));
    }
    rec.add(row("attach", n), "baseline", await phase(k, (i) => attach(n - k + i)));
    rec.add(row("detach", n), "baseline", await phase(k, (i) => detach(n - 1 - i)));
  } finally {
    ipDelGroup();
    iptablesClear();
    await sleep(SETTLE_MS);
  }
}

/** One run of the attach / detach measurements; the side that goes first alternates between runs. */
export async function hostSuite(cfg: Config, rec: Recorder): Promise<string | undefined> {
  const withShell = available("iptables") && available("iptables-restore");
  await bootstrap();
  try {
    for (const n of cfg.tapSizes) {
      const sides = rec.run % 2 === 0 ? ["ours", "shell"] : ["shell", "ours"];
      for (const side of sides) {
        if (side === "ours") await ours(cfg, rec, n);
        else if (withShell) await shell(cfg, rec, n);
      }
    }
  } finally {
    await teardown();
  }
  return withShell ? undefined : "iptables is not installed: attach/detach measured for our side only";
}
