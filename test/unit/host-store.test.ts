// Allocation against the state database (no kernel): next-fit, conflicts, persistence across a
// restart, two processes at once (C19), and MACs (C20).
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConflictError, ExhaustedError, ValidationError } from "../../src/core/errors.js";
import { allocateVm, type PortTaker } from "../../src/host/allocate.js";
import { type AttachOptions, tapNameFor } from "../../src/host/index.js";
import { normalizeAttach, subnetInfo } from "../../src/host/request.js";
import { HostState } from "../../src/store/host-state.js";
import { openStateDb, SCHEMA_VERSION } from "../../src/store/state-db.js";

const root = new URL("../..", import.meta.url).pathname;
const owner = { pid: process.pid, start: "test" };
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

let dir: string;
let state: HostState;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "mvnet-store-"));
  state = HostState.open(join(dir, "state.db"));
});
afterEach(() => {
  state.close();
  rmSync(dir, { recursive: true, force: true });
});

const free: PortTaker = () => 1;
function alloc(
  vmId: string,
  o: AttachOptions = {},
  opts: { subnet?: string; ports?: number[]; take?: PortTaker; st?: HostState } = {},
) {
  const st = opts.st ?? state;
  return st.write(() =>
    allocateVm(
      st,
      subnetInfo(opts.subnet ?? "10.200.0.0/16"),
      normalizeAttach(vmId, o),
      opts.ports ?? range(30000, 32767),
      owner,
      opts.take ?? free,
      () => {},
    ),
  ).record;
}

describe("state database", () => {
  it("is in WAL mode with the current schema", () => {
    expect(state.db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(state.db.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
  });

  it("keeps a relative path as the absolute one it named when opened (a later chdir changes nothing)", () => {
    const cwd = process.cwd();
    try {
      process.chdir(dir);
      const rel = HostState.open("rel.db");
      process.chdir(tmpdir());
      expect(rel.path).toBe(join(dir, "rel.db"));
      rel.close();
    } finally {
      process.chdir(cwd);
    }
  });

  it("refuses a database written by a newer version", () => {
    state.db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    expect(() => openStateDb(state.path)).toThrow(/newer/);
  });
});

describe("addresses", () => {
  it("are next-fit: a released address comes back only after the cursor went round", () => {
    const s = "10.9.0.0/29"; // .2 … .6
    const ips = ["a", "b", "c"].map((v) => alloc(v, {}, { subnet: s }).guestIp);
    expect(ips).toEqual(["10.9.0.2", "10.9.0.3", "10.9.0.4"]);
    state.delete("b");
    expect(alloc("d", {}, { subnet: s }).guestIp).toBe("10.9.0.5");
    expect(alloc("e", {}, { subnet: s }).guestIp).toBe("10.9.0.6");
    expect(alloc("f", {}, { subnet: s }).guestIp).toBe("10.9.0.3"); // wrapped
    expect(() => alloc("g", {}, { subnet: s })).toThrow(ExhaustedError);
  });

  it("a VM already recorded (by another process) is a conflict, checked inside the transaction", () => {
    alloc("a");
    expect(() => alloc("a")).toThrow(ConflictError);
    expect(state.count()).toBe(1);
  });

  it("honour a requested address, refusing taken, reserved and outside ones", () => {
    expect(alloc("a", { guestIp: "10.200.7.7" }).guestIp).toBe("10.200.7.7");
    expect(() => alloc("b", { guestIp: "10.200.7.7" })).toThrow(ConflictError);
    for (const bad of ["10.200.0.0", "10.200.0.1", "10.200.255.255", "10.201.0.2"]) {
      expect(() => alloc("c", { guestIp: bad })).toThrow(ValidationError);
    }
    expect(state.count()).toBe(1);
  });
});

describe("ports", () => {
  it("C17: an ephemeral port released is not handed out again at once (next-fit)", () => {
    const first = alloc("a", { publish: ["80"] }).ports[0]?.hostPort;
    state.delete("a");
    const second = alloc("b", { publish: ["80"] }).ports[0]?.hostPort;
    expect(first).toBe(30000);
    expect(second).toBe(30001);
    // tcp and udp are separate spaces with their own cursor.
    expect(alloc("c", { publish: ["53/udp"] }).ports[0]?.hostPort).toBe(30000);
  });

  it("an exact port taken by another VM is a conflict naming it; bind(2) clash rules apply", () => {
    alloc("a", { publish: ["8080:80"] });
    expect(() => alloc("b", { publish: ["8080:81"] })).toThrow(/VM "a"/);
    expect(() => alloc("b", { publish: ["127.0.0.1:8080:81"] })).toThrow(ConflictError);
    expect(alloc("b", { publish: ["8080:80/udp"] }).ports[0]?.hostPort).toBe(8080);
    alloc("c", { publish: ["127.0.0.2:9090:80"] });
    expect(alloc("d", { publish: ["127.0.0.3:9090:80"] }).ports[0]?.hostPort).toBe(9090);
  });

  it("ports held by another process on the host are skipped (ephemeral) or refused (exact)", () => {
    const busy = new Set([30000, 30001, 8080]);
    const take: PortTaker = (_p, _ip, port) => (busy.has(port) ? undefined : 1);
    expect(alloc("a", { publish: ["80"] }, { take }).ports[0]?.hostPort).toBe(30002);
    expect(() => alloc("b", { publish: ["8080:80"] }, { take })).toThrow(/another process/);
    expect(() => alloc("c", { publish: ["80"] }, { take: () => undefined })).toThrow(ExhaustedError);
    expect(state.count()).toBe(1); // failed allocations left nothing
  });

  it("a host range gives the first free port of the range; an exhausted range says so", () => {
    alloc("a", { publish: ["8000:80"] });
    expect(
      alloc("b", { publish: [{ guestPort: 80, hostPort: { start: 8000, end: 8001 } }] }).ports[0]?.hostPort,
    ).toBe(8001);
    expect(() => alloc("c", { publish: [{ guestPort: 80, hostPort: { start: 8000, end: 8001 } }] })).toThrow(
      /8000-8001/,
    );
  });

  it("one VM's exact ports are never given to its own ephemeral ones", () => {
    const r = alloc("a", { publish: ["80", "30000:81"] });
    expect(r.ports.map((p) => [p.guestPort, p.hostPort])).toEqual([
      [81, 30000],
      [80, 30001],
    ]);
  });
});

describe("TAP names", () => {
  it("a name another VM holds is never reused: the VM gets its next candidate", () => {
    alloc("x");
    state.setTap("x", tapNameFor("y")); // as if x's name had collided with y's
    expect(alloc("y").tap).toBe(tapNameFor("y", 1));
  });
});

describe("records", () => {
  it("survive a restart: reopened, the same VMs are there, and nothing is handed out twice", () => {
    const a = alloc("a", { publish: ["80"], mtu: 1400, uid: 1234, gid: 1234, dns: ["192.0.2.53"] });
    state.close();
    state = HostState.open(join(dir, "state.db"));
    const back = state.get("a");
    expect(back).toEqual({ ...a, owner: owner });
    const b = alloc("b", { publish: ["80"] });
    expect(b.guestIp).not.toBe(a.guestIp);
    expect(b.ports[0]?.hostPort).not.toBe(a.ports[0]?.hostPort);
    expect(b.tap).not.toBe(a.tap);
  });

  it("C20: 1000 VMs get distinct, locally administered, unicast MACs, stable for the same address", () => {
    const recs = range(1, 1000).map((i) => alloc(`vm-${i}`));
    const macs = recs.map((r) => r.guestMac);
    expect(new Set(macs).size).toBe(1000);
    for (const m of macs) {
      const first = Number.parseInt(m.slice(0, 2), 16);
      expect(first & 0x02).toBe(0x02); // locally administered
      expect(first & 0x01).toBe(0); // unicast
    }
    expect(new Set(recs.map((r) => r.tap)).size).toBe(1000);
    // The same address gets the same MAC again, in a new record.
    const again = recs[41] as (typeof recs)[number];
    state.delete(again.vmId);
    expect(alloc("other", { guestIp: again.guestIp }).guestMac).toBe(again.guestMac);
  });
});

describe("C19: two processes allocating at once", () => {
  it("hand out disjoint addresses, ports, TAP names and MACs", async () => {
    const db = join(dir, "state.db");
    const run = (prefix: string) =>
      promisify(execFile)(
        join(root, "node_modules", ".bin", "tsx"),
        [join(root, "test", "helpers", "host-alloc-child.ts"), db, prefix, "32", "40000", "40099"],
        { cwd: root },
      );
    type Out = { out: Array<Record<string, string | number>>; started: number; ended: number };
    const [a, b] = (await Promise.all([run("a"), run("b")])).map((r) => JSON.parse(r.stdout) as Out) as [
      Out,
      Out,
    ];
    // Both were allocating at the same time (each sleeps between its transactions, so they interleave).
    expect(a.started).toBeLessThan(b.ended);
    expect(b.started).toBeLessThan(a.ended);
    const all = [...a.out, ...b.out];
    expect(all).toHaveLength(64);
    for (const k of ["ip", "mac", "tap", "port"]) expect(new Set(all.map((x) => x[k])).size).toBe(64);
    expect(state.count()).toBe(64);
  }, 30_000);
});
