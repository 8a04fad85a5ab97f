// The facade refuses bad input before it touches anything (no kernel needed to see it).
import { describe, expect, it } from "vitest";
import {
  addPortMapping,
  createPointToPointTap,
  createTap,
  parseHostInterface,
  ValidationError,
} from "../../src/index.js";

describe("parseHostInterface", () => {
  it.each([
    ["", { kind: "any" }],
    ["0.0.0.0", { kind: "any" }],
    ["192.0.2.2", { kind: "address", ip: "192.0.2.2" }],
    ["127.0.0.1", { kind: "address", ip: "127.0.0.1" }],
    ["eth0", { kind: "interface", name: "eth0" }],
    ["br-lan.10", { kind: "interface", name: "br-lan.10" }],
  ])("reads %j", (text, expected) => expect(parseHostInterface(text)).toEqual(expected));

  it.each(["192.168.1.300", "10.1", "010.0.0.1", "1.2.3.4.5"])(
    "refuses the mistyped address %j instead of taking it for an interface name",
    (text) =>
      expect(() => parseHostInterface(text)).toThrow(expect.objectContaining({ field: "hostInterface" })),
  );

  it("refuses lo (nothing arrives on it from outside) and hostile names", () => {
    expect(() => parseHostInterface("lo")).toThrow(/127\.0\.0\.1/);
    for (const bad of ['eth0" accept', "a b", "x".repeat(16), "eth0;flush"]) {
      expect(() => parseHostInterface(bad)).toThrow(ValidationError);
    }
  });
});

describe("validation before anything is touched", () => {
  it.each(["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"])(
    "createPointToPointTap refuses the non-unicast guest address %s",
    async (ip) => {
      await expect(createPointToPointTap("tap0", "10.200.0.1", ip, 0, 0)).rejects.toMatchObject({
        code: "ERR_INVALID_ADDRESS",
        field: "guestIp",
      });
    },
  );

  it("createTap refuses 0.0.0.0/0, a multicast CIDR and a /31", async () => {
    for (const cidr of ["0.0.0.0/0", "224.0.0.1/4", "10.0.0.1/31"]) {
      await expect(createTap("tap0", cidr)).rejects.toMatchObject({ field: "cidr" });
    }
  });

  it("addPortMapping names the bad field", async () => {
    await expect(addPortMapping("", 0, "10.200.0.2", 80, "tcp")).rejects.toMatchObject({ field: "hostPort" });
    await expect(addPortMapping("", 80, "10.200.0.2", 70000, "tcp")).rejects.toMatchObject({
      field: "guestPort",
    });
    await expect(addPortMapping("", 80, "10.200.0.256", 80, "tcp")).rejects.toMatchObject({
      field: "guestIp",
    });
    await expect(addPortMapping("", 80, "10.200.0.2", 80, "icmp")).rejects.toMatchObject({
      field: "protocol",
    });
  });
});
