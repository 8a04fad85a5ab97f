// C11 (pure part): the default ephemeral range never hands out a port of the kernel's own ephemeral
// range or a reserved port. The kernel part reads the real sysctls (test/kernel/host-network.test.ts).
import { describe, expect, it } from "vitest";
import { ExhaustedError, ValidationError } from "../../src/core/errors.js";
import {
  DEFAULT_EPHEMERAL_RANGE,
  ephemeralPorts,
  parseLocalPortRange,
  parseReservedPorts,
} from "../../src/host/port-space.js";

describe("local port sysctls", () => {
  it("parses ip_local_port_range and ip_local_reserved_ports as the kernel prints them", () => {
    expect(parseLocalPortRange("32768\t60999\n")).toEqual({ start: 32768, end: 60999 });
    expect(parseReservedPorts("")).toEqual([]);
    expect(parseReservedPorts("30005,31000-31002\n")).toEqual([
      { start: 30005, end: 30005 },
      { start: 31000, end: 31002 },
    ]);
    expect(() => parseReservedPorts("x")).toThrow(ValidationError);
  });
});

describe("C11: ephemeral ports", () => {
  it("lie outside ip_local_port_range and skip ip_local_reserved_ports", () => {
    const policy = {
      localRange: { start: 32768, end: 60999 },
      reserved: parseReservedPorts("30005,31000-31002"),
    };
    const ports = ephemeralPorts(DEFAULT_EPHEMERAL_RANGE, policy);
    expect(ports[0]).toBe(30000);
    expect(ports.at(-1)).toBe(32767);
    expect(ports).not.toContain(30005);
    expect(ports.filter((p) => p >= 31000 && p <= 31002)).toEqual([]);
    expect(ports.length).toBe(2768 - 4);
    // A widened kernel range takes its ports out of ours.
    const wide = ephemeralPorts(DEFAULT_EPHEMERAL_RANGE, {
      localRange: { start: 31000, end: 60999 },
      reserved: [],
    });
    expect(wide.at(-1)).toBe(30999);
  });

  it("refuse a range swallowed by the kernel's with a message saying why", () => {
    expect(() =>
      ephemeralPorts(DEFAULT_EPHEMERAL_RANGE, { localRange: { start: 1024, end: 65535 }, reserved: [] }),
    ).toThrow(ExhaustedError);
    expect(() =>
      ephemeralPorts({ start: 10, end: 5 }, { localRange: { start: 1, end: 1 }, reserved: [] }),
    ).toThrow(ValidationError);
  });
});
