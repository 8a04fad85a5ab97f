import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { intToIPv4 } from "../../src/core/validate.js";
import { guestMac } from "../../src/guest/index.js";

describe("guestMac", () => {
  it("is 06:00 followed by the guest address bytes", () => {
    expect(guestMac("10.200.0.2")).toBe("06:00:0a:c8:00:02");
    expect(guestMac("255.0.16.1")).toBe("06:00:ff:00:10:01");
  });

  it("is locally administered, unicast, and the same for the same address", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (n) => {
        const mac = guestMac(intToIPv4(n));
        expect(mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
        const first = Number.parseInt(mac.slice(0, 2), 16);
        expect(first & 0x02).toBe(0x02); // locally administered
        expect(first & 0x01).toBe(0); // unicast
        expect(guestMac(intToIPv4(n))).toBe(mac);
      }),
    );
  });

  it("gives distinct MACs to 1 000 guests of a subnet (C20)", () => {
    const macs = new Set<string>();
    for (let i = 2; i < 1002; i++) macs.add(guestMac(intToIPv4(0x0ac80000 + i)));
    expect(macs.size).toBe(1000);
  });

  it.each(["10.200.0", "10.200.0.256", "", "::1"])("rejects %j", (ip) =>
    expect(() => guestMac(ip)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ADDRESS", field: "guestIp" }),
    ),
  );
});
