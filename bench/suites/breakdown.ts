// Where the time of one TAP create and one port-mapping change goes, step by step — the same calls
// the API makes, timed one at a time. Not part of the default run: `npm run bench -- --only breakdown`.

import { existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Context, context, optionsOf, TAP_ALIAS } from "../../src/api/context.js";
import { removeIfEmpty } from "../../src/api/loopback.js";
import { parseHostInterface } from "../../src/api/portmap.js";
import { isOurTap } from "../../src/api/tap.js";
import { KernelError } from "../../src/core/errors.js";
import { validateIPv4, validatePort, validateProtocol } from "../../src/core/validate.js";
import {
  DEFAULT_TABLE,
  ensureSkeleton,
  type Mapping,
  mapOf,
  type NftApplier,
  openNft,
  renderCreateElement,
  validateMapping,
  validateTableName,
} from "../../src/firewall/index.js";
import { mappingElem } from "../../src/firewall/mapping.js";
import { activeElementPath } from "../../src/firewall/portmap.js";
import { guestMac } from "../../src/guest/index.js";
import { HostNetwork } from "../../src/host/index.js";
import {
  addPortMapping,
  bootstrap,
  DEFAULT_TAP_GROUP,
  removePortMapping,
  teardown,
} from "../../src/index.js";
import { koffi } from "../../src/kernel/ffi.js";
import { linkBrief } from "../../src/kernel/netlink/ifreq.js";
import {
  addrAdd,
  addrAddRequest,
  defaultSocket,
  linkDelGroup,
  linkGet,
  linkSet,
  linkSetRequest,
  neighAddRequest,
  routeGet,
} from "../../src/kernel/netlink/index.js";
import {
  defaultNftnlSocket,
  encodeFields,
  NFPROTO_IPV4,
  setElemAdd,
  setElemGetRaw,
  setElemTransaction,
} from "../../src/kernel/nftnl/index.js";
import { ifaceSysctlPath, sysctlGet, sysctlSet } from "../../src/kernel/sysctl.js";
import { tapClose, tapCreate, tapCreateOpen, tapPersist } from "../../src/kernel/tun.js";
import { netnsId } from "../../src/store/bootstrap-state.js";
import type { Config } from "../config.js";
import type { Recorder } from "../record.js";
import { now, sleep } from "../stats.js";
import { guestIp } from "./tap.js";

type Steps = Record<string, number[]>;

function push(steps: Steps, name: string, ms: number): void {
  steps[name] ??= [];
  steps[name].push(ms);
}

function time<T>(steps: Steps, name: string, f: () => T): T {
  const t = now();
  const r = f();
  push(steps, name, now() - t);
  return r;
}

async function timeAsync<T>(steps: Steps, name: string, f: () => Promise<T>): Promise<T> {
  const t = now();
  const r = await f();
  push(steps, name, now() - t);
  return r;
}

function report(title: string, steps: Steps, rec: Recorder, prefix: string): void {
  console.log(title);
  const width = Math.max(44, ...Object.keys(steps).map((name) => name.length));
  for (const [name, times] of Object.entries(steps)) {
    const s = [...times].sort((a, b) => a - b);
    const p50 = s[s.length >> 1] ?? 0;
    const p90 = s[Math.floor(s.length * 0.9)] ?? 0;
    console.log(
      `  ${name.padEnd(width)} p50 ${(p50 * 1000).toFixed(0).padStart(5)} µs   p90 ${(p90 * 1000).toFixed(0).padStart(5)} µs`,
    );
    rec.fact(`${prefix}.${name}.p50_us`, p50 * 1000);
  }
}

/** libnftables called on the event loop itself (no thread-pool hop), to separate the two costs. */
function syncNft(): { run(cmd: string): void; close(): void } {
  const lib = koffi.load("libnftables.so.1");
  const ctxType = koffi.pointer(koffi.opaque());
  const ctxNew = lib.func("nft_ctx_new", ctxType, ["uint32_t"]);
  const ctxFree = lib.func("nft_ctx_free", "void", [ctxType]);
  const bufferOutput = lib.func("nft_ctx_buffer_output", "int", [ctxType]);
  const bufferError = lib.func("nft_ctx_buffer_error", "int", [ctxType]);
  const runCmd = lib.func("nft_run_cmd_from_buffer", "int", [ctxType, "const char *"]);
  const ctx = ctxNew(0);
  bufferOutput(ctx);
  bufferError(ctx);
  return {
    run(cmd: string) {
      if (runCmd(ctx, cmd) !== 0) throw new Error(`nft refused: ${cmd}`);
    },
    close: () => ctxFree(ctx),
  };
}

/** Per-step times of TAP creation and of a mapping's add and remove. */
export async function breakdownSuite(cfg: Config, rec: Recorder): Promise<void> {
  const nl = defaultSocket();
  const n = Math.max(...cfg.tapSizes.filter((s) => s <= 200));
  const tap: Steps = {};
  for (let i = 0; i < n; i++) {
    // The steps of createPointToPointTap (api/tap.ts makeTap), in its order.
    const name = `bd${i}`;
    const t0 = now();
    const fd = time(tap, "1 open+TUNSETIFF+OWNER+GROUP", () =>
      tapCreateOpen({ name, uid: cfg.uid, gid: cfg.uid }),
    );
    const link = time(tap, "2 SIOCGIFINDEX+HWADDR+MTU (ioctls)", () => linkBrief(nl, name));
    time(tap, "3 sysctl disable_ipv6", () => sysctlSet(ifaceSysctlPath("ipv6", name, "disable_ipv6"), "1"));
    await timeAsync(tap, "4+5 RTM_NEWLINK alias+group+up, RTM_NEWADDR, RTM_NEWNEIGH: one datagram", () =>
      nl.requestAll([
        linkSetRequest(link.index, { alias: "microvm-net", group: DEFAULT_TAP_GROUP, up: true }),
        addrAddRequest({ index: link.index, local: "10.200.0.1", prefix: 32, peer: guestIp(i) }),
        neighAddRequest({ index: link.index, ip: guestIp(i), mac: guestMac(guestIp(i)) }),
      ]),
    );
    time(tap, "6 TUNSETPERSIST", () => tapPersist(fd, name));
    time(tap, "7 close (tun_detach: synchronize_net)", () => tapClose(fd));
    push(tap, "= sum of the steps", now() - t0);
    // For comparison: what the ifindex/MAC/MTU cost as a netlink round trip (not part of the sum).
    await timeAsync(tap, "(RTM_GETLINK of the same TAP, not used)", () => linkGet(nl, link.index));
  }
  report(`TAP create, ${n} TAPs, per step:`, tap, rec, "breakdown.tap");
  await linkDelGroup(nl, DEFAULT_TAP_GROUP);
  await sleep(300);

  await portmapBreakdown(cfg, rec);
  await hostBreakdown(cfg, rec);
}

/** HostNetwork attach / detach per step, read through its step hooks (time since the previous step). */
async function hostBreakdown(cfg: Config, rec: Recorder): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "mvnet-bench-"));
  const steps: Steps = {};
  let last = now();
  const host = await HostNetwork.open({
    statePath: join(dir, "state.db"),
    hooks: {
      step(step) {
        const t = now();
        push(steps, step, t - last);
        last = t;
      },
    },
  });
  await bootstrap();
  try {
    const n = cfg.mapSample;
    for (let i = 0; i < n; i++) {
      last = now();
      const t0 = last;
      await host.attach(`bd-vm-${i}`, { uid: cfg.uid, gid: cfg.uid, publish: ["80"] });
      push(steps, "= attach total", now() - t0);
    }
    for (let i = 0; i < n; i++) {
      last = now();
      const t0 = last;
      await host.detach(`bd-vm-${i}`);
      push(steps, "= detach total", now() - t0);
    }
    report(`HostNetwork, ${n} VMs, per step (time since the previous step):`, steps, rec, "breakdown.host");
  } finally {
    await host.close();
    await teardown();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One TAP of ours routes every timed guest (its peer is 10.201.0.0/16), so each add finds a TAP. */
const PM_TAP = "bdpm";
const PM_PEER = "10.201.0.0";
/** The guest of timed mapping j: each its own, so each add is its guest's first loopback mapping. */
const pmGuest = (j: number) => `10.201.${(j + 2) >> 8}.${(j + 2) & 255}`;
/** Host ports: timed mappings from 40000, the guest's second mapping from 45000 (background: 1…size). */
const PM_PORT = 40000;
const PM_SECOND_PORT = 45000;

/**
 * The rows, in the order of the path (api/portmap.ts → firewall/portmap.ts → api/loopback.ts). A
 * step inside a private function is timed through the public pieces it is made of; the label names
 * the private function. Numbered rows are the path of a new mapping (add) or a guest's last one
 * (remove); `a`/`b`/`c` rows are the branches taken instead.
 */
const PM = {
  add1: "add 1 toMapping+context+validateMapping (pieces)",
  add2: "add 2 ensureSkeleton (cached per applier)",
  add3: "add 3 addRaw: setElemAdd create/EXCL, 1 batch",
  add4: "add 4 allowLoopbackTo: mkdir guest dir, write record",
  add5: "add 5 tapOf: RTM_GETROUTE guest",
  add6: "add 6 tapOf: RTM_GETLINK oif, isOurTap",
  add7: "add 7 allowLoopbackTo: sysctl route_localnet=1",
  addSum: "= add steps 1-7, sum",
  addCall: "= addPortMapping, whole call",
  add3a: "add 3a addRaw, key present: create/EXCL -> EEXIST",
  add3bSame: "add 3b addRaw, same guest: add identical (no-op)",
  add3bOther: "add 3b addRaw, other guest: add -> EEXIST",
  add3cOther: "add 3c addRaw, other guest: GETSETELEM owner",
  add4a: "add 4a allowLoopbackTo, guest recorded: write record only",
  rm1: "remove 1 toMapping+context+validateMapping (pieces)",
  rm2: "remove 2 removeRaw: setElemGetRaw + compare value",
  rm3: "remove 3 removeRaw: setElemTransaction add+delete",
  rm4: "remove 4 releaseLoopback: unlink record, rmdir dirs",
  rm5: "remove 5 tapOf: RTM_GETROUTE guest",
  rm6: "remove 6 tapOf: RTM_GETLINK oif, isOurTap",
  rm7: "remove 7 releaseLoopback: sysctl read, route_localnet=0",
  rmSum: "= remove steps 1-7, sum",
  rmCall: "= removePortMapping, whole call",
  rm4a: "remove 4a releaseLoopback, guest keeps one: unlink, rmdir ENOTEMPTY",
  oldCreate: "(old path, comparison) libnftables create element, on the loop",
} as const;

function errnoOf(e: unknown): string | undefined {
  return e instanceof KernelError ? e.code : undefined;
}

/** Runs `f`, which must fail with `errno` (the branch being timed); anything else stops the bench. */
function expectErrno(errno: string, f: () => void): void {
  try {
    f();
  } catch (e) {
    if (errnoOf(e) === errno) return;
    throw e;
  }
  throw new Error(`expected ${errno}, the kernel accepted`);
}

/**
 * What addPortMapping / removePortMapping do before the kernel: toMapping's validators (private, so
 * its public pieces), context(), the applier, and addMapping / removeMapping's own checks.
 */
async function checksAndContext(
  j: number,
  opts: { nft: NftApplier },
): Promise<{ ctx: Context; mapping: Mapping; applier: NftApplier }> {
  const mapping: Mapping = {
    protocol: validateProtocol("tcp"),
    host: parseHostInterface(""),
    hostPort: validatePort(PM_PORT + j, "hostPort"),
    guestIp: validateIPv4(pmGuest(j), "guestIp"),
    guestPort: validatePort(80, "guestPort"),
  };
  const ctx = context(optionsOf(opts));
  const applier = await ctx.nft();
  validateMapping(mapping);
  validateTableName(ctx.table);
  return { ctx, mapping, applier };
}

/**
 * A mapping's add and remove, step by step, as the product does them now (our nf_tables netlink
 * messages, kernel/nftnl), at 0 and the largest number of existing mappings; the whole calls for the
 * same mappings; and libnftables' `create element` for comparison with the old path.
 */
async function portmapBreakdown(cfg: Config, rec: Recorder): Promise<void> {
  const nl = defaultSocket();
  const nft = await openNft();
  const direct = syncNft();
  const opts = { nft };
  const k = cfg.mapSample;
  const m = (j: number, guest = pmGuest(j), port = PM_PORT + j): Mapping => ({
    protocol: "tcp",
    host: { kind: "any" },
    hostPort: port,
    guestIp: guest,
    guestPort: 80,
  });
  try {
    if (activeElementPath() !== "netlink") throw new Error("the nf_tables netlink socket did not open");
    for (const size of [0, Math.max(...cfg.mapSizes)]) {
      await teardown(opts);
      await bootstrap(opts);
      tapCreate({ name: PM_TAP, uid: cfg.uid, gid: cfg.uid });
      const link = await linkGet(nl, PM_TAP);
      if (!link) throw new Error(`${PM_TAP} vanished`);
      await linkSet(nl, link.index, { alias: TAP_ALIAS, group: DEFAULT_TAP_GROUP, up: true });
      await addrAdd(nl, { index: link.index, local: "10.200.0.1", prefix: 16, peer: PM_PEER });
      if (size > 0) {
        const el = Array.from({ length: size }, (_, i) => `tcp . ${i + 1} : ${guestIp(i)} . 80`);
        await nft.run(`add element ip ${DEFAULT_TABLE} pm_any { ${el.join(", ")} }\n`);
      }
      const steps: Steps = Object.fromEntries(Object.values(PM).map((name) => [name, []]));
      const records = (ctx: Context, guest: string) => join(ctx.stateDir, `localnet-${netnsId()}`, guest);

      // addPortMapping, step by step: each mapping to its own guest (its first loopback mapping).
      for (let j = 0; j < k; j++) {
        const t0 = now();
        const { ctx, mapping, applier } = await timeAsync(steps, PM.add1, () => checksAndContext(j, opts));
        await timeAsync(steps, PM.add2, () => ensureSkeleton(applier, ctx.table));
        const set = { family: NFPROTO_IPV4, table: ctx.table, set: mapOf(mapping.host) };
        time(steps, PM.add3, () =>
          setElemAdd(defaultNftnlSocket(), set, [mappingElem(mapping)], { exclusive: true }),
        );
        const guestDir = records(ctx, mapping.guestIp);
        time(steps, PM.add4, () => {
          if (existsSync(guestDir)) throw new Error(`${guestDir} exists before its guest's first mapping`);
          mkdirSync(guestDir, { recursive: true, mode: 0o755 });
          writeFileSync(join(guestDir, `tcp-any-${mapping.hostPort}`), "");
        });
        const route = await timeAsync(steps, PM.add5, () => routeGet(nl, mapping.guestIp));
        const tap = await timeAsync(steps, PM.add6, async () => {
          const l = await linkGet(nl, route.oif ?? 0);
          return l && isOurTap(l) ? l.name : undefined;
        });
        if (tap !== PM_TAP) throw new Error(`${mapping.guestIp} is not routed through ${PM_TAP}`);
        time(steps, PM.add7, () => sysctlSet(ifaceSysctlPath("ipv4", tap, "route_localnet"), "1"));
        push(steps, PM.addSum, now() - t0);

        // The branches: the same key again, from the same guest and from another one.
        const sock = defaultNftnlSocket();
        const other = mappingElem(m(j, "10.202.0.2"));
        time(steps, PM.add3a, () =>
          expectErrno("EEXIST", () => setElemAdd(sock, set, [mappingElem(mapping)], { exclusive: true })),
        );
        time(steps, PM.add3bSame, () => setElemAdd(sock, set, [mappingElem(mapping)]));
        time(steps, PM.add3bOther, () => expectErrno("EEXIST", () => setElemAdd(sock, set, [other])));
        const owner = time(steps, PM.add3cOther, () => setElemGetRaw(sock, set, other.key));
        if (!owner?.equals(encodeFields(mappingElem(mapping).data ?? [])))
          throw new Error("GETSETELEM did not return the owner");
        // A second mapping of the same guest: its record only (the element is put in place untimed).
        const second = m(j, mapping.guestIp, PM_SECOND_PORT + j);
        setElemAdd(sock, set, [mappingElem(second)], { exclusive: true });
        time(steps, PM.add4a, () => {
          if (!(existsSync(guestDir) && lstatSync(guestDir).isDirectory())) throw new Error("no record dir");
          writeFileSync(join(guestDir, `tcp-any-${second.hostPort}`), "");
        });
      }

      // removePortMapping, step by step: the second mapping first, so the timed one is the guest's last.
      for (let j = 0; j < k; j++) {
        const sock = defaultNftnlSocket();
        const second = m(j, pmGuest(j), PM_SECOND_PORT + j);
        const secondElem = mappingElem(second);
        const set = { family: NFPROTO_IPV4, table: DEFAULT_TABLE, set: mapOf(second.host) };
        setElemTransaction(sock, [
          { op: "add", set, elems: [secondElem] },
          { op: "delete", set, elems: [{ key: secondElem.key }] },
        ]);
        const ctx0 = context(optionsOf(opts));
        const dir0 = records(ctx0, second.guestIp);
        const kept = time(steps, PM.rm4a, () => {
          rmSync(join(dir0, `tcp-any-${second.hostPort}`), { force: true });
          return !removeIfEmpty(dir0);
        });
        if (!kept) throw new Error(`${dir0} went with the guest's second mapping`);

        const t0 = now();
        const { ctx, mapping } = await timeAsync(steps, PM.rm1, () => checksAndContext(j, opts));
        const { key, data = [] } = mappingElem(mapping);
        const ours = time(steps, PM.rm2, () => {
          const current = setElemGetRaw(defaultNftnlSocket(), set, key);
          return current?.equals(encodeFields(data)) === true;
        });
        if (!ours) throw new Error(`the element of ${mapping.hostPort} is not there`);
        time(steps, PM.rm3, () =>
          setElemTransaction(defaultNftnlSocket(), [
            { op: "add", set, elems: [{ key, data }] },
            { op: "delete", set, elems: [{ key }] },
          ]),
        );
        const guestDir = records(ctx, mapping.guestIp);
        const last = time(steps, PM.rm4, () => {
          rmSync(join(guestDir, `tcp-any-${mapping.hostPort}`), { force: true });
          if (!removeIfEmpty(guestDir)) return false;
          removeIfEmpty(join(ctx.stateDir, `localnet-${netnsId()}`));
          return true;
        });
        if (!last) throw new Error(`${guestDir} still holds records`);
        const route = await timeAsync(steps, PM.rm5, () => routeGet(nl, mapping.guestIp));
        const tap = await timeAsync(steps, PM.rm6, async () => {
          const l = await linkGet(nl, route.oif ?? 0);
          return l && isOurTap(l) ? l.name : undefined;
        });
        if (tap !== PM_TAP) throw new Error(`${mapping.guestIp} is not routed through ${PM_TAP}`);
        time(steps, PM.rm7, () => {
          const path = ifaceSysctlPath("ipv4", tap, "route_localnet");
          if (sysctlGet(path) !== "0") sysctlSet(path, "0");
          if (existsSync(guestDir)) sysctlSet(path, "1");
        });
        push(steps, PM.rmSum, now() - t0);
      }

      // The whole calls, for the same mappings (all gone again), to compare with the sums.
      for (let j = 0; j < k; j++) {
        await timeAsync(steps, PM.addCall, () =>
          addPortMapping("", PM_PORT + j, pmGuest(j), 80, "tcp", opts),
        );
      }
      for (let j = 0; j < k; j++) {
        const removed = await timeAsync(steps, PM.rmCall, () =>
          removePortMapping("", PM_PORT + j, pmGuest(j), 80, "tcp", opts),
        );
        if (!removed) throw new Error(`removePortMapping found no mapping for port ${PM_PORT + j}`);
      }

      for (let j = 0; j < k; j++) {
        time(steps, PM.oldCreate, () => direct.run(renderCreateElement(DEFAULT_TABLE, m(j))));
      }
      report(
        `port mapping, ${size} existing, per step (our nf_tables netlink; each mapping to its own guest behind our TAP):`,
        steps,
        rec,
        `breakdown.portmap.${size}`,
      );
      await teardown(opts);
      await linkDelGroup(nl, DEFAULT_TAP_GROUP);
    }
  } finally {
    direct.close();
    nft.close();
  }
  console.log(
    "  (not a step: after 4 ms of back-to-back changes a call first yields one loop turn, portmap.ts yieldIfHeld)",
  );
}
