// The facade refuses bad input before it touches anything (no kernel needed to see it).
import { describe, expect, it } from "vitest";
import { optionsOf } from "../../src/api/context.js";
import { renderBootstrap } from "../../src/firewall/ruleset.js";
import {
  addPortMapping,
  bootstrap,
  createPointToPointTap,
  createTap,
  deleteTap,
  HostNetwork,
  parseHostInterface,
  removePortMapping,
  teardown,
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

// A fake netlink handle keeps context() from opening the process-wide socket: every call below must
// fail in validation, before any handle is used.
const noKernel = { netlink: {} as never };

describe("options = null means the defaults", () => {
  it("optionsOf: null and undefined give {}, an object is itself, anything else is refused", () => {
    expect(optionsOf(null)).toEqual({});
    expect(optionsOf(undefined)).toEqual({});
    const o = { table: "t" };
    expect(optionsOf(o)).toBe(o);
    for (const bad of [5, "x", true, 10n, Symbol("o")]) {
      expect(() => optionsOf(bad as never)).toThrow(expect.objectContaining({ field: "options" }));
    }
  });
  it("createTap/createPointToPointTap/deleteTap with null options still validate their arguments", async () => {
    // Before: TypeError "Cannot read properties of null (reading 'mtu')".
    await expect(createTap("t 0", "10.9.0.1/24", null)).rejects.toMatchObject({ field: "name" });
    await expect(createTap("t0", "10.9.0.1/33", null)).rejects.toMatchObject({ field: "cidr" });
    await expect(createPointToPointTap("t0", "10.9.0.1", "10.9.0.1", 0, 0, null)).rejects.toMatchObject({
      field: "guestIp",
    });
    await expect(deleteTap("a/b", null)).rejects.toMatchObject({ field: "name" });
    await expect(addPortMapping("", 0, "10.9.0.2", 80, "tcp", null)).rejects.toMatchObject({
      field: "hostPort",
    });
    await expect(removePortMapping("", 80, "10.9.0.2", 80, "icmp", null)).rejects.toMatchObject({
      field: "protocol",
    });
    await expect(createTap("t0", "10.9.0.1/24", 5 as never)).rejects.toMatchObject({ field: "options" });
  });
});

describe("odd values are refused with a ValidationError naming the field", () => {
  it("a BigInt address", async () => {
    await expect(createPointToPointTap("t5", 10n as never, "10.9.0.2", 0, 0)).rejects.toMatchObject({
      field: "hostIp",
      code: "ERR_INVALID_ADDRESS",
    });
    await expect(createTap("t5", 10n as never)).rejects.toMatchObject({ field: "cidr" });
  });
  it("a null-prototype object as a port, uid or MTU", async () => {
    const np = Object.create(null);
    await expect(addPortMapping("", np, "10.9.0.2", 80, "tcp")).rejects.toMatchObject({ field: "hostPort" });
    await expect(createPointToPointTap("t5", "10.9.0.1", "10.9.0.2", np, 0)).rejects.toMatchObject({
      field: "uid",
    });
    await expect(createTap("t5", "10.9.0.1/24", { mtu: np })).rejects.toMatchObject({ field: "mtu" });
  });
  it("a Symbol as hostInterface", async () => {
    expect(() => parseHostInterface(Symbol() as never)).toThrow(
      expect.objectContaining({ field: "hostInterface" }),
    );
    await expect(addPortMapping(Symbol() as never, 80, "10.9.0.2", 80, "tcp")).rejects.toBeInstanceOf(
      ValidationError,
    );
  });
});

describe("TAP limits the kernel enforces are checked first", () => {
  it.each([65522, 65535])("MTU %d is above a TAP's max_mtu 65521", async (mtu) => {
    await expect(createTap("t0", "10.9.0.1/24", { mtu })).rejects.toMatchObject({
      field: "mtu",
      code: "ERR_INVALID_MTU",
    });
    await expect(createPointToPointTap("t0", "10.9.0.1", "10.9.0.2", 0, 0, { mtu })).rejects.toMatchObject({
      field: "mtu",
    });
  });
  it("attach refuses MTU 65522 before the database is touched", async () => {
    const hn = Object.create(HostNetwork.prototype) as HostNetwork;
    await expect(hn.attach("vm1", { mtu: 65522 })).rejects.toMatchObject({ field: "mtu" });
  });
  it.each(["all", "default"])("the reserved name %s", async (name) => {
    await expect(createTap(name, "10.9.0.1/24")).rejects.toMatchObject({ field: "name" });
    await expect(createPointToPointTap(name, "10.9.0.1", "10.9.0.2", 0, 0)).rejects.toMatchObject({
      field: "name",
    });
  });
});

describe("bootstrap, teardown and HostNetwork refuse non-array lists and non-string paths", () => {
  it.each([
    ["guestToHost", {}],
    ["guestToHost", "tcp:22"],
    ["blockedDestinations", "10.0.0.0/8"],
    ["blockedDestinations", {}],
  ])("%s = %j", async (field, value) => {
    expect(() => renderBootstrap({ [field]: value })).toThrow(expect.objectContaining({ field }));
    await expect(bootstrap({ ...noKernel, [field]: value })).rejects.toMatchObject({ field });
  });
  it("guestToHost entries that are not objects name their index", () => {
    expect(() => renderBootstrap({ guestToHost: [5 as never] })).toThrow(
      expect.objectContaining({ field: "guestToHost[0].protocol" }),
    );
  });
  it("stateDir / statePath must be a path", async () => {
    await expect(bootstrap({ stateDir: 5 as never })).rejects.toMatchObject({ field: "stateDir" });
    await expect(teardown({ stateDir: 5 as never })).rejects.toMatchObject({ field: "stateDir" });
    await expect(HostNetwork.open({ statePath: 5 as never })).rejects.toMatchObject({ field: "statePath" });
  });
  it("detachMany needs an array", async () => {
    // Validation runs before the instance's state is used, so a bare prototype object is enough.
    const hn = Object.create(HostNetwork.prototype) as HostNetwork;
    await expect(hn.detachMany("abc" as never)).rejects.toMatchObject({ field: "vmIds" });
  });
});
