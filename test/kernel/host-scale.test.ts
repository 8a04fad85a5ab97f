// C20: 1 000 VMs attached — every guest MAC distinct, locally administered, unicast, and stable for
// the same guest address; the kernel holds 1 000 TAPs with those MACs in permanent neighbour entries.
// With MVNET_HOST_BENCH=1 it also measures attach and detach time per VM at 1, 100 and 1 000 VMs:
//   MVNET_HOST_BENCH=1 node scripts/test.mjs host-scale
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { afterAll, expect, it } from "vitest";
import { closeShared } from "../../src/api/context.js";
import { HostNetwork } from "../../src/host/index.js";
import { ipJson, kernelDescribe } from "../helpers/kernel.js";

const bench = process.env.MVNET_HOST_BENCH === "1";

function stats(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const med =
    s.length % 2
      ? (s[s.length >> 1] as number)
      : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
  return `${(s[0] as number).toFixed(2)} / ${med.toFixed(2)} / ${(s[s.length - 1] as number).toFixed(2)}`;
}

async function timed<T>(f: () => Promise<T>, into: number[]): Promise<T> {
  const t = performance.now();
  const r = await f();
  into.push(performance.now() - t);
  return r;
}

kernelDescribe("C20: 1 000 VMs", () => {
  afterAll(async () => {
    await closeShared();
  });

  it("every guest MAC is distinct, locally administered, unicast, and stable for the same address", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mvnet-scale-"));
    const hn = await HostNetwork.open({ statePath: join(dir, "state.db") });
    try {
      const attach: number[] = [];
      const all = [];
      for (let i = 0; i < 1000; i++)
        all.push(await timed(() => hn.attach(`vm-${i}`, { publish: ["80"] }), attach));
      const macs = all.map((a) => a.guestMac);
      expect(new Set(macs).size).toBe(1000);
      for (const m of macs) {
        const first = Number.parseInt(m.slice(0, 2), 16);
        expect(first & 0x02).toBe(0x02);
        expect(first & 0x01).toBe(0);
      }
      const neigh = new Map(
        ipJson<Array<{ dst: string; lladdr?: string; state: string[] }>>("neigh", "show")
          .filter((n) => n.state.includes("PERMANENT"))
          .map((n) => [n.dst, n.lladdr]),
      );
      for (const a of all) expect(neigh.get(a.guestIp)).toBe(a.guestMac);
      // Stable: the same address gets the same MAC again, in another VM, after a restart.
      const again = all[500] as (typeof all)[number];
      await hn.detach(again.vmId);
      await hn.close();
      const hn2 = await HostNetwork.open({ statePath: join(dir, "state.db") });
      expect((await hn2.attach("vm-new", { guestIp: again.guestIp })).guestMac).toBe(again.guestMac);
      const detach: number[] = [];
      await timed(() => hn2.detachMany(hn2.list().map((a) => a.vmId)), detach);
      expect(hn2.list()).toEqual([]);
      await hn2.close();
      console.log(
        `C20: attach 1000 VMs, ms per VM (min/median/max): ${stats(attach)}; detachMany of 1000: ${detach[0]?.toFixed(0)} ms`,
      );
    } finally {
      await hn.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it.runIf(bench)(
    "bench: attach and detach time per VM at 1, 100 and 1 000 VMs",
    async () => {
      const rows: string[] = [
        "VMs  | attach ms/VM min/med/max | detach ms/VM min/med/max | detachMany ms/VM",
      ];
      for (const n of [1, 100, 1000]) {
        const dir = mkdtempSync(join(tmpdir(), "mvnet-bench-"));
        const hn = await HostNetwork.open({ statePath: join(dir, "state.db") });
        try {
          const attach: number[] = [];
          const detach: number[] = [];
          // Warm up (first nftables and ctnetlink contexts, JIT), untimed.
          await hn.attach("warm-up", { publish: ["80"] });
          await hn.detach("warm-up");
          for (let i = 0; i < n; i++) await timed(() => hn.attach(`vm-${i}`, { publish: ["80"] }), attach);
          for (let i = 0; i < n; i++) await timed(() => hn.detach(`vm-${i}`), detach);
          for (let i = 0; i < n; i++) await hn.attach(`vm-${i}`, { publish: ["80"] });
          const many: number[] = [];
          await timed(() => hn.detachMany(Array.from({ length: n }, (_, i) => `vm-${i}`)), many);
          rows.push(
            `${String(n).padEnd(4)} | ${stats(attach)} | ${stats(detach)} | ${((many[0] as number) / n).toFixed(2)}`,
          );
        } finally {
          await hn.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }
      rows.push(
        `load average (1/5/15 min) at the end: ${loadavg()
          .map((x) => x.toFixed(2))
          .join(" ")}`,
      );
      console.log(rows.join("\n"));
    },
    600_000,
  );
});
