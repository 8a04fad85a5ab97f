import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_PORT_RANGE,
  type HostProbe,
  MAX_PROBE_ATTEMPTS,
  PortManager,
} from "../../src/alloc/ports.js";
import {
  ConflictError,
  ExhaustedError,
  MvnetError,
  UnsupportedError,
  ValidationError,
} from "../../src/core/errors.js";

/**
 * bind(2)'s rule for two sockets of one protocol on one port, written out independently of the
 * implementation: same address; `::` (dual-stack) against anything; `0.0.0.0` against any IPv4.
 */
function bindClash(a: string, b: string): boolean {
  const v4 = (x: string) => /^\d+\.\d+\.\d+\.\d+$/.test(x);
  if (a === b) return true;
  if (a === "::" || b === "::") return true;
  return v4(a) && v4(b) && (a === "0.0.0.0" || b === "0.0.0.0");
}

/** A host whose sockets are listed in `bound` (`proto addr port`) and whose interfaces are in `ifaces`. */
class FakeProbe implements HostProbe {
  readonly calls: string[] = [];
  readonly ifCalls: string[] = [];
  bound = new Set<string>();
  ifaces: Record<string, string[]> = { uplink0: ["192.0.2.2"] };
  gate: Promise<void> | undefined;

  async isPortFree(protocol: string, address: string, port: number): Promise<boolean> {
    this.calls.push(`${protocol} ${address} ${port}`);
    if (this.gate) await this.gate;
    for (const b of this.bound) {
      const [p, a, n] = b.split(" ");
      if (p === protocol && Number(n) === port && bindClash(a as string, address)) return false;
    }
    return true;
  }

  async interfaceAddresses(name: string): Promise<string[]> {
    this.ifCalls.push(name);
    return this.ifaces[name] ?? [];
  }
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open: () => void = () => {};
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

describe("PortManager: construction", () => {
  it("defaults to 30000-32767, below Linux's default ip_local_port_range", () => {
    expect(new PortManager().range).toEqual({ start: 30000, end: 32767 });
    expect(DEFAULT_PORT_RANGE.end).toBeLessThan(32768);
  });

  it.each([
    [0, 10, "start"],
    [10, 65536, "end"],
    [1.5, 10, "start"],
    [20, 10, "end"],
  ])("rejects range %j-%j (field %s)", (start, end, field) =>
    expect(() => new PortManager(start, end)).toThrow(expect.objectContaining({ field })),
  );
});

describe("PortManager: validation (C6)", () => {
  it.each([-1, 65536, 1.5, Number.NaN, "80" as unknown as number])(
    "port %j → ValidationError(port)",
    async (p) => {
      const probe = new FakeProbe();
      const pm = new PortManager(30000, 30010, probe);
      const err = await pm.allocate(p, "tcp", "", "vm-a").catch((e) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect(err).toMatchObject({ field: "port", code: "ERR_INVALID_PORT" });
      expect(String(err.message)).not.toMatch(/in use/);
      expect(probe.calls).toEqual([]);
    },
  );

  it('protocol "icmp" → ValidationError(protocol), even when the port is taken', async () => {
    const probe = new FakeProbe();
    const pm = new PortManager(30000, 30010, probe);
    await pm.allocate(8080, "tcp", "", "vm-a");
    await expect(pm.allocate(8080, "icmp", "", "vm-b")).rejects.toMatchObject({
      name: "ValidationError",
      field: "protocol",
    });
    expect(probe.calls).toEqual(["tcp 0.0.0.0 8080"]);
  });

  it("accepts protocol in any case", async () => {
    const pm = new PortManager(30000, 30010);
    expect(await pm.allocate(53, "UDP", "", "vm-a")).toBe(53);
    expect(pm.list()).toEqual([{ port: 53, protocol: "udp", address: "0.0.0.0", vmId: "vm-a" }]);
  });

  it.each(["", " "])("vmId %j → ValidationError(vmId)", async (vmId) => {
    await expect(new PortManager().allocate(8080, "tcp", "", vmId)).rejects.toMatchObject({ field: "vmId" });
  });

  it.each(["300.1.1.1", "1.2.3", "1::2::3", "fe80::1%eth0", "tap/0", "a-very-long-interface", "tap 0"])(
    "hostInterface %j → ValidationError(hostInterface)",
    async (h) => {
      const probe = new FakeProbe();
      await expect(new PortManager(1, 10, probe).allocate(8080, "tcp", h, "vm")).rejects.toMatchObject({
        name: "ValidationError",
        field: "hostInterface",
      });
      expect(probe.calls).toEqual([]);
      expect(probe.ifCalls).toEqual([]);
    },
  );

  it("release and isAllocated validate too", () => {
    const pm = new PortManager();
    expect(() => pm.release(0, "tcp")).toThrow(expect.objectContaining({ field: "port" }));
    expect(() => pm.release(80, "sctp")).toThrow(expect.objectContaining({ field: "protocol" }));
    expect(() => pm.isAllocated(80, "tcp", "bad/name")).toThrow(
      expect.objectContaining({ field: "hostInterface" }),
    );
  });
});

describe("PortManager: keys and bind(2) semantics", () => {
  it("C3: tcp and udp on one port are independent", async () => {
    const pm = new PortManager();
    expect(await pm.allocate(5665, "tcp", "", "vm-a")).toBe(5665);
    expect(await pm.allocate(5665, "udp", "", "vm-b")).toBe(5665);
    expect(pm.release(5665, "tcp")).toBe(true);
    expect(pm.isAllocated(5665, "udp")).toBe(true);
    expect(pm.isAllocated(5665, "tcp")).toBe(false);
    expect(pm.list()).toEqual([{ port: 5665, protocol: "udp", address: "0.0.0.0", vmId: "vm-b" }]);
  });

  it("C4: an interface name resolves to its addresses and is never formatted into one", async () => {
    const probe = new FakeProbe();
    const pm = new PortManager(30000, 30010, probe);
    expect(await pm.allocate(8080, "tcp", "uplink0", "vm-a")).toBe(8080);
    expect(probe.ifCalls).toEqual(["uplink0"]);
    expect(probe.calls).toEqual(["tcp 192.0.2.2 8080"]);
    expect(pm.list()).toEqual([
      { port: 8080, protocol: "tcp", address: "192.0.2.2", vmId: "vm-a", interface: "uplink0" },
    ]);
    expect(pm.isAllocated(8080, "tcp", "uplink0")).toBe(true);
    // "::1" is its own IPv6 address: no clash with 192.0.2.2, probed as "::1".
    expect(await pm.allocate(8080, "tcp", "::1", "vm-b")).toBe(8080);
    expect(probe.calls).toContain("tcp ::1 8080");
    // The interface's address itself, and the wildcard, clash with the interface allocation.
    await expect(pm.allocate(8080, "tcp", "192.0.2.2", "vm-c")).rejects.toThrow(/vm-a/);
    await expect(pm.allocate(8080, "tcp", "", "vm-c")).rejects.toThrow(ConflictError);
    expect(pm.release(8080, "tcp", "uplink0")).toBe(true);
    expect(await pm.allocate(8080, "tcp", "192.0.2.2", "vm-c")).toBe(8080);
  });

  it("an interface with several addresses holds the port on each", async () => {
    const probe = new FakeProbe();
    probe.ifaces.uplink0 = ["192.0.2.2", "2001:DB8::2", "fe80::1%uplink0", "192.0.2.2"];
    const pm = new PortManager(30000, 30010, probe);
    await pm.allocate(443, "tcp", "uplink0", "vm-a");
    expect(pm.list().map((r) => r.address)).toEqual(["192.0.2.2", "2001:db8::2", "fe80::1"]);
    await expect(pm.allocate(443, "tcp", "2001:db8::2", "vm-b")).rejects.toMatchObject({ owner: "vm-a" });
    expect(pm.releaseVm("vm-a")).toBe(1);
    expect(pm.list()).toEqual([]);
  });

  it("an interface name without a probe, or without addresses, is refused", async () => {
    await expect(new PortManager().allocate(80, "tcp", "uplink0", "vm")).rejects.toThrow(UnsupportedError);
    const pm = new PortManager(1, 10, new FakeProbe());
    await expect(pm.allocate(80, "tcp", "nosuch0", "vm")).rejects.toMatchObject({
      name: "ValidationError",
      field: "hostInterface",
    });
    expect(pm.list()).toEqual([]);
  });

  // [held, requested, clash?] from bind(2) on Linux with net.ipv6.bindv6only = 0.
  it.each([
    ["", "0.0.0.0", true],
    ["", "127.0.0.1", true],
    ["127.0.0.1", "", true],
    ["127.0.0.1", "127.0.0.1", true],
    ["127.0.0.1", "10.0.0.1", false],
    ["0.0.0.0", "::1", false],
    ["::1", "0.0.0.0", false],
    ["::", "127.0.0.1", true],
    ["0.0.0.0", "::", true],
    ["::", "::1", true],
    ["::1", "::0:1", true],
    ["::1", "2001:db8::1", false],
    ["::ffff:127.0.0.1", "127.0.0.1", true],
    ["127.0.0.1", "::1", false],
  ] as const)("held %j, then %j by another VM: clash=%s", async (held, requested, clash) => {
    const pm = new PortManager();
    await pm.allocate(8080, "tcp", held, "vm-a");
    const got = pm.allocate(8080, "tcp", requested, "vm-b");
    if (clash) {
      const err = await got.catch((e) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect(err.owner).toBe("vm-a");
      expect(err.message).toMatch(/"vm-a"/);
    } else {
      expect(await got).toBe(8080);
    }
    // Another protocol never clashes.
    expect(await pm.allocate(8080, "udp", requested, "vm-b")).toBe(8080);
  });

  it("the same VM asking again for the same key gets it back without a new host check", async () => {
    const probe = new FakeProbe();
    const pm = new PortManager(30000, 30010, probe);
    expect(await pm.allocate(8080, "tcp", "", "vm-a")).toBe(8080);
    expect(await pm.allocate(8080, "tcp", "0.0.0.0", "vm-a")).toBe(8080);
    expect(probe.calls).toEqual(["tcp 0.0.0.0 8080"]);
    expect(pm.list()).toHaveLength(1);
    // The same VM asking for a different, clashing key is a conflict like any other.
    await expect(pm.allocate(8080, "tcp", "127.0.0.1", "vm-a")).rejects.toMatchObject({ owner: "vm-a" });
  });

  it("a port bound by another process is refused, and nothing stays held", async () => {
    const probe = new FakeProbe();
    probe.bound.add("tcp 0.0.0.0 22");
    const pm = new PortManager(30000, 30010, probe);
    const err = await pm.allocate(22, "tcp", "127.0.0.1", "vm-a").catch((e) => e);
    expect(err).toBeInstanceOf(ConflictError);
    expect(err.owner).toBeUndefined();
    expect(err.message).toMatch(/another process/);
    expect(pm.isAllocated(22, "tcp", "127.0.0.1")).toBe(false);
    expect(await pm.allocate(22, "udp", "127.0.0.1", "vm-a")).toBe(22);
  });

  it("a probe failure propagates and rolls the reservation back", async () => {
    const boom = new Error("probe broke");
    const probe: HostProbe = {
      isPortFree: async () => {
        throw boom;
      },
      interfaceAddresses: async () => [],
    };
    const pm = new PortManager(30000, 30010, probe);
    await expect(pm.allocate(8080, "tcp", "", "vm-a")).rejects.toBe(boom);
    await expect(pm.allocate(0, "tcp", "", "vm-a")).rejects.toBe(boom);
    expect(pm.isAllocated(8080, "tcp")).toBe(false);
    expect(pm.list()).toEqual([]);
  });
});

describe("PortManager: ephemeral ports", () => {
  it("C17: next-fit; a just-released port is not handed out again at once", async () => {
    const pm = new PortManager(30000, 30010);
    const a = await pm.allocate(0, "tcp", "", "vm-a");
    expect(a).toBe(30000);
    pm.release(a, "tcp");
    expect(await pm.allocate(0, "tcp", "", "vm-b")).toBe(30001);
  });

  it("wraps around, and fails with ExhaustedError when the range is full", async () => {
    const pm = new PortManager(100, 102);
    const got = [
      await pm.allocate(0, "tcp", "", "a"),
      await pm.allocate(0, "tcp", "", "a"),
      await pm.allocate(0, "tcp", "", "a"),
    ];
    expect(got).toEqual([100, 101, 102]);
    await expect(pm.allocate(0, "tcp", "", "a")).rejects.toThrow(ExhaustedError);
    await expect(pm.allocate(0, "tcp", "", "a")).rejects.toThrow(/100-102/);
    pm.release(101, "tcp");
    expect(await pm.allocate(0, "tcp", "", "b")).toBe(101);
    // udp is a separate space with its own cursor.
    expect(await pm.allocate(0, "udp", "", "b")).toBe(100);
    expect(await pm.allocate(0, "udp", "", "b")).toBe(101);
  });

  it("skips ports held on a clashing address but not on an unrelated one", async () => {
    const pm = new PortManager(100, 103);
    await pm.allocate(100, "tcp", "127.0.0.1", "a");
    await pm.allocate(101, "tcp", "", "a");
    expect(await pm.allocate(0, "tcp", "", "b")).toBe(102);
    const pm2 = new PortManager(100, 103);
    await pm2.allocate(100, "tcp", "127.0.0.1", "a");
    expect(await pm2.allocate(0, "tcp", "10.0.0.1", "b")).toBe(100);
  });

  it("skips ports the host probe reports busy", async () => {
    const probe = new FakeProbe();
    probe.bound.add("tcp 0.0.0.0 30000");
    probe.bound.add("tcp 127.0.0.1 30001");
    const pm = new PortManager(30000, 30010, probe);
    expect(await pm.allocate(0, "tcp", "", "vm-a")).toBe(30002);
    expect(probe.calls).toEqual(["tcp 0.0.0.0 30000", "tcp 0.0.0.0 30001", "tcp 0.0.0.0 30002"]);
    expect(pm.list().map((r) => r.port)).toEqual([30002]);
  });

  it("gives up after MAX_PROBE_ATTEMPTS busy candidates", async () => {
    const probe = new FakeProbe();
    for (let p = 20000; p < 21000; p++) probe.bound.add(`tcp 0.0.0.0 ${p}`);
    const pm = new PortManager(20000, 20999, probe);
    await expect(pm.allocate(0, "tcp", "", "vm-a")).rejects.toThrow(ExhaustedError);
    expect(probe.calls).toHaveLength(MAX_PROBE_ATTEMPTS);
    expect(pm.list()).toEqual([]);
  });

  it("a requested port may lie outside the range and does not move the cursor", async () => {
    const pm = new PortManager(30000, 30010);
    expect(await pm.allocate(80, "tcp", "", "vm-a")).toBe(80);
    expect(await pm.allocate(65535, "tcp", "", "vm-a")).toBe(65535);
    expect(await pm.allocate(0, "tcp", "", "vm-a")).toBe(30000);
  });
});

describe("PortManager: release, releaseVm, list", () => {
  it("release removes exactly one key; a missing one is a no-op", async () => {
    const pm = new PortManager();
    await pm.allocate(8080, "tcp", "127.0.0.1", "vm-a");
    await pm.allocate(8080, "tcp", "10.0.0.1", "vm-a");
    expect(pm.release(8080, "tcp", "127.0.0.1")).toBe(true);
    expect(pm.release(8080, "tcp", "127.0.0.1")).toBe(false);
    expect(pm.release(8080, "udp", "10.0.0.1")).toBe(false);
    expect(pm.release(8080, "tcp")).toBe(false);
    expect(pm.list()).toEqual([{ port: 8080, protocol: "tcp", address: "10.0.0.1", vmId: "vm-a" }]);
  });

  it("release with 0.0.0.0 matches an allocation made with an empty hostInterface", async () => {
    const pm = new PortManager();
    await pm.allocate(8080, "tcp", "", "vm-a");
    expect(pm.isAllocated(8080, "tcp", "0.0.0.0")).toBe(true);
    expect(pm.release(8080, "tcp", "0.0.0.0")).toBe(true);
    expect(pm.list()).toEqual([]);
  });

  it("releaseVm releases every allocation of one VM and counts them", async () => {
    const pm = new PortManager(30000, 30010);
    await pm.allocate(0, "tcp", "", "vm-a");
    await pm.allocate(0, "udp", "", "vm-a");
    await pm.allocate(53, "udp", "127.0.0.1", "vm-b");
    expect(pm.list("vm-a").map((r) => `${r.protocol}/${r.port}`)).toEqual(["tcp/30000", "udp/30000"]);
    expect(pm.releaseVm("vm-a")).toBe(2);
    expect(pm.releaseVm("vm-a")).toBe(0);
    expect(pm.list()).toEqual([{ port: 53, protocol: "udp", address: "127.0.0.1", vmId: "vm-b" }]);
    expect(pm.list("vm-a")).toEqual([]);
  });
});

describe("PortManager: concurrency", () => {
  it("overlapping ephemeral allocations get distinct ports", async () => {
    const probe = new FakeProbe();
    const g = gate();
    probe.gate = g.promise;
    const pm = new PortManager(30000, 30010, probe);
    const pending = [
      pm.allocate(0, "tcp", "", "a"),
      pm.allocate(0, "tcp", "", "b"),
      pm.allocate(0, "tcp", "", "c"),
    ];
    await new Promise((r) => setImmediate(r));
    expect(pm.list()).toEqual([]); // none is live before its host check
    g.open();
    expect(await Promise.all(pending)).toEqual([30000, 30001, 30002]);
  });

  it("overlapping requests for one key: the first VM wins; the same VM shares one host check", async () => {
    const probe = new FakeProbe();
    const g = gate();
    probe.gate = g.promise;
    const pm = new PortManager(30000, 30010, probe);
    const a1 = pm.allocate(8080, "tcp", "", "vm-a");
    const a2 = pm.allocate(8080, "tcp", "", "vm-a");
    const b = pm.allocate(8080, "tcp", "127.0.0.1", "vm-b").catch((e) => e);
    await new Promise((r) => setImmediate(r));
    g.open();
    expect(await a1).toBe(8080);
    expect(await a2).toBe(8080);
    expect(await b).toMatchObject({ name: "ConflictError", owner: "vm-a" });
    expect(probe.calls).toEqual(["tcp 0.0.0.0 8080"]);
  });

  it("if the first request fails its host check, a waiting request by the same VM tries again", async () => {
    const probe = new FakeProbe();
    const g = gate();
    probe.gate = g.promise;
    probe.bound.add("tcp 0.0.0.0 8080");
    const pm = new PortManager(30000, 30010, probe);
    const a1 = pm.allocate(8080, "tcp", "", "vm-a").catch((e) => e);
    const a2 = pm.allocate(8080, "tcp", "", "vm-a").catch((e) => e);
    await new Promise((r) => setImmediate(r));
    g.open();
    expect(await a1).toBeInstanceOf(ConflictError);
    expect(await a2).toBeInstanceOf(ConflictError);
    expect(probe.calls).toEqual(["tcp 0.0.0.0 8080", "tcp 0.0.0.0 8080"]);
  });

  it("a release during the host check cancels the allocation", async () => {
    const probe = new FakeProbe();
    const g = gate();
    probe.gate = g.promise;
    const pm = new PortManager(30000, 30010, probe);
    const a = pm.allocate(8080, "tcp", "", "vm-a").catch((e) => e);
    const e = pm.allocate(0, "tcp", "", "vm-a").catch((e) => e);
    await new Promise((r) => setImmediate(r));
    expect(pm.isAllocated(8080, "tcp")).toBe(true);
    expect(pm.releaseVm("vm-a")).toBe(2);
    g.open();
    for (const err of [await a, await e]) {
      expect(err).toBeInstanceOf(MvnetError);
      expect(err.code).toBe("ERR_CANCELLED");
    }
    expect(pm.list()).toEqual([]);
    expect(pm.isAllocated(8080, "tcp")).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests

/** hostInterface values the generators use, and the bind-level addresses each stands for. */
const HOSTS: Record<string, { key: string; addrs: string[] }> = {
  "": { key: "0.0.0.0", addrs: ["0.0.0.0"] },
  "0.0.0.0": { key: "0.0.0.0", addrs: ["0.0.0.0"] },
  "127.0.0.1": { key: "127.0.0.1", addrs: ["127.0.0.1"] },
  "::ffff:127.0.0.1": { key: "127.0.0.1", addrs: ["127.0.0.1"] },
  "192.0.2.2": { key: "192.0.2.2", addrs: ["192.0.2.2"] },
  "::1": { key: "::1", addrs: ["::1"] },
  "::": { key: "::", addrs: ["::"] },
  uplink0: { key: "uplink0", addrs: ["192.0.2.2", "2001:db8::2"] },
};
const hostArb = fc.constantFrom(...Object.keys(HOSTS));
const protoArb = fc.constantFrom("tcp", "udp");
const vmArb = fc.constantFrom("vm-a", "vm-b", "vm-c");
const RANGE = { start: 1000, end: 1003 };
const portArb = fc.constantFrom(1000, 1001, 1002, 1003, 7000);

type PortOp =
  | { kind: "alloc"; port: number; proto: string; host: string; vm: string }
  | { kind: "release"; port: number; proto: string; host: string }
  | { kind: "releaseVm"; vm: string };

const portOpArb: fc.Arbitrary<PortOp> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("alloc" as const),
      port: fc.oneof(fc.constant(0), portArb),
      proto: protoArb,
      host: hostArb,
      vm: vmArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("release" as const),
      port: portArb,
      proto: protoArb,
      host: hostArb,
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("releaseVm" as const), vm: vmArb }) },
);

const boundArb = fc.uniqueArray(
  fc
    .tuple(protoArb, fc.constantFrom("0.0.0.0", "127.0.0.1", "192.0.2.2", "::1", "::"), portArb)
    .map(([p, a, n]) => `${p} ${a} ${n}`),
  { maxLength: 6 },
);

function assertNoClash(records: { port: number; protocol: string; address: string }[]): void {
  for (let i = 0; i < records.length; i++) {
    for (let j = i + 1; j < records.length; j++) {
      const a = records[i] as (typeof records)[number];
      const b = records[j] as (typeof records)[number];
      if (a.protocol === b.protocol && a.port === b.port) {
        expect(bindClash(a.address, b.address), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`).toBe(false);
      }
    }
  }
}

describe("PortManager: properties", () => {
  it("follows a reference model: bind(2) clashes, host probe, idempotency, next-fit", async () => {
    await fc.assert(
      fc.asyncProperty(boundArb, fc.array(portOpArb, { maxLength: 60 }), async (bound, ops) => {
        const probe = new FakeProbe();
        probe.bound = new Set(bound);
        probe.ifaces = { uplink0: ["192.0.2.2", "2001:db8::2"] };
        const pm = new PortManager(RANGE.start, RANGE.end, probe);
        const model = new Map<string, { vm: string; proto: string; port: number; addrs: string[] }>();
        const clashing = (proto: string, port: number, addrs: string[]) =>
          [...model.values()].filter(
            (m) =>
              m.proto === proto && m.port === port && m.addrs.some((a) => addrs.some((b) => bindClash(a, b))),
          );
        const hostBusy = (proto: string, port: number, addrs: string[]) =>
          bound.some((b) => {
            const [p, a, n] = b.split(" ");
            return p === proto && Number(n) === port && addrs.some((x) => bindClash(a as string, x));
          });
        const cursors: Record<string, number> = { tcp: RANGE.start, udp: RANGE.start };
        const size = RANGE.end - RANGE.start + 1;

        for (const op of ops) {
          if (op.kind === "alloc") {
            const { key, addrs } = HOSTS[op.host] as { key: string; addrs: string[] };
            const result = await pm.allocate(op.port, op.proto, op.host, op.vm).then(
              (port) => ({ port }),
              (error: unknown) => ({ error }),
            );
            if (op.port !== 0) {
              const existing = model.get(`${op.proto} ${key} ${op.port}`);
              const others = clashing(op.proto, op.port, addrs);
              if (existing) {
                if (existing.vm === op.vm) expect(result).toEqual({ port: op.port });
                else expect(result).toMatchObject({ error: { owner: existing.vm } });
              } else if (others.length > 0) {
                expect(result).toMatchObject({ error: { name: "ConflictError" } });
                expect(others.map((o) => o.vm)).toContain((result as { error: ConflictError }).error.owner);
              } else if (hostBusy(op.proto, op.port, addrs)) {
                expect(result).toMatchObject({ error: { name: "ConflictError", owner: undefined } });
              } else {
                expect(result).toEqual({ port: op.port });
                model.set(`${op.proto} ${key} ${op.port}`, {
                  vm: op.vm,
                  proto: op.proto,
                  port: op.port,
                  addrs,
                });
              }
            } else {
              // Next-fit reference: walk from the cursor; clashing ports are skipped silently,
              // host-busy ones cost an attempt (bounded by the range size here) and move the cursor.
              let expected: number | undefined;
              let cur = cursors[op.proto] as number;
              let attempts = 0;
              for (;;) {
                let cand: number | undefined;
                for (let i = 0; i < size; i++) {
                  const p = RANGE.start + ((cur - RANGE.start + i) % size);
                  if (clashing(op.proto, p, addrs).length === 0) {
                    cand = p;
                    break;
                  }
                }
                if (cand === undefined) break;
                cursors[op.proto] = cand === RANGE.end ? RANGE.start : cand + 1;
                if (!hostBusy(op.proto, cand, addrs)) {
                  expected = cand;
                  break;
                }
                if (++attempts >= Math.min(MAX_PROBE_ATTEMPTS, size)) break;
                cur = cursors[op.proto] as number;
              }
              if (expected === undefined) {
                expect(result).toMatchObject({ error: { name: "ExhaustedError" } });
              } else {
                expect(result).toEqual({ port: expected });
                model.set(`${op.proto} ${key} ${expected}`, {
                  vm: op.vm,
                  proto: op.proto,
                  port: expected,
                  addrs,
                });
              }
            }
          } else if (op.kind === "release") {
            const { key } = HOSTS[op.host] as { key: string };
            expect(pm.release(op.port, op.proto, op.host)).toBe(
              model.delete(`${op.proto} ${key} ${op.port}`),
            );
          } else {
            let n = 0;
            for (const [k, m] of model) {
              if (m.vm === op.vm) {
                model.delete(k);
                n++;
              }
            }
            expect(pm.releaseVm(op.vm)).toBe(n);
          }

          const records = pm.list();
          assertNoClash(records);
          const expectedRecords = [...model.values()].flatMap((m) =>
            m.addrs.map((a) => `${m.proto} ${a} ${m.port} ${m.vm}`),
          );
          expect(records.map((r) => `${r.protocol} ${r.address} ${r.port} ${r.vmId}`).sort()).toEqual(
            expectedRecords.sort(),
          );
        }
      }),
      { numRuns: 300 },
    );
  });

  it("concurrent allocate()s under any interleaving never yield clashing live allocations", async () => {
    const reqArb = fc.record({
      port: fc.constantFrom(0, 0, 0, 1000, 1005, 8080),
      proto: protoArb,
      host: fc.constantFrom("", "127.0.0.1", "uplink0", "::1", "::"),
      vm: vmArb,
    });
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.array(reqArb, { minLength: 2, maxLength: 14 }),
        fc.uniqueArray(fc.integer({ min: 1000, max: 1009 }), { maxLength: 4 }),
        async (s, reqs, busyPorts) => {
          const probe: HostProbe = {
            isPortFree: s.scheduleFunction(
              async (_p: string, _a: string, port: number) => !busyPorts.includes(port),
            ),
            interfaceAddresses: s.scheduleFunction(async (name: string) =>
              name === "uplink0" ? ["192.0.2.2"] : [],
            ),
          };
          const pm = new PortManager(1000, 1009, probe);
          const outcomes = reqs.map((r) =>
            pm.allocate(r.port, r.proto, r.host, r.vm).then(
              (port) => ({ r, port }),
              (error: unknown) => ({ r, error }),
            ),
          );
          await s.waitIdle();
          const settled = await Promise.all(outcomes);
          const records = pm.list();
          assertNoClash(records);
          for (const o of settled) {
            if ("port" in o) {
              expect(busyPorts).not.toContain(o.port);
              if (o.r.port !== 0) expect(o.port).toBe(o.r.port);
              else expect(o.port >= 1000 && o.port <= 1009).toBe(true);
              // Nothing was released, so every success is still live and owned by its VM.
              expect(
                records.some((x) => x.port === o.port && x.protocol === o.r.proto && x.vmId === o.r.vm),
              ).toBe(true);
            } else {
              expect(o.error instanceof ConflictError || o.error instanceof ExhaustedError).toBe(true);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("concurrent ephemeral allocate()s on one address are all distinct, and fill the range exactly", async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), fc.integer({ min: 1, max: 40 }), async (s, n) => {
        const probe: HostProbe = {
          isPortFree: s.scheduleFunction(async () => true),
          interfaceAddresses: async () => [],
        };
        const pm = new PortManager(2000, 2029, probe);
        const outcomes = Array.from({ length: n }, (_, i) =>
          pm.allocate(0, "tcp", "", `vm-${i % 3}`).then(
            (port) => port,
            (error: unknown) => error,
          ),
        );
        await s.waitIdle();
        const settled = await Promise.all(outcomes);
        const ports = settled.filter((x): x is number => typeof x === "number");
        expect(new Set(ports).size).toBe(ports.length);
        expect(ports.length).toBe(Math.min(n, 30));
        for (const x of settled) if (typeof x !== "number") expect(x).toBeInstanceOf(ExhaustedError);
      }),
      { numRuns: 100 },
    );
  });
});
