import { describe, expect, it } from "vitest";
import { ValidationError } from "../../src/core/errors.js";
import {
  describe as describeValue,
  parseCidr,
  validateArray,
  validateId,
  validateIfName,
  validateIPv4,
  validatePath,
  validatePort,
  validateProtocol,
  validateTapMtu,
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

describe("describe: any value, never a TypeError", () => {
  it.each([
    ["tap0", '"tap0"'],
    [10n, "10n"],
    [Symbol("s"), "Symbol(s)"],
    [Object.create(null), "an object without prototype"],
    [null, "null"],
    [undefined, "undefined"],
    [-0, "-0"],
    [[1, 2], "an array of 2"],
    [new Map(), "a Map"],
    [{}, "an object"],
    [() => 1, "a function"],
  ])("describes %s", (v, text) => expect(describeValue(v)).toBe(text));
  it("cuts a long string", () => expect(describeValue("x".repeat(100)).length).toBeLessThan(70));
});

// Each of these threw a plain TypeError from its error path (JSON.stringify(10n), String() of a
// null-prototype object, RegExp.test(Symbol())) instead of naming the field.
describe("validators refuse BigInt, Symbol and null-prototype values with a ValidationError", () => {
  const odd: unknown[] = [10n, Symbol("x"), Object.create(null)];
  const validators: Array<[string, (v: unknown) => unknown]> = [
    ["validateIPv4", (v) => validateIPv4(v, "f")],
    ["parseCidr", (v) => parseCidr(v, "f")],
    ["validatePort", (v) => validatePort(v, "f")],
    ["validateProtocol", (v) => validateProtocol(v, "f")],
    ["validateId", (v) => validateId(v, "f")],
    ["validateIfName", (v) => validateIfName(v, "f")],
    ["validateTapMtu", (v) => validateTapMtu(v, "f")],
    ["validatePath", (v) => validatePath(v, "f")],
    ["validateArray", (v) => validateArray(v, "f")],
  ];
  for (const [name, f] of validators) {
    it(name, () => {
      for (const v of odd) {
        expect(() => f(v)).toThrow(ValidationError);
        expect(() => f(v)).toThrow(expect.objectContaining({ field: "f" }));
      }
    });
  }
});

describe("validateIfName: reserved names", () => {
  // /proc/sys/net/{ipv4,ipv6}/conf/{all,default}: register_netdevice() refuses these with EINVAL.
  it.each(["all", "default"])("refuses %s", (n) =>
    expect(() => validateIfName(n)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_NAME", field: "name" }),
    ),
  );
  it.each(["All", "all0", "defaults"])("accepts the near-miss %s", (n) => expect(validateIfName(n)).toBe(n));
});

describe("validateTapMtu: 68-65521 (tun.c max_mtu = MAX_MTU - ETH_HLEN)", () => {
  it.each([68, 1500, 9000, 65521])("accepts %d", (m) => expect(validateTapMtu(m)).toBe(m));
  it.each([67, 65522, 65535, 65536, 1.5, "1500", null])("refuses %j", (m) =>
    expect(() => validateTapMtu(m)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_MTU", field: "mtu" }),
    ),
  );
});

describe("validatePath and validateArray", () => {
  it.each([5, "", "a\0b", null, {}])("validatePath refuses %j", (v) =>
    expect(() => validatePath(v, "stateDir")).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_PATH", field: "stateDir" }),
    ),
  );
  it("validatePath accepts a path", () => expect(validatePath("/run/x", "p")).toBe("/run/x"));
  it.each([{}, "10.0.0.0/8", 5, null])("validateArray refuses %j", (v) =>
    expect(() => validateArray(v, "guestToHost")).toThrow(expect.objectContaining({ field: "guestToHost" })),
  );
  it("validateArray returns the array", () => expect(validateArray([1], "f")).toEqual([1]));
});
