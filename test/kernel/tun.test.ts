import { createSocket } from "node:dgram";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { createPointToPointTap, createTap, deleteTap } from "../../src/api/tap.js";
import { AlreadyExistsError, KernelError, ValidationError } from "../../src/core/errors.js";
import { O_CLOEXEC, O_RDWR, sysClose, sysIoctlPtr, sysOpen } from "../../src/kernel/ffi.js";
import {
  encodeIfreq,
  IFF_NO_PI,
  IFF_TAP,
  IFF_TUN_EXCL,
  IFF_VNET_HDR,
  TUNGETIFF,
  TUNSETGROUP,
  TUNSETIFF,
  TUNSETOWNER,
  TUNSETPERSIST,
  tapClose,
  tapCreate,
  tapOpen,
} from "../../src/kernel/tun.js";
import { type FakeGuest, startFakeGuest, unreadableFor } from "../helpers/fake-guest.js";
import { ipJson, isRealRoot, kernelDescribe, readSysctl, sh } from "../helpers/kernel.js";

interface Link {
  ifindex: number;
  ifname: string;
  address: string;
  num_tx_queues?: number;
  linkinfo?: { info_kind: string; info_data?: Record<string, unknown> };
}

const links = (): Link[] => ipJson<Link[]>("-d", "link", "show");
const link = (name: string): Link | undefined => links().find((l) => l.ifname === name);
const tsxLoader = createRequire(import.meta.url).resolve("tsx");
const repoRoot = new URL("../..", import.meta.url).pathname;

const realRoot = isRealRoot();
const needRoot = realRoot
  ? undefined
  : "skipped: needs real root (uid 1234/4321 do not exist in a rootless user namespace, GUIDE §4)";
if (needRoot) console.log(`tun.test.ts: other-uid tests ${needRoot}`);
// The owner given to tapCreate must be mapped in our user namespace: only 0 is, when rootless.
const OWNER = realRoot ? 1234 : 0;
/** How `ip -d` prints that owner: it resolves known ids to names. */
const SHOWN = realRoot ? 1234 : "root";

/** Runs ES module code in a fresh `node --import tsx` child (optionally under `wrapper`); returns stdout. */
function runModule(code: string, wrapper: string[] = []): string {
  const argv = [
    process.execPath,
    "--import",
    pathToFileURL(tsxLoader).href,
    "--input-type=module",
    "-e",
    code,
  ];
  const all = [...wrapper, ...argv];
  return sh(all[0] as string, all.slice(1)).trim();
}

describe("ioctl numbers (include/uapi/linux/if_tun.h through asm-generic/ioctl.h)", () => {
  it("match the values the kernel headers expand to", () => {
    expect(TUNSETIFF).toBe(0x400454ca);
    expect(TUNSETPERSIST).toBe(0x400454cb);
    expect(TUNSETOWNER).toBe(0x400454cc);
    expect(TUNSETGROUP).toBe(0x400454ce);
    expect(TUNGETIFF).toBe(0x800454d2);
  });
  it("lays out struct ifreq as name[16] + flags at offset 16, 40 bytes", () => {
    const b = encodeIfreq("tap0", IFF_TAP | IFF_NO_PI);
    expect(b.length).toBe(40);
    expect(b.subarray(0, 5).toString("latin1")).toBe("tap0\0");
    expect(b.readUInt16LE(16)).toBe(0x1002);
  });
});

kernelDescribe("tapCreate", () => {
  it("makes a persistent single-queue vnet_hdr TAP owned by the given uid/gid, left down", () => {
    tapCreate({ name: "tap-own", uid: OWNER, gid: OWNER });
    const l = link("tap-own");
    expect(l?.linkinfo?.info_kind).toBe("tun");
    expect(l?.linkinfo?.info_data).toMatchObject({
      type: "tap",
      pi: false,
      vnet_hdr: true,
      multi_queue: false,
      persist: true,
      user: SHOWN,
      group: SHOWN,
    });
    expect(l?.num_tx_queues).toBe(1);
    expect(ipJson<Array<{ operstate: string }>>("link", "show", "tap-own")[0]?.operstate).toBe("DOWN");
  });

  it("sets no owner when none is given, and honours vnetHdr: false", () => {
    tapCreate({ name: "tap-plain", vnetHdr: false });
    const data = link("tap-plain")?.linkinfo?.info_data;
    expect(data).toMatchObject({ type: "tap", vnet_hdr: false, persist: true });
    expect(data).not.toHaveProperty("user");
    expect(data).not.toHaveProperty("group");
  });

  it("refuses an existing name with AlreadyExistsError and leaves that device untouched (C7)", () => {
    tapCreate({ name: "tap-dup", uid: OWNER, gid: OWNER });
    const before = link("tap-dup");
    let err: unknown;
    try {
      tapCreate({ name: "tap-dup", uid: 4321, gid: 4321, vnetHdr: false });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect((err as AlreadyExistsError).code).toBe("ERR_ALREADY_EXISTS");
    expect(((err as Error).cause as KernelError).code).toBe("EBUSY");
    expect(link("tap-dup")).toEqual(before);
    expect(before?.linkinfo?.info_data).toMatchObject({ user: SHOWN, group: SHOWN, vnet_hdr: true });
  });

  it("refuses the name of a link that is not a TAP, too", () => {
    sh("ip", ["link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b"]);
    const before = link("veth-a");
    expect(() => tapCreate({ name: "veth-a" })).toThrow(AlreadyExistsError);
    expect(link("veth-a")).toEqual(before);
  });

  it.each(["tap-a-very-long-vm-id", "a/b", "a:b", "a b", ".", ""])(
    "rejects the name %j before any syscall (C7)",
    (name) => {
      const before = links();
      let err: unknown;
      try {
        tapCreate({ name, uid: 1234, gid: 1234 });
      } catch (e) {
        err = e;
      }
      // A KernelError would mean the kernel saw it; for the long name it would have created
      // "tap-a-very-long" (silent truncation), which the link list would show.
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).code).toBe("ERR_INVALID_NAME");
      expect(links()).toEqual(before);
    },
  );

  it.each([
    [{ uid: -1 }, "uid"],
    [{ uid: 1.5 }, "uid"],
    [{ gid: 0xffffffff }, "gid"],
  ])("rejects ids %j before any syscall", (ids, field) => {
    const before = links();
    expect(() => tapCreate({ name: "tap-ids", ...ids })).toThrow(expect.objectContaining({ field }));
    expect(links()).toEqual(before);
  });

  it("a TAP that was never made persistent disappears when its descriptor closes (the rollback)", () => {
    const fd = sysOpen("/dev/net/tun", O_RDWR | O_CLOEXEC, "test");
    try {
      sysIoctlPtr(
        fd,
        TUNSETIFF,
        encodeIfreq("tap-tmp", IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL),
        "TUNSETIFF",
        "test",
      );
      expect(link("tap-tmp")?.linkinfo?.info_data).toMatchObject({ persist: false });
    } finally {
      sysClose(fd);
    }
    expect(link("tap-tmp")).toBeUndefined();
  });

  it("rolls back when a step after TUNSETIFF fails (TUNSETOWNER of an unmapped uid in a user namespace)", () => {
    // In a user namespace mapping only uid 0, TUNSETOWNER(1234) fails with EINVAL after TUNSETIFF
    // created the device. ifindexes are handed out cyclically (net/core/dev.c dev_index_reserve), so
    // the next TAP getting ifindex 3 proves a device was created at 2 and then removed.
    const code = `
      import { execFileSync } from "node:child_process";
      import { tapCreate } from "${repoRoot}src/kernel/tun.ts";
      let err;
      try { tapCreate({ name: "tap-rb", uid: 1234, gid: 1234 }); } catch (e) { err = { code: e.code, syscall: e.syscall }; }
      tapCreate({ name: "tap-next" });
      const links = JSON.parse(execFileSync("ip", ["-j", "link", "show"], { encoding: "utf8" }));
      console.log(JSON.stringify({ err, links: links.map((l) => [l.ifname, l.ifindex]) }));`;
    const out = JSON.parse(runModule(code, ["unshare", "-U", "-r", "-n", "--"]));
    expect(out.err).toEqual({ code: "EINVAL", syscall: "ioctl(TUNSETOWNER)" });
    expect(out.links).toEqual([
      ["lo", 1],
      ["tap-next", 3],
    ]);
  });

  it.skipIf(!realRoot)("without CAP_NET_ADMIN: KernelError with isPermission", () => {
    const code = `
      import { tapCreate } from "${repoRoot}src/kernel/tun.ts";
      process.setgroups([]); process.setgid(4321); process.setuid(4321);
      try { tapCreate({ name: "tap-eperm" }); console.log("{}"); }
      catch (e) { console.log(JSON.stringify({ name: e.constructor.name, code: e.code, perm: e.isPermission, syscall: e.syscall })); }`;
    expect(JSON.parse(runModule(code))).toEqual({
      name: "KernelError",
      code: "EPERM",
      perm: true,
      syscall: "ioctl(TUNSETIFF)",
    });
    expect(link("tap-eperm")).toBeUndefined();
  });
});

kernelDescribe("tapOpen (as a VMM opens the TAP)", () => {
  let guest: FakeGuest | undefined;
  afterEach(async () => {
    await guest?.stop();
    guest = undefined;
  });
  const start = (tap: string, ids: { uid?: number; gid?: number }, dropMode?: "spawn" | "after-load") => {
    guest = startFakeGuest({
      tap,
      ...ids,
      guestIp: "10.200.0.2",
      guestMac: "02:00:0a:c8:00:02",
      hostMac: "02:00:0a:c8:00:01",
      ...(dropMode ? { dropMode } : {}),
    });
    return guest;
  };

  it("attaches as root, and the TAP gains carrier only while it is open", () => {
    tapCreate({ name: "tap-open" });
    sh("ip", ["link", "set", "tap-open", "up"]);
    const state = () => ipJson<Array<{ flags: string[] }>>("link", "show", "tap-open")[0]?.flags ?? [];
    expect(state()).toContain("NO-CARRIER");
    const fd = tapOpen("tap-open", { nonBlocking: true });
    try {
      expect(state()).not.toContain("NO-CARRIER");
      const back = Buffer.alloc(40);
      sysIoctlPtr(fd, TUNGETIFF, back, "TUNGETIFF", "test");
      expect(back.readUInt16LE(16) & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)).toBe(
        IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
      );
    } finally {
      tapClose(fd);
    }
    expect(state()).toContain("NO-CARRIER");
    expect(link("tap-open")?.linkinfo?.info_data).toMatchObject({ persist: true });
  });

  it("a second opener gets EBUSY (single queue)", () => {
    tapCreate({ name: "tap-busy" });
    const fd = tapOpen("tap-busy");
    try {
      expect(() => tapOpen("tap-busy")).toThrow(expect.objectContaining({ code: "EBUSY" }));
    } finally {
      tapClose(fd);
    }
  });

  it("a multi-queue TAP is refused with EINVAL, as Firecracker sees it", () => {
    sh("ip", ["tuntap", "add", "tap-mq", "mode", "tap", "vnet_hdr", "multi_queue"]);
    expect(() => tapOpen("tap-mq")).toThrow(expect.objectContaining({ code: "EINVAL" }));
  });

  it("a missing name gives ENODEV and leaves no transient TAP behind", () => {
    let err: unknown;
    try {
      tapOpen("tap-missing");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KernelError);
    expect((err as KernelError).code).toBe("ENODEV");
    expect(link("tap-missing")).toBeUndefined();
  });

  it("rejects a bad name before any syscall", () => {
    expect(() => tapOpen("a/b")).toThrow(ValidationError);
  });

  describe.skipIf(!realRoot)("as other uids (C13)", () => {
    beforeAll(() => {
      tapCreate({ name: "tap-c13", uid: 1234, gid: 1234 });
      const bad = unreadableFor(1234, 1234);
      if (bad.length) console.log(`uid 1234 cannot read ${bad.join(", ")}: "spawn" mode tests will fail`);
    });

    it.each(["spawn", "after-load"] as const)("the owner uid 1234 opens it (%s)", async (mode) => {
      const g = start("tap-c13", { uid: 1234, gid: 1234 }, mode);
      expect(g.mode).toBe(mode);
      await g.ready;
    });

    it("uid 4321 gets a permission error", async () => {
      const g = start("tap-c13", { uid: 4321, gid: 4321 });
      const err = await g.ready.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(KernelError);
      expect((err as KernelError).code).toBe("EPERM");
      expect((err as KernelError).isPermission).toBe(true);
      expect((err as KernelError).syscall).toBe("ioctl(TUNSETIFF)");
    });

    // drivers/net/tun.c tun_not_capable(): with both an owner and a group set, the caller must
    // match both (or hold CAP_NET_ADMIN); matching one of them is not enough.
    it.each([
      [4321, 1234],
      [1234, 4321],
    ])("uid %i / gid %i (one of the two matching) gets EPERM too", async (uid, gid) => {
      const g = start("tap-c13", { uid, gid });
      await expect(g.ready).rejects.toMatchObject({ code: "EPERM", syscall: "ioctl(TUNSETIFF)" });
    });
  });

  it("createPointToPointTap (netdevice ioctls, answers read inside send) makes exactly what ip makes", async () => {
    const group = 4244;
    const info = await createPointToPointTap("api0", "10.201.0.1", "10.201.0.2", OWNER, OWNER, {
      mtu: 1400,
      group,
      alias: "microvm-net:vm-a",
    });
    sh("ip", [
      "tuntap",
      "add",
      "dev",
      "ipx0",
      "mode",
      "tap",
      "vnet_hdr",
      "user",
      String(OWNER),
      "group",
      String(OWNER),
    ]);
    sh("sh", ["-c", "echo 1 > /proc/sys/net/ipv6/conf/ipx0/disable_ipv6"]);
    sh("ip", [
      "link",
      "set",
      "dev",
      "ipx0",
      "alias",
      "microvm-net:vm-a",
      "group",
      String(group),
      "mtu",
      "1400",
      "up",
    ]);
    sh("ip", ["addr", "add", "10.201.0.1/32", "peer", "10.201.0.3/32", "dev", "ipx0"]);
    try {
      const ipLink = (name: string) =>
        ipJson<Array<Record<string, unknown>>>("-d", "link", "show", "dev", name)[0];
      const ipAddr = (name: string) =>
        ipJson<Array<{ addr_info: unknown[] }>>("addr", "show", "dev", name)[0];
      const ours = ipLink("api0") as Record<string, unknown>;
      const theirs = ipLink("ipx0") as Record<string, unknown>;
      // What the API returns is what the kernel holds (ifindex, MAC and MTU by ioctl).
      expect(info).toEqual({
        name: "api0",
        index: ours.ifindex,
        mtu: 1400,
        mac: ours.address,
        up: true,
        group,
      });
      const strip = (l: Record<string, unknown>) => ({ ...l, ifindex: 0, ifname: "", address: "" });
      expect(strip(ours)).toEqual(strip(theirs));
      expect(ours).toMatchObject({ ifalias: "microvm-net:vm-a", group: String(group), mtu: 1400 });
      const addrs = (name: string) =>
        ((ipAddr(name)?.addr_info ?? []) as Array<Record<string, unknown>>).map((a) => ({
          ...a,
          address: "",
          label: "",
        }));
      expect(addrs("api0")).toEqual(addrs("ipx0"));
      expect(ipAddr("api0")?.addr_info).toEqual([
        expect.objectContaining({
          family: "inet",
          local: "10.201.0.1",
          prefixlen: 32,
          address: "10.201.0.2",
        }),
      ]);
      for (const name of ["api0", "ipx0"]) {
        expect(readSysctl(`net/ipv6/conf/${name}/disable_ipv6`)).toBe("1");
        expect(readSysctl(`net/ipv4/conf/${name}/route_localnet`)).toBe("0");
      }
      // route_localnet rides in the same RTM_NEWLINK when asked for.
      await createPointToPointTap("api1", "10.201.0.1", "10.201.0.4", OWNER, OWNER, { routeLocalnet: true });
      expect(readSysctl("net/ipv4/conf/api1/route_localnet")).toBe("1");
      expect(readSysctl("net/ipv6/conf/api1/disable_ipv6")).toBe("1");
      await expect(
        createPointToPointTap("api2", "10.201.0.1", "10.201.0.5", OWNER, OWNER, { alias: "someone-else" }),
      ).rejects.toBeInstanceOf(ValidationError);
      expect(link("api2")).toBeUndefined();
    } finally {
      await deleteTap("api0");
      await deleteTap("api1");
      sh("ip", ["link", "del", "dev", "ipx0"]);
    }
  });

  it("createPointToPointTap with guestMac: the guest's permanent neighbour entry comes with the TAP; a bad MAC touches nothing", async () => {
    await createPointToPointTap("nb0", "10.201.1.1", "10.201.1.2", OWNER, OWNER, {
      guestMac: "06:00:0A:C9:01:02",
    });
    try {
      expect(ipJson("neigh", "show", "dev", "nb0")).toEqual([
        { dst: "10.201.1.2", lladdr: "06:00:0a:c9:01:02", state: ["PERMANENT"] },
      ]);
      await expect(
        createPointToPointTap("nb1", "10.201.1.1", "10.201.1.3", OWNER, OWNER, {
          guestMac: "01:00:5e:00:00:01",
        }),
      ).rejects.toMatchObject({ code: "ERR_INVALID_MAC", field: "guestMac" });
      await expect(
        createTap("nb2", "10.201.2.1/24", { guestMac: "06:00:0a:c9:02:02" }),
      ).rejects.toBeInstanceOf(ValidationError);
      for (const n of ["nb1", "nb2"]) expect(link(n)).toBeUndefined();
      expect(ipJson("neigh", "show", "to", "10.201.1.3")).toEqual([]);
    } finally {
      await deleteTap("nb0");
    }
  });

  it("round trip: the host reaches the fake guest over the TAP after ARP, and back", async () => {
    tapCreate({ name: "tap-rt", ...(realRoot ? { uid: 1234, gid: 1234 } : {}) });
    sh("ip", ["addr", "add", "10.200.0.1", "peer", "10.200.0.2/32", "dev", "tap-rt"]);
    sh("ip", ["link", "set", "tap-rt", "up"]);
    const hostMac = link("tap-rt")?.address as string;
    const g = startFakeGuest({
      tap: "tap-rt",
      ...(realRoot ? { uid: 1234, gid: 1234 } : {}),
      guestIp: "10.200.0.2",
      guestMac: "02:00:0a:c8:00:02",
      hostMac,
    });
    guest = g;
    await g.ready;

    // host → guest: the kernel must resolve 10.200.0.2 by ARP first, which the fake guest answers.
    const tx = createSocket("udp4");
    await new Promise<void>((resolve, reject) =>
      tx.send("from-host", 5000, "10.200.0.2", (e) => (e ? reject(e) : resolve())),
    );
    tx.close();
    const f = await g.waitFor((x) => x.proto === "udp" && x.dport === 5000);
    expect(f).toMatchObject({
      src: "10.200.0.1",
      dst: "10.200.0.2",
      srcMac: hostMac,
      dstMac: "02:00:0a:c8:00:02",
      payload: Buffer.from("from-host").toString("hex"),
      checksumOk: true,
    });
    expect(g.arps).toContainEqual(
      expect.objectContaining({ op: 1, senderIp: "10.200.0.1", targetIp: "10.200.0.2", answered: true }),
    );
    const neigh = ipJson<Array<{ dst: string; lladdr?: string }>>("neigh", "show", "dev", "tap-rt");
    expect(neigh).toContainEqual(expect.objectContaining({ dst: "10.200.0.2", lladdr: "02:00:0a:c8:00:02" }));

    // guest → host: a datagram with our checksum; the kernel drops it if the checksum is wrong.
    const rx = createSocket("udp4");
    await new Promise<void>((resolve) => rx.bind(6000, "10.200.0.1", resolve));
    const got = new Promise<{ msg: string; from: string; port: number }>((resolve) =>
      rx.once("message", (m, r) => resolve({ msg: m.toString(), from: r.address, port: r.port })),
    );
    await g.sendUdp({ dst: "10.200.0.1", sport: 7000, dport: 6000, payload: "from-guest" });
    expect(await got).toEqual({ msg: "from-guest", from: "10.200.0.2", port: 7000 });
    rx.close();

    // guest SYN to a closed host port → the host answers RST,ACK.
    await g.sendTcp({ dst: "10.200.0.1", sport: 40000, dport: 9, seq: 1000 });
    const rst = await g.waitFor((x) => x.proto === "tcp" && x.dport === 40000);
    expect(rst).toMatchObject({ src: "10.200.0.1", sport: 9, flags: ["RST", "ACK"], checksumOk: true });
  });
});
