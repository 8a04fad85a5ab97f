// Where the time of one TAP create and one port-mapping change goes, step by step — the same calls
// the API makes, timed one at a time. Not part of the default run: `npm run bench -- --only breakdown`.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  openNft,
  renderCreateElement,
  renderProbeAbsent,
  renderRemoveElement,
} from "../../src/firewall/index.js";
import { HostNetwork } from "../../src/host/index.js";
import { bootstrap, DEFAULT_TAP_GROUP, teardown } from "../../src/index.js";
import { koffi } from "../../src/kernel/ffi.js";
import { linkBrief } from "../../src/kernel/netlink/ifreq.js";
import {
  addrAdd,
  defaultSocket,
  linkDelGroup,
  linkGet,
  linkSet,
  routeGet,
} from "../../src/kernel/netlink/index.js";
import { ifaceSysctlPath, sysctlSet } from "../../src/kernel/sysctl.js";
import { tapClose, tapCreate, tapCreateOpen, tapPersist } from "../../src/kernel/tun.js";
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
  for (const [name, times] of Object.entries(steps)) {
    const s = [...times].sort((a, b) => a - b);
    const p50 = s[s.length >> 1] ?? 0;
    const p90 = s[Math.floor(s.length * 0.9)] ?? 0;
    console.log(
      `  ${name.padEnd(44)} p50 ${(p50 * 1000).toFixed(0).padStart(5)} µs   p90 ${(p90 * 1000).toFixed(0).padStart(5)} µs`,
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
    await timeAsync(tap, "4+5 RTM_NEWLINK alias+group+up, RTM_NEWADDR", () =>
      Promise.all([
        linkSet(nl, link.index, { alias: "microvm-net", group: DEFAULT_TAP_GROUP, up: true }),
        addrAdd(nl, { index: link.index, local: "10.200.0.1", prefix: 32, peer: guestIp(i) }),
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

  const nft = await openNft();
  const direct = syncNft();
  const guest = guestIp(60000);
  const tapName = "bdpm";
  try {
    for (const size of [0, Math.max(...cfg.mapSizes)]) {
      await teardown({ nft });
      await bootstrap({ nft });
      tapCreate({ name: tapName, uid: cfg.uid, gid: cfg.uid });
      const link = await linkGet(nl, tapName);
      if (!link) throw new Error(`${tapName} vanished`);
      await linkSet(nl, link.index, { alias: "microvm-net", group: DEFAULT_TAP_GROUP, up: true });
      await addrAdd(nl, { index: link.index, local: "10.200.0.1", prefix: 32, peer: guest });
      if (size > 0) {
        const el = Array.from({ length: size }, (_, i) => `tcp . ${i + 1} : ${guestIp(i)} . 80`);
        await nft.run(`add element ip microvm_net pm_any { ${el.join(", ")} }\n`);
      }
      const m = (j: number) => ({
        protocol: "tcp" as const,
        host: { kind: "any" as const },
        hostPort: 40000 + j,
        guestIp: guest,
        guestPort: 80,
      });
      const steps: Steps = {};
      const k = cfg.mapSample;
      for (let j = 0; j < k; j++) {
        await timeAsync(steps, "add 1 nft create element (applier, pool)", () =>
          nft.run(renderCreateElement("microvm_net", m(j))),
        );
        const route = await timeAsync(steps, "add 2 RTM_GETROUTE guest", () => routeGet(nl, guest));
        const l = await timeAsync(steps, "add 3 RTM_GETLINK oif", () => linkGet(nl, route.oif ?? 0));
        time(steps, "add 4 sysctl route_localnet", () =>
          sysctlSet(ifaceSysctlPath("ipv4", l?.name ?? tapName, "route_localnet"), "1"),
        );
      }
      for (let j = 0; j < k; j++) {
        await timeAsync(steps, "remove 1 nft create+delete probe (fails)", () =>
          nft.run(renderProbeAbsent("microvm_net", m(j))).catch(() => undefined),
        );
        await timeAsync(steps, "remove 2 nft add+delete element", () =>
          nft.run(renderRemoveElement("microvm_net", m(j))),
        );
      }
      for (let j = 0; j < k; j++) {
        time(steps, "libnftables create, on the loop (no pool)", () =>
          direct.run(renderCreateElement("microvm_net", m(j))),
        );
      }
      report(`port mapping, ${size} existing, per step:`, steps, rec, `breakdown.portmap.${size}`);
      await teardown({ nft });
      await linkDelGroup(nl, DEFAULT_TAP_GROUP);
    }
  } finally {
    direct.close();
    nft.close();
  }
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
