// Property-based tests of the pure layers (issue #5, "Done when"): IPAM, PortManager, the guest's boot
// argument and MAC, and the validators in core/validate.ts. Malformed input is a ValidationError
// naming its field, never a plain Error or TypeError; valid input round-trips.
// Reproduce a failure with the seed fast-check prints: MVNET_FC_SEED=<seed> npx vitest run --project unit test/unit/property-pure.test.ts
import fc from "fast-check";
import ipaddr from "ipaddr.js";
import { describe, expect, it } from "vitest";
import { type HostProbe, IPAM, PortManager as PurePortManager } from "../../src/alloc/index.js";
import {
  cidrContains,
  intToIPv4,
  ipv4ToInt,
  parseCidr,
  prefixMask,
  validateId,
  validateIfName,
  validateIPv4,
  validatePort,
  validateProtocol,
} from "../../src/core/validate.js";
import {
  ConflictError,
  ExhaustedError,
  guestBootArg,
  guestMac,
  MvnetError,
  parseHostInterface,
  prefixToNetmask,
  ValidationError,
} from "../../src/index.js";
import { anything, anyIPv4 as ipv4 } from "../helpers/arbitraries.js";

const SEED = process.env.MVNET_FC_SEED === undefined ? undefined : Number(process.env.MVNET_FC_SEED);
const SCALE = Number(process.env.MVNET_FC_RUNS ?? 1);
const params = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns: Math.max(1, Math.round(numRuns * SCALE)),
  ...(SEED === undefined ? {} : { seed: SEED }),
});

/** Values of any type, Symbols included (RegExp.test(Symbol()) once threw TypeError). */
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  anything,
  fc.string().map((d) => Symbol(d)),
  fc.constant(Symbol.iterator),
);

/** Runs `f`, which must throw a ValidationError whose field starts with `field`. */
function expectValidation(f: () => unknown, field: string): void {
  let thrown: unknown;
  try {
    f();
  } catch (e) {
    thrown = e;
  }
  if (!(thrown instanceof ValidationError)) {
    throw new Error(`expected a ValidationError (${field}), got ${String(thrown)}`, { cause: thrown });
  }
  expect(thrown.field.startsWith(field)).toBe(true);
  expect(thrown.code).toMatch(/^ERR_/);
}

const u32 = fc.integer({ min: 0, max: 0xffffffff });

describe("validate.ts", () => {
  it("ipv4ToInt and intToIPv4 are inverse", () => {
    fc.assert(
      fc.property(u32, (n) => {
        expect(ipv4ToInt(intToIPv4(n))).toBe(n);
        expect(validateIPv4(intToIPv4(n))).toBe(intToIPv4(n));
      }),
      params(500),
    );
  });

  it("validateIPv4 accepts exactly canonical dotted quads", () => {
    fc.assert(
      fc.property(fc.oneof(ipv4, fc.string(), fc.stringMatching(/^[0-9.]{1,16}$/)), (s) => {
        const canonical = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
        const ok = canonical?.slice(1).every((o) => Number(o) <= 255 && (o === "0" || !o.startsWith("0")));
        // ipaddr.js is the reference the hand-written expression in validate.ts must agree with.
        expect(ipaddr.IPv4.isValidFourPartDecimal(s)).toBe(ok === true);
        if (ok) expect(validateIPv4(s)).toBe(s);
        else expectValidation(() => validateIPv4(s, "addr"), "addr");
      }),
      params(500),
    );
  });

  it("parseCidr clears host bits, keeps the address, and the network contains it", () => {
    fc.assert(
      fc.property(ipv4, fc.integer({ min: 0, max: 32 }), (a, p) => {
        const c = parseCidr(`${a}/${p}`);
        expect(c).toEqual({
          address: a,
          prefix: p,
          network: intToIPv4((ipv4ToInt(a) & prefixMask(p)) >>> 0),
        });
        expect(cidrContains(c, a)).toBe(true);
        expect(cidrContains(c, c.network)).toBe(true);
      }),
      params(300),
    );
  });

  it("parseCidr refuses prefixes above 32 and anything that is not a.b.c.d/n", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.tuple(ipv4, fc.integer({ min: 33, max: 99 })).map(([a, p]) => `${a}/${p}`),
          fc.string().filter((s) => !/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(s)),
          anyValue.filter((v) => typeof v !== "string"),
        ),
        (v) => expectValidation(() => parseCidr(v, "subnet"), "subnet"),
      ),
      params(300),
    );
  });

  it("validatePort, validateId and validateProtocol accept exactly their domain", () => {
    fc.assert(
      fc.property(anyValue, fc.oneof(fc.integer(), fc.double()), (v, n) => {
        for (const x of [v, n]) {
          const port = typeof x === "number" && Number.isInteger(x) && x >= 1 && x <= 65535;
          if (port) expect(validatePort(x)).toBe(x);
          else expectValidation(() => validatePort(x, "hostPort"), "hostPort");
          const id = typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= 0xfffffffe;
          if (id) expect(validateId(x, "uid")).toBe(x);
          else expectValidation(() => validateId(x, "uid"), "uid");
          const proto = typeof x === "string" && ["tcp", "udp"].includes(x.toLowerCase());
          if (proto) expect(validateProtocol(x)).toBe((x as string).toLowerCase());
          else expectValidation(() => validateProtocol(x, "protocol"), "protocol");
        }
      }),
      params(500),
    );
  });

  it("validateIfName accepts exactly 1-15 bytes of [A-Za-z0-9_.-], not ., .., all or default", () => {
    const chars = fc.constantFrom(..."abcXYZ019_.-/% :\u00e9\u540d\t".split(""));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(chars, { maxLength: 18 }).map((c) => c.join("")),
          anyValue,
        ),
        (v) => {
          const ok =
            typeof v === "string" &&
            /^[A-Za-z0-9_.-]{1,15}$/.test(v) &&
            ![".", "..", "all", "default"].includes(v); // all/default: /proc/sys/net/*/conf
          if (ok) expect(validateIfName(v)).toBe(v);
          else expectValidation(() => validateIfName(v, "name"), "name");
        },
      ),
      params(500),
    );
  });
});

describe("parseHostInterface", () => {
  it("reads any value as all addresses, one IPv4 address or an interface name, or refuses it", () => {
    const chars = fc.constantFrom(..."019.abc-_:/% \u00e9".split(""));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(chars, { maxLength: 17 }).map((c) => c.join("")),
          ipv4,
          anyValue,
        ),
        (v) => {
          let m: ReturnType<typeof parseHostInterface>;
          try {
            m = parseHostInterface(v as string);
          } catch (e) {
            expect(e).toBeInstanceOf(ValidationError);
            expect((e as ValidationError).field).toBe("hostInterface");
            return;
          }
          if (m.kind === "any") expect(["", "0.0.0.0"]).toContain(v);
          else if (m.kind === "address") expect(validateIPv4(v)).toBe(m.ip);
          else {
            expect(validateIfName(v)).toBe(m.name);
            expect(m.name).not.toBe("lo");
            expect(m.name).not.toMatch(/^[\d.]+$/);
          }
        },
      ),
      params(500),
    );
  });
});

describe("guest: prefixToNetmask, guestMac, guestBootArg", () => {
  it("prefixToNetmask gives a contiguous mask of exactly `prefix` ones; refuses the rest", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 32 }), (p) => {
        const mask = ipv4ToInt(prefixToNetmask(p));
        const ones = mask.toString(2).replace(/0/g, "").length;
        expect(ones).toBe(p);
        expect(mask).toBe(prefixMask(p));
      }),
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ max: -1 }),
          fc.integer({ min: 33 }),
          fc.double({ noInteger: true }),
          anyValue.filter((v) => typeof v !== "number"),
        ),
        (p) => expectValidation(() => prefixToNetmask(p as number), "prefix"),
      ),
      params(200),
    );
  });

  it("guestMac is injective, unicast, locally administered and carries the address", () => {
    fc.assert(
      fc.property(u32, u32, (a, b) => {
        const ma = guestMac(intToIPv4(a));
        expect(ma).toMatch(/^06:00(:[0-9a-f]{2}){4}$/);
        expect(
          ipv4ToInt(
            ma
              .split(":")
              .slice(2)
              .map((h) => Number.parseInt(h, 16))
              .join("."),
          ),
        ).toBe(a);
        if (a !== b) expect(guestMac(intToIPv4(b))).not.toBe(ma);
      }),
      params(300),
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string().filter((s) => !/^\d{1,3}(\.\d{1,3}){3}$/.test(s)),
          anyValue.filter((v) => typeof v !== "string"),
        ),
        (v) => expectValidation(() => guestMac(v as string), "guestIp"),
      ),
      params(200),
    );
  });

  /** A guest inside the host's subnet, not its network or broadcast address. */
  const addressing = fc
    .tuple(u32, fc.integer({ min: 1, max: 30 }), u32, u32)
    .map(([net, prefix, h, g]) => {
      const mask = prefixMask(prefix);
      const size = 2 ** (32 - prefix);
      const base = (net & mask) >>> 0;
      const host = base + 1 + (h % (size - 2));
      let guest = base + 1 + (g % (size - 2));
      if (guest === host) guest = host === base + 1 ? base + 2 : base + 1;
      return { hostIp: intToIPv4(host), guestIp: intToIPv4(guest), prefix };
    })
    .filter((a) => a.hostIp !== a.guestIp);

  it("guestBootArg renders the kernel's ip= fields for every valid guest", () => {
    fc.assert(
      fc.property(addressing, fc.array(ipv4, { maxLength: 2 }), (a, dns) => {
        const arg = guestBootArg({ ...a, dns });
        expect(arg).not.toMatch(/\s/);
        const f = arg.slice("ip=".length).split(":");
        expect(f.slice(0, 7)).toEqual([
          a.guestIp,
          "",
          a.hostIp,
          prefixToNetmask(a.prefix),
          "",
          "eth0",
          "off",
        ]);
        expect(f.slice(7)).toEqual(dns);
      }),
      params(300),
    );
  });

  it("guestBootArg refuses each malformed field with a ValidationError naming it", () => {
    const bad = fc.oneof(
      fc.constantFrom(0, 32, -1, 1.5, 33).map((prefix) => ({ change: { prefix }, field: "prefix" })),
      fc.constantFrom("10.1", "x", "256.0.0.1").map((guestIp) => ({ change: { guestIp }, field: "guestIp" })),
      fc.constantFrom("10.1", "x", "256.0.0.1").map((hostIp) => ({ change: { hostIp }, field: "hostIp" })),
      fc
        .constantFrom("10.201.0.2", "10.200.0.1", "10.200.0.0", "10.200.255.255")
        .map((guestIp) => ({ change: { guestIp }, field: "guestIp" })),
      fc
        .constantFrom(["1.1.1.1", "1.0.0.1", "8.8.8.8"], ["1.1"])
        .map((dns) => ({ change: { dns }, field: "dns" })),
      fc
        .constantFrom("a b", "x".repeat(16), "", "a/b")
        .map((ifname) => ({ change: { ifname }, field: "ifname" })),
      fc
        .constantFrom("-a", "a_b", "x".repeat(65), "a..b", "a b")
        .map((hostname) => ({ change: { hostname }, field: "hostname" })),
    );
    fc.assert(
      fc.property(bad, ({ change, field }) =>
        expectValidation(
          () => guestBootArg({ guestIp: "10.200.0.2", hostIp: "10.200.0.1", prefix: 16, ...change }),
          field,
        ),
      ),
      params(200),
    );
  });
});

describe("IPAM", () => {
  const smallSubnet = fc
    .tuple(u32, fc.integer({ min: 22, max: 30 }))
    .map(([n, p]) => `${intToIPv4((n & prefixMask(p)) >>> 0)}/${p}`);

  it(
    "acquiring everything hands out each usable address once; releasing everything returns to the initial state",
    () => {
      fc.assert(
        fc.property(smallSubnet, (cidr) => {
          const ipam = new IPAM(cidr);
          const c = parseCidr(cidr);
          const first = new Set<string>();
          for (let i = 0; i < ipam.size; i++) {
            const ip = ipam.acquire();
            expect(first.has(ip)).toBe(false);
            expect(cidrContains(c, ip)).toBe(true);
            first.add(ip);
          }
          const net = ipv4ToInt(c.network);
          const bcast = net + 2 ** (32 - c.prefix) - 1;
          for (const reserved of [net, net + 1, bcast]) expect(first.has(intToIPv4(reserved))).toBe(false);
          expect(first.size).toBe(2 ** (32 - c.prefix) - 3);
          expect(() => ipam.acquire()).toThrow(ExhaustedError);
          for (const ip of first) expect(ipam.release(ip)).toBe(true);
          expect(ipam.used).toBe(0);
          for (const ip of first) expect(ipam.has(ip)).toBe(false);
          // The same set again (next-fit order may differ: the cursor does not move back).
          const second = new Set(Array.from({ length: ipam.size }, () => ipam.acquire()));
          expect(second).toEqual(first);
        }),
        params(60),
      );
    },
    60_000 * SCALE,
  );

  it("any sequence of acquire / release / reserve matches a set model and never duplicates", () => {
    const op = fc.oneof(
      fc.constant({ kind: "acquire" as const }),
      fc.nat().map((k) => ({ kind: "release" as const, k })),
      fc.nat().map((k) => ({ kind: "reserve" as const, k })),
    );
    fc.assert(
      fc.property(smallSubnet, fc.array(op, { maxLength: 200 }), (cidr, ops) => {
        const ipam = new IPAM(cidr);
        const c = parseCidr(cidr);
        const net = ipv4ToInt(c.network);
        const total = 2 ** (32 - c.prefix);
        const model = new Set<string>();
        for (const o of ops) {
          if (o.kind === "acquire") {
            if (model.size === ipam.size) {
              expect(() => ipam.acquire()).toThrow(ExhaustedError);
              continue;
            }
            const ip = ipam.acquire();
            expect(model.has(ip)).toBe(false);
            model.add(ip);
          } else {
            const ip = intToIPv4(net + (o.k % total));
            const offset = o.k % total;
            const special = offset === 0 || offset === 1 || offset === total - 1;
            if (o.kind === "release") {
              expect(ipam.release(ip)).toBe(model.delete(ip));
            } else if (special) {
              expectValidation(() => ipam.reserve(ip), "ip");
            } else if (model.has(ip)) {
              expect(() => ipam.reserve(ip)).toThrow(ConflictError);
            } else {
              ipam.reserve(ip);
              model.add(ip);
            }
          }
          expect(ipam.used).toBe(model.size);
        }
      }),
      params(100),
    );
  });

  it("an address outside the subnet or not an address is a typed error; the pool is unchanged", () => {
    fc.assert(
      fc.property(smallSubnet, fc.oneof(ipv4, fc.string(), anyValue), (cidr, v) => {
        const ipam = new IPAM(cidr);
        const held = ipam.acquire();
        const c = parseCidr(cidr);
        const inside =
          typeof v === "string" &&
          /^\d{1,3}(\.\d{1,3}){3}$/.test(v) &&
          (() => {
            try {
              return cidrContains(c, validateIPv4(v));
            } catch {
              return false;
            }
          })();
        if (!inside) {
          expectValidation(() => ipam.release(v as string), "ip");
          expectValidation(() => ipam.reserve(v as string), "ip");
        }
        expect(ipam.used).toBe(1);
        expect(ipam.has(held)).toBe(true);
      }),
      params(200),
    );
  });

  it("refuses malformed subnets and prefixes outside /8-/30", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.tuple(ipv4, fc.constantFrom(0, 1, 7, 31, 32)).map(([a, p]) => `${a}/${p}`),
          fc.string().filter((s) => !/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(s)),
          anyValue.filter((v) => typeof v !== "string" && v !== undefined),
        ),
        (v) => expectValidation(() => new IPAM(v as string), "cidr"),
      ),
      params(200),
    );
  });
});

describe("PortManager", () => {
  const freeProbe: HostProbe = {
    isPortFree: async () => true,
    interfaceAddresses: async (name) => (name === "eth0" ? ["192.0.2.2"] : []),
  };
  const host = fc.constantFrom("", "0.0.0.0", "192.0.2.2", "198.51.100.7", "::", "2001:db8::1", "eth0");
  const bindAddresses = (h: string) => (h === "" ? ["0.0.0.0"] : h === "eth0" ? ["192.0.2.2"] : [h]);
  const clash = (a: string, b: string) =>
    a === b ||
    a === "::" ||
    b === "::" ||
    (!a.includes(":") && !b.includes(":") && (a === "0.0.0.0" || b === "0.0.0.0"));

  it("live allocations never clash the way bind(2) would refuse; releasing everything empties it", async () => {
    const op = fc.record({
      port: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 100, max: 104 })),
      protocol: fc.constantFrom("tcp", "udp"),
      host,
      vm: fc.constantFrom("a", "b", "c"),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 60 }), async (ops) => {
        const pm = new PurePortManager(100, 104, freeProbe);
        const held: Array<{ port: number; protocol: string; host: string; vm: string }> = [];
        for (const o of ops) {
          try {
            const port = await pm.allocate(o.port, o.protocol, o.host, o.vm);
            if (o.port === 0) expect(port >= 100 && port <= 104).toBe(true);
            else expect(port).toBe(o.port);
            // "" and "0.0.0.0" are the same key: the same VM asking again gets its port back.
            const same = (h: { host: string }) => (h.host || "0.0.0.0") === (o.host || "0.0.0.0");
            if (!held.some((h) => h.port === port && h.protocol === o.protocol && same(h)))
              held.push({ port, protocol: o.protocol, host: o.host, vm: o.vm });
          } catch (e) {
            expect(e).toBeInstanceOf(MvnetError);
            expect(e instanceof ConflictError || e instanceof ExhaustedError).toBe(true);
          }
          const live = pm.list();
          for (let i = 0; i < live.length; i++) {
            for (let j = i + 1; j < live.length; j++) {
              const a = live[i] as (typeof live)[number];
              const b = live[j] as (typeof live)[number];
              if (a.protocol === b.protocol && a.port === b.port && a.vmId !== b.vmId) {
                expect(clash(a.address, b.address)).toBe(false);
              }
            }
          }
        }
        expect(pm.list().length).toBe(held.reduce((n, h) => n + bindAddresses(h.host).length, 0));
        for (const h of held) expect(pm.release(h.port, h.protocol, h.host)).toBe(true);
        expect(pm.list()).toEqual([]);
      }),
      params(100),
    );
  });

  it("malformed arguments are ValidationErrors naming the field, and allocate nothing", async () => {
    const bad = fc.oneof(
      fc
        .constantFrom<unknown>(-1, 65536, 1.5, NaN, "80", null)
        .map((port) => ({ args: [port, "tcp", "", "vm"], field: "port" })),
      fc
        .constantFrom<unknown>("icmp", "", 6, null)
        .map((p) => ({ args: [80, p, "", "vm"], field: "protocol" })),
      fc
        .constantFrom<unknown>("10.1", "256.1.1.1", "a b", "x".repeat(16), "fe80::1%eth0", ":::", 5, null)
        .map((h) => ({ args: [80, "tcp", h, "vm"], field: "hostInterface" })),
      fc.constantFrom<unknown>("", " ", 5, null).map((vm) => ({ args: [80, "tcp", "", vm], field: "vmId" })),
    );
    await fc.assert(
      fc.asyncProperty(bad, async ({ args, field }) => {
        const pm = new PurePortManager(100, 104, freeProbe);
        await expect((pm.allocate as (...a: unknown[]) => Promise<number>)(...args)).rejects.toSatisfy(
          (e: unknown) => e instanceof ValidationError && e.field === field,
        );
        expect(pm.list()).toEqual([]);
      }),
      params(100),
    );
  });

  it("refuses malformed ranges", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc
            .tuple(fc.integer({ min: 2, max: 65535 }), fc.integer({ min: 1, max: 65535 }))
            .filter(([s, e]) => e < s),
          fc.tuple(fc.constantFrom<unknown>(0, -1, 65536, 1.5, NaN, "1"), fc.constant(100)),
          fc.tuple(fc.constant(100), fc.constantFrom<unknown>(65536, 1.5, NaN, "200")),
        ),
        ([s, e]) => expectValidation(() => new PurePortManager(s as number, e as number), ""),
      ),
      params(100),
    );
  });
});
