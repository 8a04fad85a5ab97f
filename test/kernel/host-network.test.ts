// HostNetwork on real kernel objects in a private network namespace: attach/detach, held ports,
// rollback, name collisions, reconcile, restart, batched detach, gc, C11, C16, C17, stale UDP
// conntrack entries. Read back through `ip -j`, `nft -j` and /proc, independently of our code.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, expect, it } from "vitest";
import { closeShared } from "../../src/api/context.js";
import { AlreadyExistsError, ConflictError, ExhaustedError, ValidationError } from "../../src/core/errors.js";
import {
  type HostNetwork as HN,
  HostNetwork,
  type HostNetworkOptions,
  tapNameFor,
} from "../../src/host/index.js";
import {
  addPortMapping,
  bootstrap,
  createPointToPointTap,
  deleteTap,
  listPortMappings,
  removePortMapping,
  SUBNET,
  teardown,
} from "../../src/index.js";
import { conntrackList, openConntrackSocket } from "../../src/kernel/conntrack.js";
import { isPortFree } from "../../src/kernel/probe.js";
import { type FakeGuest, startFakeGuest } from "../helpers/fake-guest.js";
import { ipJson, isRealRoot, kernelDescribe, makeInternet, readSysctl, sh } from "../helpers/kernel.js";

type IpLink = {
  ifname: string;
  mtu: number;
  group: string;
  ifalias?: string;
  linkinfo?: { info_kind: string; info_data?: Record<string, unknown> };
};
const links = () => ipJson<IpLink[]>("-d", "link", "show");
const link = (name: string) => links().find((l) => l.ifname === name);
const tapNames = () =>
  links()
    .filter((l) => l.linkinfo?.info_kind === "tun")
    .map((l) => l.ifname)
    .sort();
const neighbours = () =>
  ipJson<Array<{ dst: string; dev: string; lladdr?: string; state: string[] }>>("neigh", "show");
const mappings = async () =>
  (await listPortMappings())
    .map(
      (m) =>
        `${m.protocol} ${m.host.kind === "address" ? m.host.ip : "*"}:${m.hostPort} ${m.guestIp}:${m.guestPort}`,
    )
    .sort();

let dir: string;
let hn: HN;
const open = (o: HostNetworkOptions = {}) => HostNetwork.open({ statePath: join(dir, "state.db"), ...o });

kernelDescribe("HostNetwork", () => {
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "mvnet-host-"));
    hn = await open();
  });
  afterEach(async () => {
    await hn.detachMany(hn.list().map((a) => a.vmId));
    await hn.close();
    rmSync(dir, { recursive: true, force: true });
  });
  afterAll(async () => {
    await closeShared();
  });

  it("C16: attach gives the VMM everything, with the MTU asked for in the TAP and the Firecracker entry", async () => {
    const owner = isRealRoot() ? 1234 : 0;
    const a = await hn.attach("vm-a", {
      mtu: 1400,
      uid: owner,
      gid: owner,
      publish: ["8080:80", "53/udp"],
      dns: ["192.0.2.53"],
    });
    expect(a).toMatchObject({
      vmId: "vm-a",
      state: "attached",
      hostIp: "10.200.0.1",
      guestIp: "10.200.0.2",
      prefix: 16,
      guestMac: "06:00:0a:c8:00:02",
      mtu: 1400,
      bootArg: "ip=10.200.0.2::10.200.0.1:255.255.0.0::eth0:off:192.0.2.53",
      firecracker: { iface_id: "eth0", host_dev_name: a.tap, guest_mac: "06:00:0a:c8:00:02", mtu: 1400 },
    });
    expect(a.tap).toBe(tapNameFor("vm-a"));
    expect(a.ports).toEqual([
      { protocol: "tcp", hostIp: "0.0.0.0", hostPort: 8080, guestPort: 80 },
      { protocol: "udp", hostIp: "0.0.0.0", hostPort: 30000, guestPort: 53 },
    ]);
    const l = link(a.tap);
    expect(l?.mtu).toBe(1400);
    expect(l?.ifalias).toBe("microvm-net:vm-a");
    expect(l?.group).toBe(String(0x6d76));
    expect(l?.linkinfo?.info_data).toMatchObject({
      type: "tap",
      vnet_hdr: true,
      multi_queue: false,
      persist: true,
    });
    expect(l?.linkinfo?.info_data?.user).toBe(owner === 0 ? "root" : owner);
    const [addr] = ipJson<Array<{ addr_info: Array<Record<string, unknown>> }>>("addr", "show", a.tap);
    expect(addr?.addr_info).toEqual([
      expect.objectContaining({ family: "inet", local: "10.200.0.1", address: "10.200.0.2", prefixlen: 32 }),
    ]);
    expect(neighbours()).toContainEqual({
      dst: "10.200.0.2",
      dev: a.tap,
      lladdr: "06:00:0a:c8:00:02",
      state: ["PERMANENT"],
    });
    expect(await mappings()).toEqual(["tcp *:8080 10.200.0.2:80", "udp *:30000 10.200.0.2:53"]);
    expect(readSysctl(`net/ipv4/conf/${a.tap}/route_localnet`)).toBe("1");
    expect(hn.get("vm-a")).toEqual(a);
    expect(hn.list()).toEqual([a]);
  });

  it("attach again with the same options returns the same attachment; other options are refused", async () => {
    const a = await hn.attach("vm-a", { publish: ["80"] });
    expect(await hn.attach("vm-a", { publish: ["80"] })).toEqual(a);
    await expect(hn.attach("vm-a", { publish: ["81"] })).rejects.toBeInstanceOf(AlreadyExistsError);
    expect(tapNames()).toEqual([a.tap]);
  });

  it("bad input is refused before anything is touched", async () => {
    for (const [id, o] of [
      ["bad id", {}],
      ["vm", { mtu: 10 }],
      ["vm", { publish: ["80/icmp"] }],
      ["vm", { dns: ["1.1.1.1", "1.0.0.1", "8.8.8.8"] }],
      ["vm", { guestIp: "10.200.0.1" }],
    ] as const) {
      await expect(hn.attach(id, o)).rejects.toBeInstanceOf(ValidationError);
    }
    expect(tapNames()).toEqual([]);
    expect(hn.list()).toEqual([]);
  });

  it("detach takes back mappings, TAP, neighbour, ports and the record; an unknown VM is a no-op", async () => {
    const a = await hn.attach("vm-a", { publish: ["8080:80"] });
    expect(await isPortFree("tcp", "0.0.0.0", 8080)).toBe(false); // held by our socket
    expect(await hn.detach("vm-a")).toBe(true);
    expect(tapNames()).toEqual([]);
    expect(neighbours().filter((n) => n.dst === a.guestIp)).toEqual([]);
    expect(await mappings()).toEqual([]);
    expect(hn.list()).toEqual([]);
    expect(await isPortFree("tcp", "0.0.0.0", 8080)).toBe(true);
    expect(await hn.detach("vm-a")).toBe(false);
    expect(await hn.detach("never-was")).toBe(false);
  });

  it("a port another process holds is skipped when ephemeral and refused when asked for, leaving nothing", async () => {
    const server: Server = createServer();
    await new Promise<void>((r) => server.listen({ host: "0.0.0.0", port: 30000 }, r));
    try {
      const a = await hn.attach("vm-a", { publish: ["80"] });
      expect(a.ports[0]?.hostPort).toBe(30001);
      await expect(hn.attach("vm-b", { publish: ["30000:80"] })).rejects.toThrow(/another process/);
      expect(hn.list().map((x) => x.vmId)).toEqual(["vm-a"]);
      expect(tapNames()).toEqual([a.tap]);
    } finally {
      server.close();
    }
  });

  it("a second close() resolves with the first: when it does, the database is closed", async () => {
    await hn.attach("vm-a", {});
    const first = hn.close();
    const second = hn.close();
    expect(second).toBe(first);
    await second;
    await expect(hn.attach("vm-b", {})).rejects.toThrow(/closed/);
    hn = await open(); // the record of vm-a is still there, for afterEach to detach
    expect(hn.list().map((a) => a.vmId)).toEqual(["vm-a"]);
  });

  it("when the kernel's range covers every ephemeral port, fixed ports still attach and retries still answer", async () => {
    const a = await hn.attach("vm-a", { publish: ["8080:80"] });
    sh("sh", ["-c", "echo 30000 60999 > /proc/sys/net/ipv4/ip_local_port_range"]);
    try {
      await expect(hn.attach("vm-b", { publish: ["80"] })).rejects.toBeInstanceOf(ExhaustedError);
      const c = await hn.attach("vm-c", { publish: ["8081:80"] });
      expect(c.ports[0]?.hostPort).toBe(8081);
      expect(await hn.attach("vm-a", { publish: ["8080:80"] })).toEqual(a);
      expect(hn.list().map((v) => v.vmId)).toEqual(["vm-a", "vm-c"]);
    } finally {
      sh("sh", ["-c", "echo 32768 60999 > /proc/sys/net/ipv4/ip_local_port_range"]);
    }
  });

  it("C11: ephemeral host ports avoid the kernel's ip_local_port_range and ip_local_reserved_ports", async () => {
    sh("sh", ["-c", "echo 32768 60999 > /proc/sys/net/ipv4/ip_local_port_range"]);
    sh("sh", ["-c", "echo 30000-30002,30004 > /proc/sys/net/ipv4/ip_local_reserved_ports"]);
    try {
      const got: number[] = [];
      for (let i = 0; i < 3; i++)
        got.push((await hn.attach(`vm-${i}`, { publish: ["80"] })).ports[0]?.hostPort as number);
      expect(got).toEqual([30003, 30005, 30006]);
      // A widened kernel range takes ports out of ours: 30007-30009 are left, then none.
      sh("sh", ["-c", "echo 30010 60999 > /proc/sys/net/ipv4/ip_local_port_range"]);
      for (let i = 3; i < 6; i++) await hn.attach(`vm-${i}`, { publish: ["80"] });
      await expect(hn.attach("vm-6", { publish: ["80"] })).rejects.toBeInstanceOf(ExhaustedError);
      const all = hn.list().flatMap((a) => a.ports.map((p) => p.hostPort));
      expect(all.every((p) => p < 30010 && ![30000, 30001, 30002, 30004].includes(p))).toBe(true);
    } finally {
      sh("sh", ["-c", "echo 32768 60999 > /proc/sys/net/ipv4/ip_local_port_range"]);
      sh("sh", ["-c", "echo > /proc/sys/net/ipv4/ip_local_reserved_ports"]);
    }
  });

  it("C17: an ephemeral port released by detach is not handed out again at once", async () => {
    const first = (await hn.attach("vm-a", { publish: ["80"] })).ports[0]?.hostPort;
    await hn.detach("vm-a");
    const second = (await hn.attach("vm-b", { publish: ["80"] })).ports[0]?.hostPort;
    expect(second).not.toBe(first);
    expect(second).toBe((first as number) + 1);
  });

  it("a TAP name taken by an interface we did not make is left alone: the VM gets its next name", async () => {
    const taken = tapNameFor("vm-x");
    sh("ip", ["link", "add", taken, "type", "veth", "peer", "name", "peer-x"]);
    try {
      const a = await hn.attach("vm-x");
      expect(a.tap).toBe(tapNameFor("vm-x", 1));
      expect(link(taken)?.linkinfo?.info_kind).toBe("veth");
      expect(hn.get("vm-x")?.tap).toBe(a.tap);
      await hn.detach("vm-x");
      expect(link(taken)).toBeDefined();
    } finally {
      sh("ip", ["link", "del", taken]);
    }
  });

  it("a failure at any step of attach undoes everything done so far", async () => {
    for (const step of ["allocated", "tap", "neighbour", "mappings"] as const) {
      const failing = await open({
        hooks: {
          step(s) {
            if (s === step) throw new Error(`injected at ${s}`);
          },
        },
      });
      await expect(failing.attach("vm-f", { publish: ["8080:80", "53/udp"] })).rejects.toThrow(
        `injected at ${step}`,
      );
      await failing.close();
      expect(tapNames()).toEqual([]);
      expect(await mappings()).toEqual([]);
      expect(hn.list()).toEqual([]);
      expect(await isPortFree("tcp", "0.0.0.0", 8080)).toBe(true);
    }
  });

  it("reconcile recreates what an attached VM lost and removes our orphans, never anything else", async () => {
    const a = await hn.attach("vm-a", { publish: ["8080:80"] });
    // The kernel loses the TAP and the mapping (as after a reboot or a flushed ruleset)…
    sh("ip", ["link", "del", a.tap]);
    sh("nft", ["flush", "map", "ip", "microvm_net", "pm_any"]);
    // …and holds an orphan TAP, an orphan element into our subnet, and things that are not ours.
    sh("ip", ["tuntap", "add", "orphan0", "mode", "tap"]);
    sh("ip", ["link", "set", "orphan0", "alias", "microvm-net:ghost", "group", String(0x6d76)]);
    await addPortMapping("", 9999, "10.200.9.9", 80, "tcp");
    await addPortMapping("", 9998, "192.168.1.5", 80, "tcp");
    await createPointToPointTap("handmade0", "10.201.0.1", "10.201.0.2", 0, 0);
    sh("ip", ["tuntap", "add", "other0", "mode", "tap"]);

    const report = await hn.reconcile();
    expect(report).toMatchObject({
      rolledBack: [],
      recreatedTaps: ["vm-a"],
      removedTaps: ["orphan0"],
      addedMappings: 1,
      removedMappings: 1,
    });
    expect(tapNames()).toEqual([a.tap, "handmade0", "other0"].sort());
    expect(link(a.tap)?.ifalias).toBe("microvm-net:vm-a");
    expect(neighbours()).toContainEqual(
      expect.objectContaining({ dst: a.guestIp, dev: a.tap, state: ["PERMANENT"] }),
    );
    expect(await mappings()).toEqual(["tcp *:8080 10.200.0.2:80", "tcp *:9998 192.168.1.5:80"]);
    // A second pass finds nothing to do.
    expect(await hn.reconcile()).toMatchObject({
      recreatedTaps: [],
      removedTaps: [],
      addedMappings: 0,
      removedMappings: 0,
    });
    await removePortMapping("", 9998, "192.168.1.5", 80, "tcp");
    await deleteTap("handmade0");
    sh("ip", ["link", "del", "other0"]);
  });

  it("after a teardown, reconcile brings back the mappings and route_localnet of attached VMs", async () => {
    const a = await hn.attach("vm-a", { publish: ["8080:80"] });
    await teardown();
    expect(await mappings()).toEqual([]);
    expect(readSysctl(`net/ipv4/conf/${a.tap}/route_localnet`)).toBe("0");
    expect(await hn.reconcile()).toMatchObject({ addedMappings: 1, recreatedTaps: [] });
    expect(await mappings()).toEqual(["tcp *:8080 10.200.0.2:80"]);
    expect(readSysctl(`net/ipv4/conf/${a.tap}/route_localnet`)).toBe("1");
  });

  it("allocations survive a restart: nothing is handed out twice, nothing is recreated", async () => {
    const a = await hn.attach("vm-a", { publish: ["80"] });
    const b = await hn.attach("vm-b", { publish: ["80"] });
    await hn.close();
    hn = await open();
    expect(hn.list()).toEqual([a, b]);
    expect(await hn.reconcile()).toMatchObject({
      recreatedTaps: [],
      removedTaps: [],
      addedMappings: 0,
      unheldPorts: [],
    });
    const c = await hn.attach("vm-c", { publish: ["80"] });
    expect([a.guestIp, b.guestIp]).not.toContain(c.guestIp);
    expect([a.ports[0]?.hostPort, b.ports[0]?.hostPort]).not.toContain(c.ports[0]?.hostPort);
    expect(await isPortFree("tcp", "0.0.0.0", a.ports[0]?.hostPort as number)).toBe(false); // held again by reconcile
  });

  it("detachMany deletes a batch of TAPs through one group delete, and never a foreign link of that group", async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `vm-${i}`);
    for (const id of ids) await hn.attach(id, { publish: ["80"] });
    expect(tapNames()).toHaveLength(20);
    expect((await hn.detachMany(ids)).sort()).toEqual([...ids].sort());
    expect(tapNames()).toEqual([]);
    expect(await mappings()).toEqual([]);
    // A link of someone else in the batch group: the batch falls back to one delete per TAP.
    sh("ip", ["link", "add", "alien0", "type", "veth", "peer", "name", "alien1"]);
    sh("ip", ["link", "set", "alien0", "group", String(0x6d77)]);
    for (const id of ids.slice(0, 3)) await hn.attach(id);
    await hn.detachMany(ids.slice(0, 3));
    expect(tapNames()).toEqual([]);
    expect(link("alien0")).toBeDefined();
    sh("ip", ["link", "del", "alien0"]);
  });

  it("gc drops the VMs that no longer exist", async () => {
    for (const id of ["vm-a", "vm-b", "vm-c"]) await hn.attach(id);
    expect((await hn.gc(["vm-b"])).sort()).toEqual(["vm-a", "vm-c"]);
    expect(hn.list().map((a) => a.vmId)).toEqual(["vm-b"]);
    expect(tapNames()).toEqual([tapNameFor("vm-b")]);
  });

  it("a subnet change is refused while VMs are recorded", async () => {
    await hn.attach("vm-a");
    await expect(open({ subnet: "10.201.0.0/16" })).rejects.toBeInstanceOf(ConflictError);
  });
});

kernelDescribe("HostNetwork: UDP clients reach a newly published port (stale conntrack entries)", () => {
  let guest: FakeGuest | undefined;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "mvnet-host-"));
  });
  afterEach(async () => {
    await guest?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("an entry made before the port was published is removed, so the next datagram reaches the guest; TCP too", async () => {
    const net = makeInternet();
    sh("sh", ["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
    const send = () =>
      execFileSync("ip", [
        "netns",
        "exec",
        net.ns,
        process.execPath,
        "-e",
        `const s=require("node:dgram").createSocket("udp4");s.bind(5555,()=>s.send("hi",30053,"${net.hostIp}",()=>s.close()))`,
      ]);
    send(); // nothing published yet: the host answers port unreachable, the entry stays (unreplied)
    const table = () => readFileSync("/proc/net/nf_conntrack", "utf8");
    expect(table()).toMatch(/udp .*sport=5555 dport=30053/);
    // Our ctnetlink reader sees the same entry, tuple for tuple.
    const ct = openConntrackSocket();
    try {
      const seen = (await conntrackList(ct)).filter((e) => e.orig.dstPort === 30053);
      expect(seen).toEqual([
        expect.objectContaining({
          orig: { src: net.gatewayIp, dst: net.hostIp, proto: 17, srcPort: 5555, dstPort: 30053 },
          reply: { src: net.hostIp, dst: net.gatewayIp, proto: 17, srcPort: 30053, dstPort: 5555 },
        }),
      ]);
    } finally {
      ct.close();
    }

    hn = await open();
    const a = await hn.attach("vm-udp", { publish: ["30053:53/udp", "8080:80"] });
    expect(table()).not.toMatch(/udp .*sport=5555 dport=30053 .*src=192\.0\.2\.2/);
    const tap = link(a.tap);
    guest = startFakeGuest({
      tap: a.tap,
      guestIp: a.guestIp,
      guestMac: a.guestMac,
      hostMac: "02:00:00:00:00:01",
    });
    await guest.ready;
    expect(tap).toBeDefined();
    send(); // same client address and port as before
    const f = await guest.waitFor((x) => x.proto === "udp" && x.dport === 53, 3000);
    expect(f).toMatchObject({ src: net.gatewayIp, dst: a.guestIp, sport: 5555 });
    // The published TCP port leads to the guest too: a client's SYN arrives at guestIp:80.
    execFileSync("ip", [
      "netns",
      "exec",
      net.ns,
      process.execPath,
      "-e",
      `const c=require("node:net").connect(8080,"${net.hostIp}");c.on("error",()=>{});setTimeout(()=>c.destroy(),300)`,
    ]);
    const syn = await guest.waitFor((x) => x.proto === "tcp" && x.dport === 80, 3000);
    expect(syn).toMatchObject({ src: net.gatewayIp, dst: a.guestIp, flags: ["SYN"] });
    await hn.detach("vm-udp");
    await hn.close();
  });
});

kernelDescribe("HostNetwork and bootstrap's subnet", () => {
  it("without a subnet of its own, a new database takes the one bootstrap protects", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mvnet-subnet-"));
    try {
      await bootstrap({ subnet: "10.50.0.0/16", stateDir: dir });
      const hn = await HostNetwork.open({ statePath: join(dir, "state.db"), stateDir: dir });
      expect(hn.subnet).toBe("10.50.0.0/16");
      const a = await hn.attach("vm-sub");
      expect(a.guestIp).toBe("10.50.0.2");
      await hn.detach("vm-sub");
      await hn.close();
      // An explicit subnet still wins, and a database keeps the subnet it recorded.
      const other = await HostNetwork.open({
        statePath: join(dir, "other.db"),
        stateDir: dir,
        subnet: SUBNET,
      });
      expect(other.subnet).toBe(SUBNET);
      await other.close();
      await expect(
        HostNetwork.open({ statePath: join(dir, "state.db"), stateDir: 5 as never }),
      ).rejects.toThrow(ValidationError);
    } finally {
      await teardown({ stateDir: dir });
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
