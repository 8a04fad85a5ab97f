// TAP create + address + up, and delete: ours (ioctl + rtnetlink) against three `ip` processes per TAP,
// at 1, 200 and 1 000 TAPs; removing a batch at once (interface group) against one by one.
import { createPointToPointTap, DEFAULT_TAP_GROUP, deleteTap } from "../../src/index.js";
import { defaultSocket, linkDelGroup } from "../../src/kernel/netlink/index.js";
import type { Config } from "../config.js";
import { rssMiB } from "../machine.js";
import { lastOps, once, type PhaseResult, phase, rounds } from "../phase.js";
import type { Recorder, RowSpec } from "../record.js";
import { ipDelGroup, ipTapBatch, ipTapCreate, SHELL_TAP_GROUP } from "../seed.js";
import { runSeedTap, seedTapBinary } from "../seed-go.js";
import { run } from "../spawn.js";
import { sleep } from "../stats.js";

const HOST_IP = "10.200.0.1";
/** Guest address number i (10.200.0.2 upwards). */
export const guestIp = (i: number) => `10.200.${(i + 2) >> 8}.${(i + 2) & 255}`;

/** Lets the kernel finish the deferred part of link deletions before the next measurement. */
const SETTLE_MS = 300;

const OURS_CREATE = "createPointToPointTap (TUNSETIFF…, RTM_NEWLINK alias+group+up, RTM_NEWADDR)";
const IP_CREATE = "ip tuntap add; ip addr add … peer; ip link set up (3 processes)";

function createRow(n: number, k: number): RowSpec {
  const where = n === 1 ? "with 1 TAP" : k === n ? `all ${n}, one after another` : `the last ${k} of ${n}`;
  return {
    id: `tap.create.${n}`,
    section: "tap",
    what: `TAP create+address+up, per TAP, ${where}`,
    stat: "p50",
    unit: "ms",
    ours: OURS_CREATE,
    baseline: IP_CREATE,
    target: 0.5,
  };
}

function deleteRow(n: number, k: number): RowSpec {
  const where = n === 1 ? "the only TAP" : k === n ? `all ${n}` : `${k} of ${n}`;
  return {
    id: `tap.delete.${n}`,
    section: "tap",
    what: `TAP delete one by one, per TAP, ${where}`,
    stat: "p50",
    unit: "ms",
    ours: "deleteTap (RTM_GETLINK, RTM_DELLINK)",
    baseline: "ip link del",
  };
}

const GO_CREATE =
  "seed's CreatePointToPointTap in Go (vishvananda/netlink: LinkAdd tuntap, LinkByName, AddrAdd, LinkSetUp)";

/** The same rows against the seed's own Go code (its samples are ours plus the Go side's). */
function vsGo(spec: RowSpec, kind: "create" | "delete"): RowSpec {
  return {
    ...spec,
    id: `${spec.id}.vs-seed-go`,
    what: `${spec.what}, vs the seed's Go`,
    baseline: kind === "create" ? GO_CREATE : "seed's DeleteTap in Go (LinkByName, LinkDel)",
  };
}

function groupRow(n: number, vs: "one-by-one" | "group"): RowSpec {
  return {
    id: `tap.remove-at-once.${n}.vs-${vs}`,
    section: "tap",
    what: `remove ${n} TAPs at once, total, vs ${vs === "group" ? "ip link del group" : `${n} × ip link del`}`,
    stat: "total",
    unit: "ms",
    ours: "linkDelGroup (one RTM_DELLINK for the interface group)",
    baseline: vs === "group" ? "ip link del group N" : `ip link del, ${n} times`,
    target: n === 200 ? 150 : undefined,
  };
}

function addOurs(rec: Recorder, spec: RowSpec, p: PhaseResult, kind: "create" | "delete"): void {
  rec.add(spec, "ours", p);
  if (goBinary) rec.add(vsGo(spec, kind), "ours", p);
}

let goBinary: string | undefined;

/** The seed's Go code at the same sizes, the same way (all timed in-process by the Go side). */
function goAtSize(cfg: Config, rec: Recorder, bin: string, n: number): void {
  const prefix = "mg";
  if (n === 1) {
    const r = runSeedTap(bin, ["cycle", prefix, String(cfg.tapCycles), String(cfg.uid)]);
    rec.add(vsGo(createRow(1, 1), "create"), "baseline", r.create);
    rec.add(vsGo(deleteRow(1, 1), "delete"), "baseline", r.delete);
    return;
  }
  const k = n === cfg.tapRemoveAll ? n : Math.min(n, cfg.tapSample);
  const created = runSeedTap(bin, ["create", prefix, "0", String(n), String(cfg.uid)]).create;
  rec.add(vsGo(createRow(n, k), "create"), "baseline", lastOps(created, k));
  const deleted = runSeedTap(bin, ["delete", prefix, String(n - k), String(n)]).delete;
  rec.add(vsGo(deleteRow(n, k), "delete"), "baseline", deleted);
  if (n > k) {
    // Not timed: the seed has no batch delete; its leftovers join the shell's group and go with it.
    const lines = Array.from(
      { length: n - k },
      (_, i) => `link set dev ${prefix}${i} group ${SHELL_TAP_GROUP}`,
    );
    run("ip", ["-batch", "-"], `${lines.join("\n")}\n`);
    ipDelGroup();
  }
}

async function oursAtSize(cfg: Config, rec: Recorder, n: number): Promise<void> {
  const nl = defaultSocket();
  const name = (i: number) => `mo${i}`;
  const create = (i: number) => createPointToPointTap(name(i), HOST_IP, guestIp(i), cfg.uid, cfg.uid);
  if (n === 1) {
    const r = await rounds(cfg.tapCycles, { create: () => create(0), del: () => deleteTap(name(0)) });
    addOurs(rec, createRow(1, 1), r.create, "create");
    addOurs(rec, deleteRow(1, 1), r.del, "delete");
    return;
  }
  const all = await phase(n, create);
  rec.fact(`ours_tap_create_${n}_total_ms`, all.ops.total);
  rec.fact(`rss_mib_${n}_taps`, rssMiB());
  if (n === cfg.tapRemoveAll) {
    addOurs(rec, createRow(n, n), all, "create");
    const del = await phase(n, (i) => deleteTap(name(n - 1 - i)));
    addOurs(rec, deleteRow(n, n), del, "delete");
    await sleep(SETTLE_MS);
    for (let i = 0; i < n; i++) await create(i);
    const group = await once(() => linkDelGroup(nl, DEFAULT_TAP_GROUP));
    rec.add(groupRow(n, "one-by-one"), "ours", group);
    rec.add(groupRow(n, "group"), "ours", group);
  } else {
    const k = Math.min(n, cfg.tapSample);
    addOurs(rec, createRow(n, k), lastOps(all, k), "create");
    const del = await phase(k, (i) => deleteTap(name(n - 1 - i)));
    addOurs(rec, deleteRow(n, k), del, "delete");
    if (n > k)
      rec.add(groupRow(n - k, "group"), "ours", await once(() => linkDelGroup(nl, DEFAULT_TAP_GROUP)));
  }
  await sleep(SETTLE_MS);
}

async function shellAtSize(cfg: Config, rec: Recorder, n: number): Promise<void> {
  const name = (i: number) => `mb${i}`;
  const create = (i: number) => ipTapCreate(name(i), HOST_IP, guestIp(i), cfg.uid);
  const del = (i: number) => run("ip", ["link", "del", "dev", name(i)]);
  const fill = (from: number, to: number) =>
    ipTapBatch(
      Array.from({ length: to - from }, (_, j) => ({ name: name(from + j), guestIp: guestIp(from + j) })),
      HOST_IP,
      cfg.uid,
    );
  if (n === 1) {
    const r = await rounds(cfg.tapCycles, { create: () => create(0), del: () => del(0) });
    rec.add(createRow(1, 1), "baseline", r.create);
    rec.add(deleteRow(1, 1), "baseline", r.del);
    return;
  }
  if (n === cfg.tapRemoveAll) {
    rec.add(createRow(n, n), "baseline", await phase(n, create));
    const dels = await phase(n, (i) => del(n - 1 - i));
    rec.add(deleteRow(n, n), "baseline", dels);
    // Removing all n one by one is exactly the phase just measured.
    rec.add(groupRow(n, "one-by-one"), "baseline", dels);
    await sleep(SETTLE_MS);
    fill(0, n);
    rec.add(groupRow(n, "group"), "baseline", await once(ipDelGroup));
  } else {
    const k = Math.min(n, cfg.tapSample);
    fill(0, n - k);
    rec.add(createRow(n, k), "baseline", await phase(k, (i) => create(n - k + i)));
    rec.add(deleteRow(n, k), "baseline", await phase(k, (i) => del(n - 1 - i)));
    if (n > k) rec.add(groupRow(n - k, "group"), "baseline", await once(ipDelGroup));
  }
  await sleep(SETTLE_MS);
}

/** One run of the TAP measurements; the side that goes first alternates between runs. */
export async function tapSuite(cfg: Config, rec: Recorder, root: string): Promise<void> {
  // Leftovers of an interrupted run would make names clash.
  await linkDelGroup(defaultSocket(), DEFAULT_TAP_GROUP);
  ipDelGroup();
  goBinary = seedTapBinary(root);
  for (const n of cfg.tapSizes) {
    const sides = rec.run % 2 === 0 ? ["ours", "go", "shell"] : ["shell", "go", "ours"];
    for (const side of sides) {
      if (side === "ours") await oursAtSize(cfg, rec, n);
      else if (side === "shell") await shellAtSize(cfg, rec, n);
      else if (goBinary) {
        goAtSize(cfg, rec, goBinary, n);
        await sleep(SETTLE_MS);
      }
    }
  }
}
