// Our nftables table on a real kernel, in the runner's private network namespace: idempotent
// bootstrap, teardown, port-mapping elements through both appliers, and real packets through a fake
// internet (netns "inet") and a fake guest (netns "guest" behind a veth playing the TAP).
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ConflictError, FirewallError, UnsupportedError, ValidationError } from "../../src/core/errors.js";
import {
  addMapping,
  bootstrapFirewall,
  listMappings,
  type Mapping,
  type NftApplier,
  openNft,
  removeMapping,
  renderBootstrap,
  teardownFirewall,
} from "../../src/firewall/index.js";
import { type Internet, kernelDescribe, makeInternet, nftJson, sh } from "../helpers/kernel.js";

const TABLE = "microvm_net";

type Json = Record<string, unknown>;

function ourRules(table = TABLE): Array<{ chain: string; expr: string }> {
  return nftJson()
    .map((o) => o.rule as Json | undefined)
    .filter((r): r is Json => r !== undefined && r.table === table)
    .map((r) => ({ chain: String(r.chain), expr: JSON.stringify(r.expr) }));
}

function mapElements(name: string, table = TABLE): unknown[] {
  const map = nftJson()
    .map((o) => o.map as Json | undefined)
    .find((m) => m?.table === table && m.name === name);
  return (map?.elem as unknown[] | undefined) ?? [];
}

function tableExists(table = TABLE): boolean {
  return nftJson().some((o) => (o.table as Json | undefined)?.name === table);
}

/** The ruleset as JSON without handles (which differ between runs). */
function rulesetWithoutHandles(): unknown {
  const strip = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(strip)
      : typeof v === "object" && v !== null
        ? Object.fromEntries(
            Object.entries(v)
              .filter(([k]) => k !== "handle")
              .map(([k, x]) => [k, strip(x)]),
          )
        : v;
  return strip(nftJson());
}

const web: Mapping = {
  protocol: "tcp",
  host: { kind: "any" },
  hostPort: 8080,
  guestIp: "10.200.0.2",
  guestPort: 80,
};
const dns: Mapping = {
  protocol: "udp",
  host: { kind: "address", ip: "192.0.2.2" },
  hostPort: 5353,
  guestIp: "10.200.0.2",
  guestPort: 5353,
};
const ssh: Mapping = {
  protocol: "tcp",
  host: { kind: "interface", name: "uplink0" },
  hostPort: 2222,
  guestIp: "10.200.0.2",
  guestPort: 80,
};

kernelDescribe("firewall table", () => {
  let lib: NftApplier;
  let proc: NftApplier;

  beforeAll(async () => {
    lib = await openNft();
    proc = await openNft({ prefer: "nft-process" });
  });
  afterAll(async () => {
    await teardownFirewall(lib);
    lib?.close();
    proc?.close();
  });

  it("opens libnftables by default and the process applier on request", () => {
    expect(lib.kind).toBe("libnftables");
    expect(proc.kind).toBe("nft-process");
  });

  it.each([
    ["libnftables", () => lib],
    ["nft-process", () => proc],
  ])("bootstrap ×3 through %s leaves one copy of each rule, and mappings survive it", async (_, get) => {
    const nft = get();
    await teardownFirewall(nft);
    await bootstrapFirewall(nft);
    await addMapping(nft, TABLE, web);
    await bootstrapFirewall(nft);
    await bootstrapFirewall(nft);
    const rules = ourRules();
    const expected = renderBootstrap()
      .split("\n")
      .filter((l) => l.startsWith("add rule ")).length;
    expect(rules).toHaveLength(expected);
    expect(new Set(rules.map((r) => `${r.chain} ${r.expr}`)).size).toBe(expected);
    expect(new Set(rules.map((r) => r.chain))).toEqual(
      new Set([
        "nat_prerouting",
        "nat_output",
        "nat_postrouting",
        "raw_prerouting",
        "guest_prerouting",
        "guest_forward",
        "guest_input",
        "guest_postrouting",
        "from_guest",
        "to_guest",
        "guest_to_host",
      ]),
    );
    expect(await listMappings(nft, TABLE)).toEqual([web]);
  });

  it("teardown leaves no table, and succeeds when there is none", async () => {
    await bootstrapFirewall(lib);
    await addMapping(lib, TABLE, web);
    await teardownFirewall(lib);
    expect(tableExists()).toBe(false);
    await teardownFirewall(lib);
    await teardownFirewall(proc);
    expect(tableExists()).toBe(false);
    expect(await listMappings(lib, TABLE)).toEqual([]);
  });

  it("adding a mapping twice leaves one element; a conflicting add names the owner and changes nothing", async () => {
    await teardownFirewall(lib);
    // No bootstrap: the skeleton is made on demand.
    expect(await addMapping(lib, TABLE, web)).toBe(true);
    expect(await addMapping(lib, TABLE, web)).toBe(false);
    expect(await addMapping(proc, TABLE, web)).toBe(false);
    expect(mapElements("pm_any")).toHaveLength(1);
    expect(tableExists()).toBe(true);
    expect(ourRules().some((r) => r.chain === "guest_forward")).toBe(false);

    for (const nft of [lib, proc]) {
      const err = await addMapping(nft, TABLE, { ...web, guestIp: "10.200.0.9" }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConflictError);
      expect((err as ConflictError).owner).toBe("10.200.0.2:80");
      expect((err as ConflictError).message).toContain("10.200.0.2:80");
    }
    expect(await listMappings(lib, TABLE)).toEqual([web]);
    // Same host port, other protocol or host side: different keys, no conflict.
    const udp = { ...web, protocol: "udp" as const, guestIp: "10.200.0.9" };
    const onAddr = { ...web, host: { kind: "address" as const, ip: "192.0.2.2" }, guestIp: "10.200.0.9" };
    expect(await addMapping(lib, TABLE, udp)).toBe(true);
    expect(await addMapping(lib, TABLE, onAddr)).toBe(true);
    expect(await listMappings(lib, TABLE)).toEqual([web, udp, onAddr]);
  });

  it("removes exactly the mapping given: absent is a no-op, another owner's mapping stays", async () => {
    await teardownFirewall(lib);
    expect(await removeMapping(lib, TABLE, web)).toBe("absent"); // no table at all
    expect(tableExists()).toBe(false);
    await addMapping(lib, TABLE, web);
    await addMapping(lib, TABLE, ssh);
    expect(await removeMapping(lib, TABLE, { ...web, guestIp: "10.200.0.9" })).toBe("other-owner");
    expect(await removeMapping(lib, TABLE, { ...web, guestPort: 81 })).toBe("other-owner");
    expect(await listMappings(lib, TABLE)).toEqual([web, ssh]);
    expect(await removeMapping(lib, TABLE, web)).toBe("removed");
    expect(await removeMapping(lib, TABLE, web)).toBe("absent");
    expect(await removeMapping(proc, TABLE, ssh)).toBe("removed");
    expect(await removeMapping(proc, TABLE, ssh)).toBe("absent");
    expect(await listMappings(lib, TABLE)).toEqual([]);
    expect(mapElements("pm_iif")).toEqual([]);
  });

  it("re-makes the skeleton when someone flushed the ruleset", async () => {
    await bootstrapFirewall(lib);
    await addMapping(lib, TABLE, web);
    sh("nft", ["flush", "ruleset"]);
    expect(await addMapping(lib, TABLE, dns)).toBe(true);
    expect(await listMappings(lib, TABLE)).toEqual([dns]);
    expect(ourRules().filter((r) => r.chain === "nat_prerouting")).toHaveLength(3);
  });

  it("both appliers produce the same state", async () => {
    const scenario = async (nft: NftApplier) => {
      await teardownFirewall(nft);
      await bootstrapFirewall(nft, { subnet: "10.200.0.0/16", guestToHost: [{ protocol: "udp", port: 53 }] });
      for (const m of [web, dns, ssh]) await addMapping(nft, TABLE, m);
      await removeMapping(nft, TABLE, dns);
      return rulesetWithoutHandles();
    };
    const viaLib = await scenario(lib);
    const viaProc = await scenario(proc);
    expect(viaProc).toEqual(viaLib);
    expect(JSON.stringify(viaLib)).toContain("uplink0");
  });

  it("serializes concurrent changes on one context, and refuses runs after close", async () => {
    await teardownFirewall(lib);
    const many = Array.from({ length: 64 }, (_, i) => ({ ...web, hostPort: 30000 + i }));
    const added = await Promise.all(many.map((m) => addMapping(lib, TABLE, m)));
    expect(added.every((a) => a)).toBe(true);
    expect(mapElements("pm_any")).toHaveLength(64);
    const removed = await Promise.all(many.map((m) => removeMapping(lib, TABLE, m)));
    expect(new Set(removed)).toEqual(new Set(["removed"]));
    expect(mapElements("pm_any")).toHaveLength(0);

    const other = await openNft();
    const queued = other.run("list tables\n");
    other.close();
    await expect(queued).resolves.toBeTypeOf("string"); // queued before close: still runs
    await expect(other.run("list tables\n")).rejects.toThrow(UnsupportedError);
  });

  it("reports nft's own text, and rejects hostile input before nft sees it", async () => {
    for (const nft of [lib, proc]) {
      const err = await nft.run("add rule ip no_such_table c drop\n").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FirewallError);
      expect((err as FirewallError).detail).toContain("No such file or directory");
    }
    const calls: string[] = [];
    const spy: NftApplier = {
      kind: "nft-process",
      run: async (c) => {
        calls.push(c);
        return "";
      },
      close: () => undefined,
    };
    const hostile = { ...ssh, host: { kind: "interface", name: 'x" } ; flush ruleset ; "' } } as Mapping;
    await expect(addMapping(spy, TABLE, hostile)).rejects.toThrow(ValidationError);
    await expect(removeMapping(spy, TABLE, hostile)).rejects.toThrow(ValidationError);
    await expect(addMapping(spy, "t; flush ruleset", web)).rejects.toThrow(ValidationError);
    await expect(bootstrapFirewall(spy, { subnet: "10.0.0.0/8 ; flush ruleset" })).rejects.toThrow(
      ValidationError,
    );
    expect(calls).toEqual([]);
  });
});

// ---- packets ---------------------------------------------------------------------------------

// A server that answers every TCP connection with "<name>:<local port> from <peer address>" and
// echoes UDP datagrams the same way. argv: name, then tcp:<ip>:<port> / udp:<ip>:<port> listeners.
const SERVER = `
const net = require("node:net"), dgram = require("node:dgram");
const [name, ...specs] = process.argv.slice(1);
let pending = specs.length;
const ready = () => { if (--pending === 0) process.stdout.write("ready\\n"); };
for (const spec of specs) {
  const [proto, ip, port] = spec.split(":");
  if (proto === "tcp") {
    net.createServer((s) => s.end(name + ":" + s.localPort + " from " + s.remoteAddress))
      .listen(Number(port), ip, ready);
  } else {
    const u = dgram.createSocket("udp4");
    u.on("message", (m, r) => u.send(name + ":" + port + " from " + r.address, r.port, r.address));
    u.bind(Number(port), ip, ready);
  }
}
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
`;

// A client: argv proto, ip, port, timeout ms. Prints the answer, or ERR:<code> (ERR:TIMEOUT).
const CLIENT = `
const net = require("node:net"), dgram = require("node:dgram");
const [proto, ip, port, ms] = process.argv.slice(1);
const done = (s) => { process.stdout.write(s); process.exit(0); };
setTimeout(() => done("ERR:TIMEOUT"), Number(ms));
if (proto === "tcp") {
  let data = "";
  const s = net.connect(Number(port), ip);
  s.on("data", (d) => (data += d));
  s.on("end", () => done(data));
  s.on("error", (e) => done("ERR:" + e.code));
} else {
  const u = dgram.createSocket("udp4");
  u.on("message", (m) => done(String(m)));
  u.send("ping", Number(port), ip);
}
`;

const TIMEOUT_MS = 1500;
const children: ChildProcess[] = [];

/** Starts SERVER in `ns` (undefined = this namespace) and waits until it listens. */
function startServer(ns: string | undefined, name: string, specs: string[]): Promise<void> {
  const args = ["-e", SERVER, name, ...specs];
  const child = ns
    ? spawn("ip", ["netns", "exec", ns, process.execPath, ...args], { stdio: ["pipe", "pipe", "inherit"] })
    : spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"] });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
    child.on("exit", (code) => reject(new Error(`server ${name} exited with ${code}`)));
  });
}

/** Runs CLIENT in `ns` (undefined = this namespace). */
function client(ns: string | undefined, proto: "tcp" | "udp", ip: string, port: number): string {
  const args = ["-e", CLIENT, proto, ip, String(port), String(TIMEOUT_MS)];
  return ns ? sh("ip", ["netns", "exec", ns, process.execPath, ...args]) : sh(process.execPath, args);
}

/** Connects from this process (the host) and returns the answer or ERR:<code>. */
function hostTcp(ip: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    let data = "";
    const s = connect(port, ip);
    const timer = setTimeout(() => {
      s.destroy();
      resolve("ERR:TIMEOUT");
    }, TIMEOUT_MS);
    s.on("data", (d) => {
      data += d;
    });
    s.on("end", () => {
      clearTimeout(timer);
      resolve(data);
    });
    s.on("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(`ERR:${e.code}`);
    });
  });
}

kernelDescribe("firewall packets", () => {
  let nft: NftApplier;
  let inet: Internet;

  beforeAll(async () => {
    inet = makeInternet();
    // The guest: netns "guest" behind veth tapg, addressed as our TAPs are (host 10.200.0.1,
    // guest 10.200.0.2/32 peer). It also holds 203.0.113.2, a transit address routed through it.
    sh("ip", ["netns", "add", "guest"]);
    sh("ip", ["link", "add", "tapg", "type", "veth", "peer", "name", "eth0", "netns", "guest"]);
    sh("ip", ["addr", "add", "10.200.0.1", "peer", "10.200.0.2/32", "dev", "tapg"]);
    sh("ip", ["link", "set", "tapg", "up"]);
    sh("ip", ["-n", "guest", "link", "set", "lo", "up"]);
    sh("ip", ["-n", "guest", "addr", "add", "10.200.0.2", "peer", "10.200.0.1/32", "dev", "eth0"]);
    sh("ip", ["-n", "guest", "addr", "add", "203.0.113.2/32", "dev", "lo"]);
    sh("ip", ["-n", "guest", "link", "set", "eth0", "up"]);
    sh("ip", ["-n", "guest", "route", "add", "default", "via", "10.200.0.1", "dev", "eth0"]);
    sh("ip", ["route", "add", "203.0.113.2/32", "via", "10.200.0.2", "dev", "tapg"]);
    sh("ip", ["-n", inet.ns, "route", "add", "203.0.113.0/24", "via", inet.hostIp]);
    sh("ip", ["-n", inet.ns, "route", "add", "10.200.0.0/16", "via", inet.hostIp]);
    // "The internet" also hosts a cloud metadata address.
    sh("ip", ["-n", inet.ns, "addr", "add", "169.254.169.254/32", "dev", "lo"]);
    writeFileSync("/proc/sys/net/ipv4/ip_forward", "1");
    // What the caller does for a TAP it publishes 127.0.0.1 through (see nat_postrouting).
    writeFileSync("/proc/sys/net/ipv4/conf/tapg/route_localnet", "1");

    await Promise.all([
      startServer("guest", "guest", ["tcp:0.0.0.0:80", "tcp:0.0.0.0:8080", "udp:0.0.0.0:5353"]),
      startServer(inet.ns, "inet", ["tcp:0.0.0.0:80", "tcp:0.0.0.0:8081"]),
      startServer(undefined, "host", ["tcp:0.0.0.0:7777"]),
    ]);

    nft = await openNft();
    await bootstrapFirewall(nft);
    for (const m of [web, dns, ssh]) await addMapping(nft, TABLE, m);
    await addMapping(nft, TABLE, { ...web, host: { kind: "address", ip: "127.0.0.1" }, hostPort: 9000 });
  });

  afterAll(() => {
    for (const c of children) c.kill();
    nft?.close();
  });

  it("a published tcp port on any address reaches the guest from the internet", () => {
    expect(client(inet.ns, "tcp", inet.hostIp, 8080)).toBe(`guest:80 from ${inet.gatewayIp}`);
  });

  it("a udp port published on one address reaches the guest", () => {
    expect(client(inet.ns, "udp", inet.hostIp, 5353)).toBe(`guest:5353 from ${inet.gatewayIp}`);
  });

  it("a port published on an interface reaches the guest through that interface", () => {
    expect(client(inet.ns, "tcp", inet.hostIp, 2222)).toBe(`guest:80 from ${inet.gatewayIp}`);
    // From the host itself no packet arrives on uplink0: no DNAT, and nothing listens on 2222.
    return expect(hostTcp(inet.hostIp, 2222)).resolves.toBe("ERR:ECONNREFUSED");
  });

  it("transit traffic to the same port on another address is not DNATed", () => {
    // 203.0.113.2 is routed through the host, not local: the packet must reach :8080 unchanged.
    expect(client(inet.ns, "tcp", "203.0.113.2", 8080)).toBe(`guest:8080 from ${inet.gatewayIp}`);
  });

  it("a port published on an address that is not the host's leaves transit traffic to it alone", async () => {
    // 198.51.100.10 is a remote host: a guest's connection to it must reach it, not be DNATed.
    const foreign: Mapping = { ...web, host: { kind: "address", ip: inet.remoteIp }, hostPort: 8081 };
    await addMapping(nft, TABLE, foreign);
    try {
      expect(client("guest", "tcp", inet.remoteIp, 8081)).toBe(`inet:8081 from ${inet.hostIp}`);
      expect(client(inet.ns, "tcp", inet.remoteIp, 8081)).toBe("inet:8081 from 198.51.100.10");
      // Control: the same mapping on an address of the host is translated.
      await addMapping(nft, TABLE, { ...foreign, host: { kind: "address", ip: inet.hostIp } });
      expect(client(inet.ns, "tcp", inet.hostIp, 8081)).toBe(`guest:80 from ${inet.gatewayIp}`);
    } finally {
      await removeMapping(nft, TABLE, foreign);
      await removeMapping(nft, TABLE, { ...foreign, host: { kind: "address", ip: inet.hostIp } });
    }
  });

  it("the host reaches a published port through its own address and 127.0.0.1", async () => {
    expect(await hostTcp(inet.hostIp, 8080)).toBe("guest:80 from 192.0.2.2");
    // From 127.0.0.1, masqueraded to the TAP's address so the guest can answer.
    expect(await hostTcp("127.0.0.1", 8080)).toBe("guest:80 from 10.200.0.1");
    expect(await hostTcp("127.0.0.1", 9000)).toBe("guest:80 from 10.200.0.1");
  });

  it("127.0.0.1 arriving from outside is dropped (and would be answered without the guard)", () => {
    // Make "the internet" send 127.0.0.1 to the host: move its local-table rule behind one that
    // routes 127.0.0.1/tcp via the host.
    sh("ip", ["-n", inet.ns, "rule", "add", "pref", "1000", "table", "local"]);
    sh("ip", ["-n", inet.ns, "rule", "del", "pref", "0", "table", "local"]);
    sh("ip", [
      "-n",
      inet.ns,
      "rule",
      "add",
      "pref",
      "10",
      "to",
      "127.0.0.1/32",
      "ipproto",
      "tcp",
      "table",
      "100",
    ]);
    sh("ip", ["-n", inet.ns, "route", "add", "127.0.0.1/32", "via", inet.hostIp, "table", "100"]);
    // So that "the internet" accepts answers from 127.0.0.1 (else a martian source there): an
    // attacker does not need them, but the control below does.
    sh("ip", ["netns", "exec", inet.ns, "sysctl", "-qw", "net.ipv4.conf.wan0.route_localnet=1"]);
    expect(client(inet.ns, "tcp", "127.0.0.1", 9000)).toBe("ERR:TIMEOUT");
    // Control: the same packet without our raw guard is DNATed before routing (CVE-2020-8558 class).
    sh("nft", ["flush", "chain", "ip", TABLE, "raw_prerouting"]);
    try {
      expect(client(inet.ns, "tcp", "127.0.0.1", 9000)).toBe(`guest:80 from ${inet.gatewayIp}`);
    } finally {
      sh("nft", ["-f", "-"], renderBootstrap());
    }
    expect(client(inet.ns, "tcp", "127.0.0.1", 9000)).toBe("ERR:TIMEOUT");
  });

  it("guests reach the internet masqueraded, but not private, link-local or host addresses", () => {
    expect(client("guest", "tcp", inet.remoteIp, 80)).toBe(`inet:80 from ${inet.hostIp}`);
    expect(client("guest", "tcp", "169.254.169.254", 80)).toBe("ERR:TIMEOUT");
    // A host service on 0.0.0.0 is refused through the TAP's address and the uplink address.
    expect(client("guest", "tcp", "10.200.0.1", 7777)).toBe("ERR:ECONNREFUSED");
    expect(client("guest", "tcp", inet.hostIp, 7777)).toBe("ERR:ECONNREFUSED");
    // But published ports work from a guest too (hairpin through DNAT).
    // Masqueraded to the TAP's address: without it the guest would get a packet from its own address.
    expect(client("guest", "tcp", inet.hostIp, 8080)).toBe("guest:80 from 10.200.0.1");
  });

  it("the internet cannot open connections straight to a guest address", () => {
    expect(client(inet.ns, "tcp", "10.200.0.2", 80)).toBe("ERR:TIMEOUT");
  });

  it("an allowed host port is open to guests after a re-bootstrap that allows it", async () => {
    await bootstrapFirewall(nft, { guestToHost: [{ protocol: "tcp", port: 7777 }] });
    try {
      expect(client("guest", "tcp", "10.200.0.1", 7777)).toBe("host:7777 from 10.200.0.2");
    } finally {
      await bootstrapFirewall(nft);
    }
    expect(client("guest", "tcp", "10.200.0.1", 7777)).toBe("ERR:ECONNREFUSED");
    // Port mappings survived both re-bootstraps.
    expect(client(inet.ns, "tcp", inet.hostIp, 8080)).toBe(`guest:80 from ${inet.gatewayIp}`);
  });
});
