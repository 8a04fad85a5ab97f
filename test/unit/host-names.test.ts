import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/core/errors.js";
import { validateIfName } from "../../src/core/validate.js";
import { isVmTap, tapAliasFor, tapNameFor, validateVmId } from "../../src/host/names.js";
import type { Link } from "../../src/kernel/netlink/index.js";

const link = (l: Partial<Link>): Link => ({
  index: 5,
  name: "x",
  flags: 0,
  up: true,
  mtu: 1500,
  group: 0x6d76,
  operState: "UNKNOWN",
  ...l,
});

describe("VM ids", () => {
  it("accepts jailer-style ids and refuses the rest before anything happens", () => {
    for (const ok of ["vm-1", "a", "4f3c2b1a-0000-4000-8000-000000000001", "web.frontend:7@eu"]) {
      expect(validateVmId(ok)).toBe(ok);
    }
    for (const bad of ["", "-vm", "vm 1", "vm/1", "ü", "x".repeat(129), 7, undefined]) {
      expect(() => validateVmId(bad)).toThrow(ValidationError);
    }
  });
});

describe("TAP names", () => {
  it("are a readable part of the id, a dash and a 6-character hash", () => {
    expect(tapNameFor("web-frontend-7")).toMatch(/^webfront-[a-z2-7]{6}$/);
    expect(tapNameFor("--")).toMatch(/^mv-[a-z2-7]{6}$/);
    expect(tapNameFor("VM1")).toMatch(/^vm1-[a-z2-7]{6}$/);
  });

  it("are deterministic, at most 15 bytes and valid interface names, for any id", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/), fc.nat(40), (id, attempt) => {
        const name = tapNameFor(id, attempt);
        expect(Buffer.byteLength(name)).toBeLessThanOrEqual(15);
        expect(validateIfName(name)).toBe(name);
        expect(tapNameFor(id, attempt)).toBe(name);
      }),
    );
  });

  it("differ between attempts and between ids that share their readable part", () => {
    const names = new Set([0, 1, 2, 3].map((k) => tapNameFor("web-frontend-7", k)));
    expect(names.size).toBe(4);
    expect(tapNameFor("web-frontend-7")).not.toBe(tapNameFor("web-frontend-8"));
    const many = new Set(Array.from({ length: 2000 }, (_, i) => tapNameFor(`webfront-${i}`)));
    // 30 bits of hash: 2000 ids sharing their readable part collide with probability ~0.2 %.
    expect(many.size).toBeGreaterThanOrEqual(1999);
  });
});

describe("our TAPs", () => {
  it("carry the alias microvm-net:<vmId>; the bare alias of createTap is not a VM's", () => {
    expect(tapAliasFor("vm-1")).toBe("microvm-net:vm-1");
    expect(isVmTap(link({ kind: "tun", alias: "microvm-net:vm-1" }))).toBe(true);
    expect(isVmTap(link({ kind: "tun", alias: "microvm-net:vm-1" }), 7)).toBe(false);
    expect(isVmTap(link({ kind: "tun", alias: "microvm-net" }))).toBe(false);
    expect(isVmTap(link({ kind: "veth", alias: "microvm-net:vm-1" }))).toBe(false);
    expect(isVmTap(link({ kind: "tun" }))).toBe(false);
  });
});
