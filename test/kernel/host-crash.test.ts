// C12: the process is killed (SIGKILL) at each step of an attach or a detach; a new process runs
// reconcile() and nothing is leaked (TAP, neighbour entry, map element, port, record) and nothing is
// allocated twice. The kernel is read back with `ip -j` and `nft -j`, the record with a new HostNetwork.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { closeShared } from "../../src/api/context.js";
import { type AttachOptions, HostNetwork, type Step } from "../../src/host/index.js";
import { listPortMappings } from "../../src/index.js";
import { isPortFree } from "../../src/kernel/probe.js";
import { ipJson, kernelDescribe } from "../helpers/kernel.js";

const root = new URL("../..", import.meta.url).pathname;
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
const OPTIONS: AttachOptions = { publish: ["8080:80", "53/udp"], mtu: 1400 };

let dir: string;
const db = () => join(dir, "state.db");

/** Runs one job in a child process; resolves with how it ended. */
async function child(job: Record<string, unknown>): Promise<{ signal?: string; out?: unknown }> {
  try {
    // node itself (not the tsx wrapper, which would turn the signal into an exit code).
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        "--import",
        tsxLoader,
        join(root, "test", "helpers", "host-child.ts"),
        JSON.stringify({ db: db(), ...job }),
      ],
      { cwd: root },
    );
    return { out: JSON.parse(stdout) };
  } catch (e) {
    return { signal: (e as { signal?: string }).signal ?? "none" };
  }
}

const taps = () =>
  ipJson<Array<{ ifname: string; linkinfo?: { info_kind: string } }>>("-d", "link", "show")
    .filter((l) => l.linkinfo?.info_kind === "tun")
    .map((l) => l.ifname)
    .sort();
const permanentNeighbours = () =>
  ipJson<Array<{ dst: string; state: string[] }>>("neigh", "show")
    .filter((n) => n.state.includes("PERMANENT"))
    .map((n) => n.dst)
    .sort();
const elements = async () =>
  (await listPortMappings()).map((m) => `${m.protocol}/${m.hostPort}->${m.guestIp}:${m.guestPort}`).sort();

/** The kernel holds exactly what the records say, and the records never share anything. */
async function expectKernelMatchesRecords(hn: HostNetwork): Promise<void> {
  const all = hn.list();
  expect(all.every((a) => a.state === "attached")).toBe(true);
  expect(taps()).toEqual(all.map((a) => a.tap).sort());
  expect(permanentNeighbours()).toEqual(all.map((a) => a.guestIp).sort());
  expect(await elements()).toEqual(
    all.flatMap((a) => a.ports.map((p) => `${p.protocol}/${p.hostPort}->${a.guestIp}:${p.guestPort}`)).sort(),
  );
  for (const k of ["guestIp", "guestMac", "tap"] as const)
    expect(new Set(all.map((a) => a[k])).size).toBe(all.length);
  const ports = all.flatMap((a) => a.ports.map((p) => `${p.protocol}/${p.hostPort}`));
  expect(new Set(ports).size).toBe(ports.length);
}

kernelDescribe("C12: killed at each step of an attach or a detach, then reconcile", () => {
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "mvnet-crash-"));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  afterAll(async () => {
    await closeShared();
  });

  describe.each(["allocated", "tap", "neighbour", "mappings"] as Step[])("attach killed after %s", (step) => {
    it("reconcile rolls it back; the VM attaches again; nothing is allocated twice", async () => {
      // Another VM attached and alive in the record, which must survive untouched.
      expect(
        (await child({ op: "attach", vmIds: ["vm-keep"], options: { publish: ["9090:90"] } })).out,
      ).toMatchObject({
        ok: true,
      });
      expect(await child({ op: "attach", vmIds: ["vm-c"], options: OPTIONS, killAt: step })).toEqual({
        signal: "SIGKILL",
      });
      const hn = await HostNetwork.open({ statePath: db() });
      try {
        expect(hn.get("vm-c")?.state).toBe("attaching");
        const report = await hn.reconcile();
        expect(report.rolledBack).toEqual(["vm-c"]);
        expect(hn.list().map((a) => a.vmId)).toEqual(["vm-keep"]);
        await expectKernelMatchesRecords(hn);
        expect(await isPortFree("tcp", "0.0.0.0", 8080)).toBe(true);
        // Start again: the same VM and another one attach, each getting its own everything.
        await hn.attach("vm-c", OPTIONS);
        await hn.attach("vm-d", OPTIONS.publish ? { publish: ["53/udp"] } : {});
        await expectKernelMatchesRecords(hn);
        await hn.detachMany(["vm-c", "vm-d", "vm-keep"]);
        expect(taps()).toEqual([]);
      } finally {
        await hn.close();
      }
    });
  });

  it("attach killed after it was marked attached: reconcile keeps it, holds its ports again", async () => {
    expect(await child({ op: "attach", vmIds: ["vm-c"], options: OPTIONS, killAt: "attached" })).toEqual({
      signal: "SIGKILL",
    });
    const hn = await HostNetwork.open({ statePath: db() });
    try {
      const report = await hn.reconcile();
      expect(report).toMatchObject({ rolledBack: [], recreatedTaps: [], addedMappings: 0, unheldPorts: [] });
      expect(hn.get("vm-c")?.state).toBe("attached");
      await expectKernelMatchesRecords(hn);
      expect(await isPortFree("tcp", "0.0.0.0", 8080)).toBe(false);
      await hn.detach("vm-c");
    } finally {
      await hn.close();
    }
  });

  it("start again without reconcile: attaching the same VM clears the dead half-done attach first", async () => {
    await child({ op: "attach", vmIds: ["vm-c"], options: OPTIONS, killAt: "mappings" });
    const hn = await HostNetwork.open({ statePath: db() });
    try {
      const a = await hn.attach("vm-c", OPTIONS);
      expect(a.state).toBe("attached");
      await expectKernelMatchesRecords(hn);
      await hn.detach("vm-c");
    } finally {
      await hn.close();
    }
  });

  describe.each(["detach:marked", "detach:mappings", "detach:tap"] as Step[])(
    "detach killed after %s",
    (step) => {
      it("reconcile finishes the detach", async () => {
        expect((await child({ op: "attach", vmIds: ["vm-c"], options: OPTIONS })).out).toMatchObject({
          ok: true,
        });
        expect(await child({ op: "detach", vmIds: ["vm-c"], killAt: step })).toEqual({ signal: "SIGKILL" });
        const hn = await HostNetwork.open({ statePath: db() });
        try {
          expect(hn.get("vm-c")?.state).toBe("detaching");
          expect((await hn.reconcile()).finishedDetaches).toEqual(["vm-c"]);
          expect(hn.list()).toEqual([]);
          await expectKernelMatchesRecords(hn);
          expect(taps()).toEqual([]);
          expect(await elements()).toEqual([]);
        } finally {
          await hn.close();
        }
      });
    },
  );
});
