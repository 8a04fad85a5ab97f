import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { IPAM } from "../../src/alloc/ipam.js";
import { ConflictError, ExhaustedError, ValidationError } from "../../src/core/errors.js";

/** Independent address arithmetic for the reference model (does not use src/core/validate). */
const toInt = (ip: string) => ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
const toIp = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

function acquireAll(ipam: IPAM): string[] {
  const out: string[] = [];
  for (;;) {
    try {
      out.push(ipam.acquire());
    } catch (e) {
      if (e instanceof ExhaustedError) return out;
      throw e;
    }
  }
}

describe("IPAM: construction", () => {
  it("defaults to 10.200.0.0/16 with the gateway at .1", () => {
    const ipam = new IPAM();
    expect(ipam.cidr).toBe("10.200.0.0/16");
    expect(ipam.prefix).toBe(16);
    expect(ipam.gateway).toBe("10.200.0.1");
    expect(ipam.size).toBe(65536 - 3);
    expect(ipam.used).toBe(0);
    expect(ipam.acquire()).toBe("10.200.0.2");
    expect(ipam.used).toBe(1);
  });

  it("normalises a CIDR with host bits set", () => {
    const ipam = new IPAM("10.1.2.99/24");
    expect(ipam.cidr).toBe("10.1.2.0/24");
    expect(ipam.gateway).toBe("10.1.2.1");
    expect(ipam.acquire()).toBe("10.1.2.2");
  });

  it.each(["10.9.0.0/31", "10.9.0.7/32"])("C5: %s has no usable guest address", (cidr) => {
    expect(() => new IPAM(cidr)).toThrow(ValidationError);
    expect(() => new IPAM(cidr)).toThrow(
      expect.objectContaining({ field: "cidr", message: expect.stringContaining("no usable guest address") }),
    );
  });

  it("C5: a /30 holds exactly one guest address (.2), then is exhausted", () => {
    const ipam = new IPAM("10.9.0.0/30");
    expect(ipam.size).toBe(1);
    expect(ipam.acquire()).toBe("10.9.0.2");
    expect(() => ipam.acquire()).toThrow(ExhaustedError);
    expect(() => ipam.acquire()).toThrow(/10\.9\.0\.0\/30/);
  });

  it("refuses prefixes shorter than /8 and accepts a /8", () => {
    expect(() => new IPAM("10.0.0.0/7")).toThrow(expect.objectContaining({ field: "cidr" }));
    expect(() => new IPAM("0.0.0.0/0")).toThrow(ValidationError);
    const big = new IPAM("10.0.0.0/8");
    expect(big.size).toBe(2 ** 24 - 3);
    expect(big.acquire()).toBe("10.0.0.2");
  });

  it.each(["", "10.0.0.0", "10.0.0.0/33", "fd00::/64", "10.0.0/8"])("rejects CIDR %j", (cidr) =>
    expect(() => new IPAM(cidr)).toThrow(
      expect.objectContaining({ field: "cidr", code: "ERR_INVALID_CIDR" }),
    ),
  );
});

describe("IPAM: acquire", () => {
  it("is next-fit: a just-released address is not handed out again at once", () => {
    const ipam = new IPAM("10.0.0.0/24");
    const [a, b, c] = [ipam.acquire(), ipam.acquire(), ipam.acquire()];
    expect([a, b, c]).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    expect(ipam.release(b as string)).toBe(true);
    expect(ipam.acquire()).toBe("10.0.0.5");
  });

  it("wraps around past the broadcast address and skips network and gateway", () => {
    const ipam = new IPAM("10.0.0.0/29"); // usable .2-.6
    expect(acquireAll(ipam)).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
    ipam.release("10.0.0.5");
    ipam.release("10.0.0.3");
    expect(ipam.acquire()).toBe("10.0.0.3");
    expect(ipam.acquire()).toBe("10.0.0.5");
    expect(() => ipam.acquire()).toThrow(ExhaustedError);
  });

  it("hands out a whole /16 in order, then fails fast when exhausted", () => {
    const ipam = new IPAM("10.200.0.0/16");
    const t0 = performance.now();
    const all = acquireAll(ipam);
    const fill = performance.now() - t0;
    expect(all.length).toBe(65533);
    expect(all[0]).toBe("10.200.0.2");
    expect(all.at(-1)).toBe("10.200.255.254");
    expect(new Set(all).size).toBe(all.length);
    expect(ipam.used).toBe(ipam.size);
    // herd's takes ~25 ms to fill and ~5 ms for each exhausted call (a scan of the /16); a
    // quadratic fill or a scanning exhaustion check would blow these bounds by far.
    expect(fill).toBeLessThan(2000);
    const t1 = performance.now();
    for (let i = 0; i < 200; i++) expect(() => ipam.acquire()).toThrow(ExhaustedError);
    expect(performance.now() - t1).toBeLessThan(100);
    ipam.release("10.200.77.7");
    expect(ipam.acquire()).toBe("10.200.77.7");
  });
});

describe("IPAM: release, reserve, has", () => {
  it("release of an address not held is a no-op", () => {
    const ipam = new IPAM("10.0.0.0/24");
    ipam.acquire();
    expect(ipam.release("10.0.0.77")).toBe(false);
    expect(ipam.used).toBe(1);
    expect(ipam.release("10.0.0.2")).toBe(true);
    expect(ipam.release("10.0.0.2")).toBe(false);
    expect(ipam.used).toBe(0);
  });

  it("release of network, gateway or broadcast does not make them acquirable", () => {
    const ipam = new IPAM("10.9.0.0/30");
    for (const ip of ["10.9.0.0", "10.9.0.1", "10.9.0.3"]) expect(ipam.release(ip)).toBe(false);
    expect(ipam.used).toBe(0);
    expect(acquireAll(ipam)).toEqual(["10.9.0.2"]);
  });

  it.each(["10.0.1.2", "192.168.0.1", "not-an-ip", "10.0.0"])(
    "release(%j) outside the range throws",
    (ip) => {
      const ipam = new IPAM("10.0.0.0/24");
      expect(() => ipam.release(ip)).toThrow(expect.objectContaining({ field: "ip" }));
      expect(() => ipam.release(ip)).toThrow(ValidationError);
    },
  );

  it("reserve marks an address taken; acquire skips it; the cursor does not move", () => {
    const ipam = new IPAM("10.0.0.0/24");
    ipam.reserve("10.0.0.3");
    ipam.reserve("10.0.0.200");
    expect(ipam.used).toBe(2);
    expect(ipam.has("10.0.0.3")).toBe(true);
    expect([ipam.acquire(), ipam.acquire()]).toEqual(["10.0.0.2", "10.0.0.4"]);
  });

  it("reserve refuses special, outside and held addresses", () => {
    const ipam = new IPAM("10.0.0.0/24");
    for (const ip of ["10.0.0.0", "10.0.0.1", "10.0.0.255", "10.0.1.5", "x"]) {
      expect(() => ipam.reserve(ip)).toThrow(ValidationError);
      expect(() => ipam.reserve(ip)).toThrow(expect.objectContaining({ field: "ip" }));
    }
    ipam.reserve("10.0.0.9");
    expect(() => ipam.reserve("10.0.0.9")).toThrow(ConflictError);
    const got = ipam.acquire();
    expect(() => ipam.reserve(got)).toThrow(ConflictError);
    expect(ipam.used).toBe(2);
  });

  it("has() answers for held addresses only", () => {
    const ipam = new IPAM("10.0.0.0/24");
    const ip = ipam.acquire();
    expect(ipam.has(ip)).toBe(true);
    expect(ipam.has("10.0.0.3")).toBe(false);
    expect(ipam.has("10.0.0.1")).toBe(false);
    expect(ipam.has("172.16.0.2")).toBe(false);
    expect(() => ipam.has("10.0.0.256")).toThrow(ValidationError);
    ipam.release(ip);
    expect(ipam.has(ip)).toBe(false);
  });
});

type Op = { kind: "acquire" } | { kind: "release"; pick: number } | { kind: "reserve"; offset: number };

const opArb = fc.oneof(
  { weight: 5, arbitrary: fc.constant<Op>({ kind: "acquire" }) },
  { weight: 2, arbitrary: fc.nat().map<Op>((pick) => ({ kind: "release", pick })) },
  { weight: 1, arbitrary: fc.nat().map<Op>((offset) => ({ kind: "reserve", offset })) },
);

describe("IPAM: properties", () => {
  it("matches a plain next-fit reference model (never double-hands, never special addresses)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 24, max: 30 }),
        fc.nat(),
        fc.array(opArb, { maxLength: 400 }),
        (prefix, n, ops) => {
          const total = 2 ** (32 - prefix);
          const base = Math.floor((n % 2 ** 24) / total) * total + toInt("10.0.0.0");
          const ipam = new IPAM(`${toIp(base)}/${prefix}`);
          const held = new Set<number>(); // offsets
          let cursor = 2;
          for (const op of ops) {
            if (op.kind === "acquire") {
              // Reference: first free usable offset from the cursor, wrapping once round the subnet.
              let expected: number | undefined;
              for (let i = 0; i < total; i++) {
                const o = (cursor + i) % total;
                if (o >= 2 && o <= total - 2 && !held.has(o)) {
                  expected = o;
                  break;
                }
              }
              if (expected === undefined) {
                expect(() => ipam.acquire()).toThrow(ExhaustedError);
              } else {
                expect(ipam.acquire()).toBe(toIp(base + expected));
                held.add(expected);
                cursor = (expected + 1) % total;
              }
            } else if (op.kind === "release") {
              const list = [...held];
              const o =
                list.length > 0 && op.pick % 3 !== 0
                  ? (list[op.pick % list.length] as number)
                  : op.pick % total;
              expect(ipam.release(toIp(base + o))).toBe(held.delete(o));
            } else {
              const o = op.offset % total;
              const ip = toIp(base + o);
              if (o < 2 || o === total - 1) expect(() => ipam.reserve(ip)).toThrow(ValidationError);
              else if (held.has(o)) expect(() => ipam.reserve(ip)).toThrow(ConflictError);
              else {
                ipam.reserve(ip);
                held.add(o);
              }
            }
            expect(ipam.used).toBe(held.size);
          }
          for (let o = 0; o < total; o++) expect(ipam.has(toIp(base + o))).toBe(held.has(o));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("acquire succeeds exactly size times with distinct usable addresses, then is exhausted", () => {
    fc.assert(
      fc.property(fc.integer({ min: 20, max: 30 }), (prefix) => {
        const ipam = new IPAM(`10.64.0.0/${prefix}`);
        const all = acquireAll(ipam);
        const total = 2 ** (32 - prefix);
        expect(all.length).toBe(ipam.size);
        expect(all.length).toBe(total - 3);
        const offsets = new Set(all.map((ip) => toInt(ip) - toInt("10.64.0.0")));
        expect(offsets.size).toBe(all.length);
        for (const o of [0, 1, total - 1]) expect(offsets.has(o)).toBe(false);
        for (const o of offsets) expect(o >= 0 && o < total).toBe(true);
      }),
      { numRuns: 40 },
    );
  });

  it("release then acquire gives back exactly the released addresses, in any order of release", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 22, max: 29 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 60 }),
        (prefix, picks) => {
          const ipam = new IPAM(`10.128.0.0/${prefix}`);
          const all = acquireAll(ipam);
          const released = new Set(picks.map((p) => all[p % all.length] as string));
          for (const ip of released) ipam.release(ip);
          expect(ipam.used).toBe(all.length - released.size);
          const again = acquireAll(ipam);
          expect(new Set(again)).toEqual(released);
          expect(again.length).toBe(released.size);
        },
      ),
    );
  });
});
