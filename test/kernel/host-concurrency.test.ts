// Two processes, each attaching 100 VMs concurrently against the same state database, get disjoint
// addresses, ports, TAP names and MACs, and the kernel holds exactly what the records say.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, expect, it } from "vitest";
import { closeShared } from "../../src/api/context.js";
import { type Attachment, HostNetwork } from "../../src/host/index.js";
import { listPortMappings } from "../../src/index.js";
import { ipJson, kernelDescribe } from "../helpers/kernel.js";

const root = new URL("../..", import.meta.url).pathname;
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const N = 100;

kernelDescribe("two processes × 100 concurrent attaches", () => {
  afterAll(async () => {
    await closeShared();
  });

  it("hand out disjoint addresses, ports, TAP names and MACs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mvnet-conc-"));
    const db = join(dir, "state.db");
    const barrier = { dir: mkdtempSync(join(dir, "barrier-")), count: 2 };
    try {
      const run = async (prefix: string) => {
        const job = {
          db,
          op: "attach",
          concurrent: true,
          barrier,
          vmIds: Array.from({ length: N }, (_, i) => `${prefix}-${i}`),
          options: { publish: ["80", "53/udp"] },
        };
        const { stdout } = await promisify(execFile)(
          process.execPath,
          ["--import", tsxLoader, join(root, "test", "helpers", "host-child.ts"), JSON.stringify(job)],
          { cwd: root, maxBuffer: 64 * 1024 * 1024 },
        );
        const out = JSON.parse(stdout) as {
          ok: boolean;
          results: Attachment[];
          error?: unknown;
          started: number;
          ended: number;
        };
        expect(out.error).toBeUndefined();
        return out;
      };
      const [pa, pb] = await Promise.all([run("p"), run("q")]);
      // Really concurrent: each process was attaching while the other was.
      expect(pa.started).toBeLessThan(pb.ended);
      expect(pb.started).toBeLessThan(pa.ended);
      const [a, b] = [pa.results, pb.results];
      const all = [...a, ...b];
      expect(all).toHaveLength(2 * N);
      for (const k of ["guestIp", "guestMac", "tap"] as const)
        expect(new Set(all.map((x) => x[k])).size).toBe(2 * N);
      const ports = all.flatMap((x) => x.ports.map((p) => `${p.protocol}/${p.hostPort}`));
      expect(ports).toHaveLength(4 * N);
      expect(new Set(ports).size).toBe(4 * N);
      // The kernel agrees with the records.
      const hn = await HostNetwork.open({ statePath: db });
      try {
        expect(hn.list()).toHaveLength(2 * N);
        const taps = ipJson<Array<{ ifname: string; linkinfo?: { info_kind: string } }>>("-d", "link", "show")
          .filter((l) => l.linkinfo?.info_kind === "tun")
          .map((l) => l.ifname)
          .sort();
        expect(taps).toEqual(all.map((x) => x.tap).sort());
        expect(await listPortMappings()).toHaveLength(4 * N);
        expect(await hn.reconcile()).toMatchObject({
          rolledBack: [],
          recreatedTaps: [],
          removedTaps: [],
          addedMappings: 0,
        });
        expect((await hn.detachMany(all.map((x) => x.vmId))).length).toBe(2 * N);
        expect(await listPortMappings()).toEqual([]);
      } finally {
        await hn.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
