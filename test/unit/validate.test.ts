import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/core/errors.js";
import {
  parseCidr,
  validateIfName,
  validateIPv4,
  validatePort,
  validateProtocol,
} from "../../src/core/validate.js";

describe("validateIfName", () => {
  it.each(["tap0", "fc-tap_1.2", "a".repeat(15)])("accepts %s", (n) => expect(validateIfName(n)).toBe(n));
  it.each(["", ".", "..", "a".repeat(16), "tap/0", "tap:0", "tap 0", "täp"])("rejects %j", (n) => {
    expect(() => validateIfName(n)).toThrow(ValidationError);
    expect(() => validateIfName(n)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_NAME", field: "name" }),
    );
  });
});

describe("addresses and ports", () => {
  it("normalises a CIDR with host bits set, as Go's ParseCIDR does", () => {
    expect(parseCidr("10.200.3.7/16")).toEqual({ address: "10.200.3.7", network: "10.200.0.0", prefix: 16 });
  });
  it.each(["10.0.0.0", "10.0.0.0/33", "10.0.0/8", "300.0.0.0/8", "::1/128"])("rejects CIDR %j", (c) =>
    expect(() => parseCidr(c)).toThrow(expect.objectContaining({ code: "ERR_INVALID_CIDR" })),
  );
  it.each(["10.1", "1.2.3.4.5", "256.1.1.1", "", "::1"])("rejects IPv4 %j", (a) =>
    expect(() => validateIPv4(a)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ADDRESS" })),
  );
  it.each([0, -1, 65536, 1.5, Number.NaN, "80"])("rejects port %j", (p) =>
    expect(() => validatePort(p)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_PORT", field: "port" }),
    ),
  );
  it("accepts tcp/udp in any case and rejects others", () => {
    expect(validateProtocol("TCP")).toBe("tcp");
    expect(() => validateProtocol("icmp")).toThrow(expect.objectContaining({ field: "protocol" }));
  });
});
