// Our rtnetlink client against the real kernel, inside the private namespace scripts/test.mjs makes.
// Everything is read back through a second, independent path: `ip -j`.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { KernelError, ValidationError } from "../../src/core/errors.js";
import { O_RDWR, sysClose, sysOpen } from "../../src/kernel/ffi.js";
import { ifinfomsg } from "../../src/kernel/netlink/codec.js";
import { RTM_DELLINK } from "../../src/kernel/netlink/constants.js";
import { linkBrief, linkIndex } from "../../src/kernel/netlink/ifreq.js";
import {
  addrAdd,
  addrAddRequest,
  addrDel,
  addrList,
  defaultRoute,
  defaultSocket,
  type Link,
  linkDel,
  linkDelGroup,
  linkGet,
  linkList,
  linkSet,
  linkSetAlias,
  linkSetDown,
  linkSetGroup,
  linkSetMac,
  linkSetMtu,
  linkSetRequest,
  linkSetUp,
  NetlinkSocket,
  neighAdd,
  neighAddRequest,
  routeGet,
  routeList,
} from "../../src/kernel/netlink/index.js";
import { ipJson, kernelDescribe, makeInternet, readSysctl, sh } from "../helpers/kernel.js";

interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  operstate: string;
  group: string;
  address?: string;
  ifalias?: string;
  linkinfo?: { info_kind?: string };
}

const ipLink = (name: string) => ipJson<IpLink[]>("-d", "link", "show", "dev", name)[0] as IpLink;
const ifindex = (name: string) => ipLink(name).ifindex;
const linkExists = (name: string) => ipJson<IpLink[]>("link", "show").some((l) => l.ifname === name);
const veth = (a: string, b: string) => sh("ip", ["link", "add", a, "type", "veth", "peer", "name", b]);

/** What `ip -j -d link` says, in our Link shape. */
function fromIp(l: IpLink): Link {
  const out: Link = {
    index: l.ifindex,
    name: l.ifname,
    flags: expect.any(Number) as unknown as number,
    up: l.flags.includes("UP"),
    mtu: l.mtu,
    group: l.group === "default" ? 0 : Number(l.group),
    operState: l.operstate,
  };
  if (l.address) out.mac = l.address;
  if (l.ifalias) out.alias = l.ifalias;
  if (l.linkinfo?.info_kind) out.kind = l.linkinfo.info_kind;
  return out;
}

/** Largest gap between 1 ms interval ticks while `work` runs, minus the 1 ms period. */
async function maxTimerGap(work: () => Promise<unknown>): Promise<number> {
  let last = performance.now();
  let max = 0;
  const t = setInterval(() => {
    const now = performance.now();
    max = Math.max(max, now - last);
    last = now;
  }, 1);
  await new Promise((r) => setTimeout(r, 10));
  max = 0;
  last = performance.now();
  await work();
  const now = performance.now();
  max = Math.max(max, now - last);
  clearInterval(t);
  return max - 1;
}

kernelDescribe("rtnetlink client", () => {
  let nl: NetlinkSocket;
  beforeAll(() => {
    nl = NetlinkSocket.open();
  });
  afterAll(() => nl.close());

  it("shares one lazily opened default socket, and reopens it after close()", async () => {
    const first = defaultSocket();
    expect(defaultSocket()).toBe(first);
    expect((await linkGet(first, "lo"))?.index).toBe(1);
    first.close();
    const second = defaultSocket();
    expect(second).not.toBe(first);
    expect(second.closed).toBe(false);
    expect((await linkGet(second, 1))?.name).toBe("lo");
    second.close();
  });

  it("looks up lo by name and by index, as ip sees it", async () => {
    const lo = await linkGet(nl, "lo");
    expect(lo).toEqual(fromIp(ipLink("lo")));
    expect(lo?.kind).toBeUndefined();
    expect(await linkGet(nl, 1)).toEqual(lo);
  });

  it("answers undefined for unknown links and ENODEV, without kernel text, when changing one", async () => {
    expect(await linkGet(nl, "nosuch0")).toBeUndefined();
    expect(await linkGet(nl, 999_999)).toBeUndefined();
    const err = await linkSetUp(nl, 999_999).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect(err).toMatchObject({
      errno: 19,
      code: "ENODEV",
      syscall: "RTM_NEWLINK",
      kernelMessage: undefined,
    });
    await expect(linkDel(nl, 999_999)).rejects.toMatchObject({ code: "ENODEV", syscall: "RTM_DELLINK" });
  });

  it("reads a veth pair made with ip exactly as ip -j -d link shows it, and lists what ip lists", async () => {
    veth("rd-a", "rd-b");
    sh("ip", ["link", "set", "rd-a", "up"]);
    const a = await linkGet(nl, "rd-a");
    const b = await linkGet(nl, "rd-b");
    expect(a).toEqual(fromIp(ipLink("rd-a")));
    expect(b).toEqual(fromIp(ipLink("rd-b")));
    expect(a).toMatchObject({ kind: "veth", up: true });
    expect(b?.up).toBe(false);
    expect(a?.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);

    const ours = await linkList(nl);
    const theirs = ipJson<IpLink[]>("-d", "link", "show");
    expect(ours).toEqual(theirs.map(fromIp));
  });

  it("sets up, MTU, MAC, group and alias, and ip -j -d link shows each change", async () => {
    veth("set-a", "set-b");
    const i = ifindex("set-a");
    await linkSetUp(nl, i);
    expect(ipLink("set-a").flags).toContain("UP");
    await linkSetMtu(nl, i, 1400);
    await linkSetMac(nl, i, "02:AA:bb:00:00:07");
    await linkSetGroup(nl, i, 4242);
    await linkSetAlias(nl, i, "vm 7 (tap)");
    expect(ipLink("set-a")).toMatchObject({
      mtu: 1400,
      address: "02:aa:bb:00:00:07",
      group: "4242",
      ifalias: "vm 7 (tap)",
    });
    expect(await linkGet(nl, i)).toMatchObject({
      up: true,
      mtu: 1400,
      mac: "02:aa:bb:00:00:07",
      group: 4242,
      alias: "vm 7 (tap)",
    });

    await linkSetAlias(nl, i, "");
    await linkSetGroup(nl, i, 0);
    await linkSetDown(nl, i);
    const after = ipLink("set-a");
    expect(after.ifalias).toBeUndefined();
    expect(after.group).toBe("default");
    expect(after.flags).not.toContain("UP");
    expect((await linkGet(nl, i))?.alias).toBeUndefined();
  });

  it("changes alias, group, MTU and IFF_UP in one linkSet request, leaving absent fields alone", async () => {
    veth("one-a", "one-b");
    const i = ifindex("one-a");
    await linkSet(nl, i, { alias: "ours", group: 77, mtu: 1300, up: true });
    expect(ipLink("one-a")).toMatchObject({ mtu: 1300, group: "77", ifalias: "ours" });
    expect(ipLink("one-a").flags).toContain("UP");
    await linkSet(nl, i, { mtu: 1280 });
    expect(ipLink("one-a")).toMatchObject({ mtu: 1280, group: "77", ifalias: "ours" });
    expect(ipLink("one-a").flags).toContain("UP");
    await linkSet(nl, i, { up: false });
    expect(ipLink("one-a").flags).not.toContain("UP");
    await expect(linkSet(nl, i, { group: -1 })).rejects.toBeInstanceOf(ValidationError);
  });

  it("sets route_localnet in the linkSet request itself (IFLA_AF_SPEC), as /proc/sys shows", async () => {
    veth("rl-a", "rl-b");
    const i = ifindex("rl-a");
    const localnet = () => readSysctl("net/ipv4/conf/rl-a/route_localnet");
    expect(localnet()).toBe("0");
    await linkSet(nl, i, { alias: "ours", up: true, routeLocalnet: true });
    expect(localnet()).toBe("1");
    expect(readSysctl("net/ipv4/conf/rl-b/route_localnet")).toBe("0");
    expect(ipLink("rl-a")).toMatchObject({ ifalias: "ours" });
    await linkSet(nl, i, { mtu: 1400 });
    expect(localnet()).toBe("1"); // absent: left alone
    await linkSet(nl, i, { routeLocalnet: false });
    expect(localnet()).toBe("0");
    await expect(linkSet(nl, i, { routeLocalnet: 1 as unknown as boolean })).rejects.toBeInstanceOf(
      ValidationError,
    );
  });

  it("reads ifindex, MAC and MTU by netdevice ioctls on the socket, equal to what RTM_GETLINK reads", async () => {
    veth("br-a", "br-b");
    await linkSetMtu(nl, ifindex("br-a"), 1400);
    for (const name of ["br-a", "br-b"]) {
      const l = (await linkGet(nl, name)) as Link;
      expect(linkBrief(nl, name)).toEqual({ index: l.index, mtu: l.mtu, mac: l.mac });
      expect(linkIndex(nl, name)).toBe(ipLink(name).ifindex);
    }
    expect(linkBrief(nl, "br-a").mtu).toBe(1400);
    // lo's hardware address is not Ethernet (ARPHRD_LOOPBACK): no MAC reported.
    expect(linkBrief(nl, "lo")).toEqual({ index: 1, mtu: ipLink("lo").mtu });
    expect(() => linkIndex(nl, "nosuch0")).toThrow(expect.objectContaining({ code: "ENODEV" }));
    expect(() => linkBrief(nl, "bad name")).toThrow(ValidationError);
    // A closed socket's descriptor number can be reused at once: no ioctl goes to whatever holds it now.
    const closed = NetlinkSocket.open();
    closed.close();
    const reuse = sysOpen("/dev/null", O_RDWR, "test");
    try {
      expect(() => linkBrief(closed, "lo")).toThrow(expect.objectContaining({ code: "ERR_NETLINK_CLOSED" }));
    } finally {
      sysClose(reuse);
    }
  });

  it("answers read inside send() and answers read through the poll watcher make the same kernel objects", async () => {
    // A second socket whose synchronous read after each send finds nothing (as EAGAIN would), so
    // every answer takes the poll path; the default path reads it inside the request.
    let hidden = 0;
    const polled = NetlinkSocket.open(undefined, (io) => {
      let justSent = false;
      return {
        ...io,
        send(buf) {
          io.send(buf);
          justSent = true;
        },
        recv(buf) {
          if (justSent) {
            justSent = false;
            hidden++;
            return -1;
          }
          return io.recv(buf);
        },
      };
    });
    try {
      veth("sy-a", "sy-b");
      veth("po-a", "po-b");
      const make = async (sock: NetlinkSocket, name: string, peer: string) => {
        const i = ifindex(name);
        await Promise.all([
          linkSet(sock, i, { alias: "microvm-net", group: 4243, mtu: 1400, up: true, routeLocalnet: true }),
          addrAdd(sock, { index: i, local: "10.9.0.1", prefix: 32, peer }),
        ]);
        return { link: await linkGet(sock, i), addrs: await addrList(sock, i) };
      };
      const sync = await make(nl, "sy-a", "10.9.0.2");
      const viaPoll = await make(polled, "po-a", "10.9.0.3");
      expect(hidden).toBeGreaterThanOrEqual(3); // each request went through the watcher
      const shape = (r: typeof sync, name: string) => ({
        link: { ...r.link, index: 0, name: "", mac: "", flags: 0, operState: "" },
        addrs: r.addrs.map((a) => ({ ...a, index: 0, address: "", label: a.label === name })),
        ip: { ...ipLink(name), ifindex: 0, ifname: "", address: "", link: "" },
        localnet: readSysctl(`net/ipv4/conf/${name}/route_localnet`),
      });
      expect(shape(viaPoll, "po-a")).toEqual(shape(sync, "sy-a"));
      expect(shape(sync, "sy-a")).toMatchObject({
        link: { up: true, mtu: 1400, group: 4243, alias: "microvm-net", kind: "veth" },
        addrs: [{ local: "10.9.0.1", prefix: 32, label: true }],
        localnet: "1",
      });
      expect(sync.addrs[0]?.address).toBe("10.9.0.2");
      expect(viaPoll.addrs[0]?.address).toBe("10.9.0.3");
    } finally {
      polled.close();
    }
  });

  it("carries the kernel's own reason: an MTU below the device minimum", async () => {
    veth("mtu-a", "mtu-b");
    const err = await linkSetMtu(nl, ifindex("mtu-a"), 10).catch((e: unknown) => e);
    expect(err).toMatchObject({ errno: 22, code: "EINVAL", syscall: "RTM_NEWLINK" });
    expect((err as KernelError).kernelMessage).toMatch(/mtu less than device minimum/);
    expect((err as KernelError).message).toContain(`linkSetMtu(ifindex ${ifindex("mtu-a")}, 10)`);
    expect(ipLink("mtu-a").mtu).toBe(1500);
  });

  it("refuses bad input with a ValidationError before sending anything", async () => {
    const bad: Array<[string, () => Promise<unknown>]> = [
      ["index 0", () => linkSetMtu(nl, 0, 1500)],
      ["mtu", () => linkSetMtu(nl, 1, 1.5)],
      ["mac", () => linkSetMac(nl, 1, "01:00:5e:00:00:01")],
      ["group 0", () => linkDelGroup(nl, 0)],
      ["alias", () => linkSetAlias(nl, 1, "x".repeat(256))],
      ["name", () => linkGet(nl, "much-too-long-name")],
      ["prefix", () => addrAdd(nl, { index: 1, local: "10.0.0.1", prefix: 33 })],
      ["peer", () => addrAdd(nl, { index: 1, local: "10.0.0.1", prefix: 32, peer: "10.0.0" })],
      ["neigh", () => neighAdd(nl, { index: 1, ip: "10.0.0.2", mac: "nope" })],
      ["route", () => routeGet(nl, "300.1.1.1")],
    ];
    for (const [what, call] of bad) {
      await expect(call(), what).rejects.toBeInstanceOf(ValidationError);
    }
    expect(nl.pendingCount).toBe(0);
    const lo = ipJson<Array<{ mtu: number; addr_info: Array<{ local: string }> }>>(
      "-4",
      "addr",
      "show",
      "dev",
      "lo",
    );
    expect(lo[0]?.mtu).toBe(65536);
    expect(lo[0]?.addr_info.map((a) => a.local)).toEqual(["127.0.0.1"]);
  });

  it("adds a point-to-point address, refuses a second with EEXIST and the kernel's text, lists and deletes it", async () => {
    veth("adr-a", "adr-b");
    const index = ifindex("adr-a");
    const spec = { index, local: "10.200.0.1", prefix: 32, peer: "10.200.0.2" };
    await addrAdd(nl, spec);
    const info = ipJson<Array<{ addr_info: Array<Record<string, unknown>> }>>(
      "addr",
      "show",
      "dev",
      "adr-a",
    )[0]?.addr_info;
    expect(info).toContainEqual(
      expect.objectContaining({ family: "inet", local: "10.200.0.1", address: "10.200.0.2", prefixlen: 32 }),
    );

    const err = await addrAdd(nl, spec).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect(err).toMatchObject({
      errno: 17,
      code: "EEXIST",
      syscall: "RTM_NEWADDR",
      kernelMessage: "ipv4: Address already assigned",
    });

    await addrAdd(nl, { index, local: "10.201.0.1", prefix: 24 });
    expect(await addrList(nl, index)).toEqual([
      { index, family: 2, local: "10.200.0.1", address: "10.200.0.2", prefix: 32, label: "adr-a" },
      { index, family: 2, local: "10.201.0.1", address: "10.201.0.1", prefix: 24, label: "adr-a" },
    ]);
    const all = await addrList(nl);
    expect(all.map((a) => a.local)).toEqual(
      expect.arrayContaining(["127.0.0.1", "10.200.0.1", "10.201.0.1"]),
    );

    await addrDel(nl, spec);
    expect((await addrList(nl, index)).map((a) => a.local)).toEqual(["10.201.0.1"]);
    await expect(addrDel(nl, spec)).rejects.toMatchObject({ code: "EADDRNOTAVAIL", syscall: "RTM_DELADDR" });
  });

  it("requestAll: link changes, an address and a neighbour entry in one datagram, each carried out", async () => {
    veth("all-a", "all-b");
    const index = ifindex("all-a");
    await nl.requestAll([
      linkSetRequest(index, { alias: "ours", group: 78, up: true }),
      addrAddRequest({ index, local: "10.203.0.1", prefix: 32, peer: "10.203.0.2" }),
      neighAddRequest({ index, ip: "10.203.0.2", mac: "02:00:00:00:00:0c" }),
    ]);
    expect(ipLink("all-a")).toMatchObject({ group: "78", ifalias: "ours" });
    expect(ipLink("all-a").flags).toContain("UP");
    expect((await addrList(nl, index)).map((a) => [a.local, a.address])).toEqual([
      ["10.203.0.1", "10.203.0.2"],
    ]);
    expect(ipJson("neigh", "show", "dev", "all-a")).toEqual([
      { dst: "10.203.0.2", lladdr: "02:00:00:00:00:0c", state: ["PERMANENT"] },
    ]);
  });

  it("requestAll: a refusal of a request that asked no ACK is reported with its own type and text; the requests after it still run", async () => {
    veth("ref-a", "ref-b");
    const index = ifindex("ref-a");
    await addrAdd(nl, { index, local: "10.204.0.1", prefix: 32, peer: "10.204.0.2" });
    const err = await nl
      .requestAll([
        linkSetRequest(index, { group: 79 }),
        addrAddRequest({ index, local: "10.204.0.1", prefix: 32, peer: "10.204.0.2" }),
        neighAddRequest({ index, ip: "10.204.0.2", mac: "02:00:00:00:00:0d" }),
      ])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect(err).toMatchObject({
      code: "EEXIST",
      syscall: "RTM_NEWADDR",
      kernelMessage: "ipv4: Address already assigned",
    });
    // Each message is its own request to the kernel, as when sent one by one.
    expect(ipLink("ref-a")).toMatchObject({ group: "79" });
    expect(ipJson("neigh", "show", "dev", "ref-a")).toEqual([
      { dst: "10.204.0.2", lladdr: "02:00:00:00:00:0d", state: ["PERMANENT"] },
    ]);
    // The first refused is the one reported; the socket stays in step for the next request.
    const first = await nl
      .requestAll([linkSetRequest(999_999, { group: 1 }), linkSetRequest(index, { mtu: 1 })])
      .catch((e: unknown) => e);
    expect(first).toMatchObject({ code: "ENODEV", syscall: "RTM_NEWLINK" });
    await nl.requestAll([linkSetRequest(index, { mtu: 1280 }), linkSetRequest(index, { group: 80 })]);
    expect(ipLink("ref-a")).toMatchObject({ mtu: 1280, group: "80" });
  });

  it("adds a permanent neighbour entry, and replaces it", async () => {
    veth("nb-a", "nb-b");
    const index = ifindex("nb-a");
    await neighAdd(nl, { index, ip: "10.202.0.2", mac: "02:00:00:00:00:0a" });
    await neighAdd(nl, { index, ip: "10.202.0.2", mac: "02:00:00:00:00:0b" });
    expect(ipJson("neigh", "show", "dev", "nb-a")).toEqual([
      { dst: "10.202.0.2", lladdr: "02:00:00:00:00:0b", state: ["PERMANENT"] },
    ]);
  });

  it("lists routes and the default route as ip -d -j route does, and looks routes up like ip route get", async () => {
    const net = makeInternet();
    const uplink = ifindex(net.uplink);
    const indexOf = new Map(ipJson<IpLink[]>("link", "show").map((l) => [l.ifname, l.ifindex]));
    const theirs = ipJson<Array<Record<string, string | number>>>("-d", "route", "show", "table", "main").map(
      (r) => {
        const [dst, prefix] = r.dst === "default" ? ["0.0.0.0", "0"] : String(r.dst).split("/");
        const out: Record<string, unknown> = {
          dst,
          prefix: prefix === undefined ? 32 : Number(prefix),
          oif: indexOf.get(String(r.dev)),
          table: 254,
          protocol: r.protocol,
          scope: r.scope === "universe" ? "global" : r.scope,
          type: r.type,
        };
        if (r.gateway) out.gateway = r.gateway;
        if (r.prefsrc) out.prefsrc = r.prefsrc;
        if (r.metric) out.metric = r.metric;
        return out;
      },
    );
    const ours = await routeList(nl);
    expect(ours).toEqual(theirs);
    expect(ours).toContainEqual(expect.objectContaining({ dst: "192.0.2.0", prefix: 24, oif: uplink }));

    expect(await defaultRoute(nl)).toMatchObject({
      dst: "0.0.0.0",
      prefix: 0,
      gateway: net.gatewayIp,
      oif: uplink,
      table: 254,
      type: "unicast",
    });
    expect((await routeList(nl, { table: 255 })).every((r) => r.table === 255)).toBe(true);
    expect(await routeList(nl, { table: 4000 })).toEqual([]);

    const viaGw = await routeGet(nl, net.remoteIp);
    const ip = ipJson<Array<Record<string, string>>>("route", "get", net.remoteIp)[0];
    expect(viaGw).toMatchObject({ oif: uplink, gateway: ip?.gateway, prefsrc: ip?.prefsrc, type: "unicast" });
    expect(viaGw.gateway).toBe(net.gatewayIp);
    expect(await routeGet(nl, net.gatewayIp)).toEqual({
      oif: uplink,
      prefsrc: net.hostIp,
      type: "unicast",
      table: 254,
    });

    sh("ip", ["route", "del", "default"]);
    expect(await defaultRoute(nl)).toBeUndefined();
    await expect(routeGet(nl, net.remoteIp)).rejects.toMatchObject({
      code: "ENETUNREACH",
      syscall: "RTM_GETROUTE",
    });
  });

  it("deletes every link of one group in one request, and nothing else", async () => {
    veth("g1-a", "g1-b");
    veth("g2-a", "g2-b");
    veth("g3-a", "g3-b");
    veth("keep-a", "keep-b");
    for (const n of ["g1-a", "g1-b", "g2-a", "g3-a"]) await linkSetGroup(nl, ifindex(n), 900);
    await linkSetGroup(nl, ifindex("keep-a"), 901);
    const before = ipJson<IpLink[]>("link", "show").map((l) => l.ifname);

    expect(await linkDelGroup(nl, 900)).toBe(true);
    const after = ipJson<IpLink[]>("link", "show").map((l) => l.ifname);
    // Deleting one end of a veth deletes its peer too.
    const gone = ["g1-a", "g1-b", "g2-a", "g2-b", "g3-a", "g3-b"];
    expect(after).toEqual(before.filter((n) => !gone.includes(n)));
    expect(after).toEqual(expect.arrayContaining(["keep-a", "keep-b", "lo"]));
    expect(await linkDelGroup(nl, 900)).toBe(false);
  });

  it("serves many concurrent requests on one socket, dumps and failures included", async () => {
    const n = 24;
    sh(
      "ip",
      ["-batch", "-"],
      Array.from({ length: n }, (_, i) => `link add cc${i} type veth peer name cp${i}\n`).join(""),
    );
    const idx = Array.from({ length: n }, (_, i) => ifindex(`cc${i}`));
    const results = await Promise.all([
      ...idx.map(async (index, i) => {
        await linkSetUp(nl, index);
        await addrAdd(nl, { index, local: `10.210.${i}.1`, prefix: 32, peer: `10.210.${i}.2` });
        return (await linkGet(nl, `cc${i}`))?.index;
      }),
      linkList(nl),
      addrList(nl),
      linkList(nl),
      addrAdd(nl, { index: idx[0] as number, local: "10.211.0.1", prefix: 24 }),
      addrAdd(nl, { index: idx[0] as number, local: "10.211.0.1", prefix: 24 }).catch(
        (e: KernelError) => e.code,
      ),
      linkGet(nl, "nosuch1"),
    ]);
    expect(results.slice(0, n)).toEqual(idx);
    expect(results[n + 4]).toBe("EEXIST");
    expect(results[n + 5]).toBeUndefined();
    const dumped = results[n] as Link[];
    expect(dumped.map((l) => l.name)).toEqual(expect.arrayContaining(idx.map((_, i) => `cc${i}`)));
    const addrs = await addrList(nl);
    for (let i = 0; i < n; i++) {
      expect(addrs).toContainEqual(
        expect.objectContaining({ index: idx[i], local: `10.210.${i}.1`, address: `10.210.${i}.2` }),
      );
    }
    expect(
      ipJson<IpLink[]>("link", "show").filter((l) => l.ifname.startsWith("cc") && l.flags.includes("UP")),
    ).toHaveLength(n);
    expect(nl.pendingCount).toBe(0);

    // Slow requests (sent from the thread pool) are answered after fast ones sent later: each answer
    // must still reach its own request.
    const outcome = (p: Promise<unknown>) =>
      p.then(
        () => "ok",
        (e: KernelError) => e.code,
      );
    const at = (i: number) => idx[i] as number;
    const mixed = await Promise.all([
      outcome(linkDel(nl, 999_990)),
      outcome(linkDel(nl, at(1))),
      outcome(linkSetMtu(nl, at(2), 1280)),
      outcome(addrAdd(nl, { index: at(0), local: "10.211.0.1", prefix: 24 })),
      outcome(linkDel(nl, at(3))),
      outcome(linkSetMtu(nl, at(4), 10)),
      outcome(linkGet(nl, at(5)).then((l) => expect(l?.name).toBe("cc5"))),
      outcome(linkDel(nl, 999_991)),
      outcome(linkSetUp(nl, 999_992)),
      outcome(linkList(nl).then((ls) => expect(ls.map((l) => l.name)).toContain("cc6"))),
    ]);
    expect(mixed).toEqual(["ENODEV", "ok", "ok", "EEXIST", "ok", "EINVAL", "ok", "ENODEV", "ENODEV", "ok"]);
    expect(ipLink("cc2").mtu).toBe(1280);
    expect(linkExists("cc1") || linkExists("cc3")).toBe(false);
    expect(nl.pendingCount).toBe(0);
  });

  it("keeps timers running during slow deletes (sent off the loop), which block it when sent inline", async () => {
    // Each veth delete waits ~16 ms in the kernel (an RCU grace period), inside send().
    const make = (tag: string, k: number) => {
      sh(
        "ip",
        ["-batch", "-"],
        Array.from({ length: k }, (_, i) => `link add ${tag}${i} type veth peer name ${tag}p${i}\n`).join(""),
      );
      return Array.from({ length: k }, (_, i) => ifindex(`${tag}${i}`));
    };
    const inline = make("il", 3);
    const inlineGap = await maxTimerGap(() =>
      Promise.all(inline.map((index) => nl.request(RTM_DELLINK, 0, ifinfomsg({ index }), { slow: false }))),
    );
    // Best of three runs: a loaded machine may delay one tick, but an inline send blocks every run.
    const gaps: number[] = [];
    for (let run = 0; run < 3; run++) {
      const slow = make(`sl${run}x`, 3);
      gaps.push(await maxTimerGap(() => Promise.all(slow.map((index) => linkDel(nl, index)))));
      for (const index of slow) expect(await linkGet(nl, index)).toBeUndefined();
    }
    console.log(
      `timer gaps: inline ${inlineGap.toFixed(1)} ms, off-loop ${gaps.map((g) => g.toFixed(1)).join("/")} ms`,
    );
    expect(inlineGap).toBeGreaterThan(12);
    expect(Math.min(...gaps)).toBeLessThan(8);
  });

  it("does not keep an idle process alive, and close() fails pending and later requests and frees the fd", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mvnet-nl-"));
    const script = join(dir, "idle.mts");
    const src = new URL("../../src/kernel/netlink/index.ts", import.meta.url).pathname;
    writeFileSync(
      script,
      `import { NetlinkSocket, linkGet } from ${JSON.stringify(src)};\n` +
        "const nl = NetlinkSocket.open();\n" +
        'console.log((await linkGet(nl, "lo"))?.name);\n',
    );
    const t0 = Date.now();
    const child = spawnSync(process.execPath, ["--import", "tsx", script], {
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(child.signal).toBeNull();
    expect(child.status).toBe(0);
    expect(child.stdout.trim()).toBe("lo");
    expect(Date.now() - t0).toBeLessThan(20_000);

    const own = NetlinkSocket.open();
    const fdLink = () => {
      try {
        return execFileSync("readlink", [`/proc/${process.pid}/fd/${own.fd}`], { encoding: "utf8" }).trim();
      } catch {
        return "closed";
      }
    };
    const socketInode = fdLink();
    expect(socketInode).toMatch(/^socket:\[\d+\]$/);
    veth("cl-a", "cl-b");
    const pending = linkDel(own, ifindex("cl-a"));
    own.close();
    await expect(pending).rejects.toMatchObject({ code: "ERR_NETLINK_CLOSED" });
    await expect(linkGet(own, "lo")).rejects.toMatchObject({ code: "ERR_NETLINK_CLOSED" });
    own.close();
    // The slow send still ran; the descriptor is closed once it has returned.
    await expect.poll(() => linkExists("cl-a"), { timeout: 2000 }).toBe(false);
    await expect.poll(fdLink, { timeout: 2000 }).not.toBe(socketInode);
  });
});
