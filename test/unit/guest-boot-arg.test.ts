import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/core/errors.js";
import { intToIPv4, ipv4ToInt, prefixMask } from "../../src/core/validate.js";
import { guestBootArg, prefixToNetmask } from "../../src/guest/index.js";

/**
 * This test's own reading of what a 6.1 kernel does with a static `ip=` (net/ipv4/ipconfig.c:
 * ip_auto_config_setup → ic_defaults → ic_setup_routes). The e2e tests check the real kernel; this
 * model lets the properties below cover many addressings cheaply.
 */
function kernelReads(arg: string): { address: string; prefix: number; gateway?: string; dev: string } {
  expect(arg.startsWith("ip=")).toBe(true);
  const f = arg.slice(3).split(":");
  const my = ipv4ToInt(f[0] as string);
  let mask = f[3] ? ipv4ToInt(f[3]) : 0xffffffff;
  if (mask === 0) mask = 0xffffffff; // in_aton() == ANY → NONE
  if (mask === 0xffffffff) {
    // ic_defaults(): classful guess
    const top = my >>> 24;
    mask = top < 128 ? 0xff000000 : top < 192 ? 0xffff0000 : 0xffffff00;
  }
  const gw = f[2] ? ipv4ToInt(f[2]) : undefined;
  const prefix = 32 - Math.log2(((~mask >>> 0) + 1) >>> 0);
  const onLink = gw !== undefined && ((gw ^ my) & mask) >>> 0 === 0;
  return {
    address: intToIPv4(my),
    prefix,
    gateway: onLink && gw !== undefined ? intToIPv4(gw) : undefined,
    dev: f[5] ?? "",
  };
}

describe("guestBootArg", () => {
  it("renders the kernel's static ip= form with the subnet's netmask", () => {
    expect(guestBootArg({ guestIp: "10.200.0.2", hostIp: "10.200.0.1", prefix: 16 })).toBe(
      "ip=10.200.0.2::10.200.0.1:255.255.0.0::eth0:off",
    );
  });

  it("adds DNS servers, interface name and hostname in their fields", () => {
    expect(
      guestBootArg({
        guestIp: "10.200.3.7",
        hostIp: "10.200.0.1",
        prefix: 16,
        dns: ["192.0.2.53", "198.51.100.53"],
        ifname: "eth1",
        hostname: "vm-7",
      }),
    ).toBe("ip=10.200.3.7::10.200.0.1:255.255.0.0:vm-7:eth1:off:192.0.2.53:198.51.100.53");
    expect(guestBootArg({ guestIp: "10.200.0.2", hostIp: "10.200.0.1", prefix: 24, dns: "192.0.2.53" })).toBe(
      "ip=10.200.0.2::10.200.0.1:255.255.255.0::eth0:off:192.0.2.53",
    );
  });

  it("accepts a /31 (RFC 3021: both addresses usable)", () => {
    expect(guestBootArg({ guestIp: "10.200.0.0", hostIp: "10.200.0.1", prefix: 31 })).toBe(
      "ip=10.200.0.0::10.200.0.1:255.255.255.254::eth0:off",
    );
  });

  it("never emits a /32 netmask: the kernel would guess a /8 for 10.x", () => {
    // The naive rendering of our /32 peer addressing, read by the kernel:
    expect(kernelReads("ip=10.200.0.2::10.200.0.1:255.255.255.255::eth0:off").prefix).toBe(8);
    expect(() => guestBootArg({ guestIp: "10.200.0.2", hostIp: "10.200.0.1", prefix: 32 })).toThrow(
      expect.objectContaining({ field: "prefix" }),
    );
  });

  it.each([
    [{ prefix: 0 }, "prefix"],
    [{ prefix: 33 }, "prefix"],
    [{ prefix: 16.5 }, "prefix"],
    [{ guestIp: "10.200.0.1" }, "guestIp"],
    [{ guestIp: "10.201.0.2" }, "guestIp"],
    [{ guestIp: "10.200.0.0" }, "guestIp"],
    [{ guestIp: "10.200.255.255" }, "guestIp"],
    [{ guestIp: "10.200.0.2:80" }, "guestIp"],
    [{ guestIp: "10.200.0.2 init=/bin/sh" }, "guestIp"],
    [{ hostIp: "10.200.1" }, "hostIp"],
    [{ dns: ["192.0.2.1", "192.0.2.2", "192.0.2.3"] }, "dns"],
    [{ dns: ["192.0.2.1", "nope"] }, "dns[1]"],
    [{ ifname: "eth0:1" }, "ifname"],
    [{ ifname: "a".repeat(16) }, "ifname"],
    [{ hostname: "vm 1" }, "hostname"],
    [{ hostname: "vm:1" }, "hostname"],
    [{ hostname: "-vm" }, "hostname"],
    [{ hostname: "a".repeat(65) }, "hostname"],
  ])("rejects %j (field %s)", (bad, field) => {
    const call = () => guestBootArg({ guestIp: "10.200.0.2", hostIp: "10.200.0.1", prefix: 16, ...bad });
    expect(call).toThrow(ValidationError);
    expect(call).toThrow(expect.objectContaining({ field }));
  });

  it("gives the guest exactly its address, the subnet's prefix and a default route via the host", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.nat(),
        fc.nat(),
        fc.nat(),
        (prefix, netSeed, hostSeed, guestSeed) => {
          const mask = prefixMask(prefix);
          const size = (~mask >>> 0) + 1;
          const net = (netSeed * 2 ** 16 + (netSeed % 65536)) & mask;
          const host = (net + 1 + (hostSeed % (size - 2))) >>> 0;
          const guest = (net + 1 + (guestSeed % (size - 2))) >>> 0;
          fc.pre(host !== guest);
          const arg = guestBootArg({ guestIp: intToIPv4(guest), hostIp: intToIPv4(host), prefix });
          expect(arg).not.toMatch(/\s/);
          expect(kernelReads(arg)).toEqual({
            address: intToIPv4(guest),
            prefix,
            gateway: intToIPv4(host),
            dev: "eth0",
          });
        },
      ),
    );
  });
});

describe("prefixToNetmask", () => {
  it.each([
    [0, "0.0.0.0"],
    [1, "128.0.0.0"],
    [16, "255.255.0.0"],
    [23, "255.255.254.0"],
    [32, "255.255.255.255"],
  ])("/%i → %s", (p, m) => expect(prefixToNetmask(p)).toBe(m));
  it.each([-1, 33, 1.5, Number.NaN])("rejects %s", (p) =>
    expect(() => prefixToNetmask(p)).toThrow(expect.objectContaining({ field: "prefix" })),
  );
});
