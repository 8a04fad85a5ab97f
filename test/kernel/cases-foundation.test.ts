// Cases C1, C2, C7, C8, C9 of the real-world list (shared/cases), on real kernel objects in a
// private network namespace. C3–C6 are unit tests of the allocators; C13 is in tun.test.ts and in
// the end-to-end foundation test.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import {
  AlreadyExistsError,
  addPortMapping,
  bootstrap,
  createPointToPointTap,
  deleteTap,
  listPortMappings,
  removePortMapping,
  teardown,
  ValidationError,
} from "../../src/index.js";
import { readBootstrapState } from "../../src/store/bootstrap-state.js";
import { callInChild } from "../helpers/child.js";
import {
  ipJson,
  isRealRoot,
  kernelDescribe,
  makeInternet,
  nftJson,
  readSysctl,
  sh,
} from "../helpers/kernel.js";

type Rule = { rule: { chain: string; expr: unknown[] } };
const ourRules = () =>
  nftJson()
    .filter((o): o is Rule => "rule" in o && (o.rule as { table?: string }).table === "microvm_net")
    .map((o) => `${o.rule.chain} ${JSON.stringify(o.rule.expr)}`);
const ourTables = () =>
  nftJson().filter((o) => "table" in o && (o.table as { name: string }).name === "microvm_net");
const root = new URL("../..", import.meta.url).pathname;
const links = () => ipJson<Array<{ ifname: string }>>("link", "show").map((l) => l.ifname);

kernelDescribe("real-world cases (foundation)", () => {
  afterEach(async () => {
    await teardown();
  });

  it("C1: bootstrap three times leaves exactly one copy of each rule; teardown leaves none", async () => {
    await bootstrap();
    const once = ourRules();
    expect(once.length).toBeGreaterThan(5);
    await bootstrap();
    await bootstrap();
    const thrice = ourRules();
    expect(thrice).toEqual(once);
    expect(new Set(thrice).size).toBe(thrice.length);
    await teardown();
    expect(ourTables()).toEqual([]);
    expect(readSysctl("net/ipv4/ip_forward")).toBe("0");
  });

  it("C2: teardown after the default route moved to another uplink leaves nothing of ours", async () => {
    makeInternet("inet0", "uplink0", "192.0.2");
    makeInternet("inet1", "uplink1", "203.0.113", false);
    await bootstrap();
    await addPortMapping("", 8080, "10.200.0.2", 80, "tcp");
    sh("ip", ["route", "replace", "default", "via", "203.0.113.1", "dev", "uplink1"]);
    await teardown();
    expect(ourTables()).toEqual([]);
    expect(sh("nft", ["list", "ruleset"])).not.toMatch(/uplink|microvm/);
    expect(readSysctl("net/ipv4/ip_forward")).toBe("0");
    // Deleting the host ends is synchronous (a namespace's own clean-up runs later, in the background).
    for (const l of ["uplink0", "uplink1"]) sh("ip", ["link", "del", l]);
    for (const n of ["inet0", "inet1"]) sh("ip", ["netns", "del", n]);
  });

  it("C7: invalid names are rejected before any syscall; an existing name is refused and left untouched", async () => {
    const before = links();
    for (const bad of ["tap-a-very-long-vm-id", "tap/0", "tap:0", "tap 0", "", ".", ".."]) {
      await expect(createPointToPointTap(bad, "10.200.0.1", "10.200.0.2", 0, 0)).rejects.toBeInstanceOf(
        ValidationError,
      );
    }
    expect(links()).toEqual(before);
    const made = await createPointToPointTap("tap-c7", "10.200.0.1", "10.200.0.2", 0, 0, { mtu: 1400 });
    await expect(createPointToPointTap("tap-c7", "10.200.0.1", "10.200.0.3", 0, 0)).rejects.toBeInstanceOf(
      AlreadyExistsError,
    );
    const [after] = ipJson<Array<{ ifindex: number; mtu: number }>>("link", "show", "tap-c7");
    expect(after?.ifindex).toBe(made.index);
    expect(after?.mtu).toBe(1400);
    const addrs = ipJson<Array<{ addr_info: Array<{ local: string; address?: string }> }>>(
      "addr",
      "show",
      "tap-c7",
    );
    expect(addrs[0]?.addr_info.map((a) => a.address)).toEqual(["10.200.0.2"]);
    await deleteTap("tap-c7");
  });

  it("C8: deleting a missing TAP succeeds; without CAP_NET_ADMIN it is a permission error, and the TAP stays", async () => {
    await expect(deleteTap("tap-absent")).resolves.toBeUndefined();
    await createPointToPointTap("tap-c8", "10.200.0.1", "10.200.0.2", 0, 0);
    if (isRealRoot()) {
      const r = callInChild("deleteTap", ["tap-c8"], { uid: 1234, gid: 1234 });
      expect(r.ok).toBe(false);
      expect(r.error?.code).toBe("EPERM");
      expect(links()).toContain("tap-c8");
    }
    await deleteTap("tap-c8");
    expect(links()).not.toContain("tap-c8");
  });

  it("C8: a device that is not ours (a veth) is refused, not deleted", async () => {
    sh("ip", ["link", "add", "eth9", "type", "veth", "peer", "name", "eth9p"]);
    await expect(deleteTap("eth9")).rejects.toMatchObject({ code: "ERR_NOT_OURS" });
    expect(links()).toContain("eth9");
  });

  it("C9: the same mapping twice is one mapping; one remove leaves none", async () => {
    await addPortMapping("", 8080, "10.200.0.2", 80, "tcp");
    await addPortMapping("", 8080, "10.200.0.2", 80, "tcp");
    expect(await listPortMappings()).toEqual([
      { protocol: "tcp", host: { kind: "any" }, hostPort: 8080, guestIp: "10.200.0.2", guestPort: 80 },
    ]);
    await removePortMapping("", 8080, "10.200.0.2", 80, "tcp");
    expect(await listPortMappings()).toEqual([]);
    await removePortMapping("", 8080, "10.200.0.2", 80, "tcp");
  });

  it("a different guest on the same host port is a conflict naming the owner; tcp and udp are independent", async () => {
    await addPortMapping("", 8080, "10.200.0.2", 80, "tcp");
    await expect(addPortMapping("", 8080, "10.200.0.3", 80, "tcp")).rejects.toMatchObject({
      code: "ERR_CONFLICT",
      message: expect.stringContaining("10.200.0.2:80"),
    });
    await addPortMapping("", 8080, "10.200.0.3", 80, "udp");
    await removePortMapping("", 8080, "10.200.0.3", 80, "tcp"); // not its mapping: nothing happens
    expect((await listPortMappings()).map((m) => `${m.protocol} ${m.guestIp}`).sort()).toEqual([
      "tcp 10.200.0.2",
      "udp 10.200.0.3",
    ]);
  });

  it("teardown from another process restores the sysctl bootstrap changed", async () => {
    await bootstrap();
    expect(readSysctl("net/ipv4/ip_forward")).toBe("1");
    const r = callInChild("teardown", []);
    expect(r).toEqual({ ok: true, result: null });
    expect(readSysctl("net/ipv4/ip_forward")).toBe("0");
    expect(ourTables()).toEqual([]);
  });
});

kernelDescribe("foundation: what a new user tried", () => {
  afterEach(async () => {
    await teardown();
  });

  it("teardown of another table leaves the bootstrapped one, its record and ip_forward alone", async () => {
    await bootstrap();
    await teardown({ table: "microvm_net2" });
    expect(readSysctl("net/ipv4/ip_forward")).toBe("1");
    expect(readBootstrapState()?.table).toBe("microvm_net");
    expect(ourTables()).toHaveLength(1);
    await teardown();
    expect(readSysctl("net/ipv4/ip_forward")).toBe("0");
    expect(readBootstrapState()).toBeUndefined();
  });

  it("bootstrap refuses a subnet that would capture the host's own traffic, and touches nothing", async () => {
    const net = makeInternet();
    for (const subnet of ["0.0.0.0/0", "10.0.0.0/7", "10.200.0.0/31", "192.0.2.0/24", "192.0.0.0/16"]) {
      await expect(bootstrap({ subnet })).rejects.toMatchObject({
        code: "ERR_INVALID_ARGUMENT",
        field: "subnet",
      });
    }
    expect(ourTables()).toEqual([]);
    expect(readSysctl("net/ipv4/ip_forward")).toBe("0");
    expect(readBootstrapState()).toBeUndefined();
    expect(net.hostIp).toBe("192.0.2.2");
  });

  it("a bootstrap that fails in nftables restores ip_forward and leaves no record", async () => {
    const failing = {
      kind: "nft-process" as const,
      run: async () => {
        throw new Error("injected nftables failure");
      },
      close: () => undefined,
    };
    await expect(bootstrap({ nft: failing })).rejects.toThrow("injected nftables failure");
    expect(readSysctl("net/ipv4/ip_forward")).toBe("0");
    expect(readBootstrapState()).toBeUndefined();
  });

  it("a TAP made after its loopback mapping still gets route_localnet; teardown clears it", async () => {
    await bootstrap();
    await addPortMapping("127.0.0.1", 8080, "10.200.0.9", 80, "tcp");
    await createPointToPointTap("tap-late", "10.200.0.1", "10.200.0.9", 0, 0);
    await createPointToPointTap("tap-other", "10.200.0.1", "10.200.0.10", 0, 0);
    expect(readSysctl("net/ipv4/conf/tap-late/route_localnet")).toBe("1");
    expect(readSysctl("net/ipv4/conf/tap-other/route_localnet")).toBe("0");
    await teardown();
    expect(readSysctl("net/ipv4/conf/tap-late/route_localnet")).toBe("0");
    await deleteTap("tap-late");
    await deleteTap("tap-other");
  });

  it("removing a guest's last loopback mapping takes route_localnet off its TAP, and its hint", async () => {
    await bootstrap();
    await createPointToPointTap("tap-lo", "10.200.0.1", "10.200.0.11", 0, 0);
    const localnet = () => readSysctl("net/ipv4/conf/tap-lo/route_localnet");
    await addPortMapping("", 8081, "10.200.0.11", 80, "tcp");
    await addPortMapping("127.0.0.1", 8082, "10.200.0.11", 81, "udp");
    await addPortMapping("192.0.2.77", 8083, "10.200.0.11", 82, "tcp"); // not via 127.0.0.1
    expect(localnet()).toBe("1");
    expect(await removePortMapping("", 8081, "10.200.0.11", 80, "tcp")).toBe(true);
    expect(localnet()).toBe("1"); // the 127.0.0.1 mapping still needs it
    expect(await removePortMapping("127.0.0.1", 8082, "10.200.0.11", 81, "udp")).toBe(true);
    expect(localnet()).toBe("0");
    await deleteTap("tap-lo");
    // No hint is left: a TAP made again for that guest does not get route_localnet.
    await createPointToPointTap("tap-lo", "10.200.0.1", "10.200.0.11", 0, 0);
    expect(localnet()).toBe("0");
    await removePortMapping("192.0.2.77", 8083, "10.200.0.11", 82, "tcp");
    await deleteTap("tap-lo");
    await teardown();
  });

  it("a process killed in the middle of creating a TAP leaves no TAP behind", async () => {
    // Kill the child when it opens the IPv6 sysctl of the new TAP: after TUNSETIFF, before the TAP
    // is marked as ours and made persistent.
    const script = `import { createPointToPointTap } from "${new URL("../../src/index.ts", import.meta.url).pathname}";
await createPointToPointTap("tap-kill", "10.200.0.1", "10.200.0.2", 0, 0);`;
    const r = spawnSync(
      "strace",
      [
        "-f",
        "-o",
        "/dev/null",
        "-P",
        "/proc/sys/net/ipv6/conf/tap-kill/disable_ipv6",
        "-e",
        "trace=openat",
        "-e",
        "inject=openat:signal=KILL",
        join(root, "node_modules", ".bin", "tsx"),
        "-e",
        script,
      ],
      { encoding: "utf8", cwd: root },
    );
    expect(r.status).not.toBe(0);
    expect(links()).not.toContain("tap-kill");
    await createPointToPointTap("tap-kill", "10.200.0.1", "10.200.0.2", 0, 0);
    await deleteTap("tap-kill");
  });
});
