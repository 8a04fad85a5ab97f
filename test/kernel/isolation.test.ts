// Guest isolation with real packets: VMs attached by HostNetwork (TAP, MAC binding, per-guest
// policy), fake guests writing frames into their TAPs, and "the internet" (netns inet) holding
// addresses in every blocked range. Each rule is shown by a packet that must be dropped and one
// that must pass. A dropped datagram is shown by ordering: it is sent before one that passes on the
// same path, and the receiver's first datagram must be the one that passes.
import { type ChildProcess, spawn } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { closeShared } from "../../src/api/context.js";
import { clearGuestPolicy, getGuestPolicy, setGuestPolicy, unbindTap } from "../../src/api/guest-policy.js";
import { ValidationError } from "../../src/core/errors.js";
import { type Attachment, HostNetwork } from "../../src/host/index.js";
import { bootstrap, createPointToPointTap, deleteTap, teardown } from "../../src/index.js";
import { type FakeGuest, startFakeGuest } from "../helpers/fake-guest.js";
import { type Internet, ipJson, kernelDescribe, makeInternet, nftJson, sh } from "../helpers/kernel.js";

/** Addresses "the internet" holds, one per blocked range, plus resolvers in a private range. */
const FAR = {
  remote: "198.51.100.10",
  rfc1918a: "10.99.0.10",
  rfc1918b: "172.16.0.10",
  rfc1918c: "192.168.7.10",
  cgnat: "100.64.0.10",
  metadata: "169.254.169.254",
  resolverVm: "192.168.1.53", // vm-a's resolver (attach dns)
  resolverHost: "192.168.1.60", // every guest's resolver (bootstrap dns)
};

// A UDP sink: one socket per address:port, one JSON line per datagram {to, port, from, data}.
const SINK = `
const dgram = require("node:dgram");
const specs = process.argv.slice(1);
let pending = specs.length;
for (const spec of specs) {
  const [ip, port] = spec.split(":");
  const s = dgram.createSocket("udp4");
  s.on("message", (m, r) => process.stdout.write(JSON.stringify({ to: ip, port: Number(port), from: r.address, data: String(m) }) + "\\n"));
  s.bind(Number(port), ip, () => { if (--pending === 0) process.stdout.write("ready\\n"); });
}
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
`;
// A TCP server on 0.0.0.0:80 (SYN → SYN-ACK is what the tests look for).
const TCP80 = `require("node:net").createServer((s) => s.end("ok")).listen(80, "0.0.0.0", () => process.stdout.write("ready\\n"));
process.stdin.on("end", () => process.exit(0)); process.stdin.resume();`;

interface Datagram {
  to: string;
  port: number;
  from: string;
  data: string;
}

const children: ChildProcess[] = [];

function startIn(ns: string, script: string, args: string[], onLine?: (l: string) => void): Promise<void> {
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", script, ...args], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let buf = "";
    child.stdout?.on("data", (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line === "ready") resolve();
        else onLine?.(line);
      }
    });
    child.on("exit", (code) => reject(new Error(`${ns} helper exited with ${code}`)));
  });
}

const received: Datagram[] = [];
/** The datagrams received so far whose payload starts with `tag`. */
const tagged = (tag: string) => received.filter((d) => d.data.startsWith(tag));
/** Waits for a datagram with exactly this payload. */
async function arrives(data: string): Promise<Datagram> {
  await expect.poll(() => received.some((d) => d.data === data), { timeout: 5000 }).toBe(true);
  return received.find((d) => d.data === data) as Datagram;
}

/** Host-side UDP listener (this namespace): payloads it got. */
function hostUdp(ip: string, port: number): Promise<{ sock: Socket; got: string[] }> {
  const got: string[] = [];
  const sock = createSocket("udp4");
  sock.on("message", (m) => got.push(String(m)));
  return new Promise((resolve) => sock.bind(port, ip, () => resolve({ sock, got })));
}

let dir: string;
let hn: HostNetwork;
let inet: Internet;
let a: Attachment; // vm-a: resolver 192.168.1.53, allowed 169.254.169.254:80/tcp, publishes 8080 → 80
let b: Attachment; // vm-b: nothing of its own
let ga: FakeGuest;
let gb: FakeGuest;
let seq = 0;

const tapMac = (tap: string) => ipJson<Array<{ address: string }>>("link", "show", tap)[0]?.address as string;

function guestOn(att: Attachment, mac = att.guestMac): FakeGuest {
  return startFakeGuest({ tap: att.tap, guestIp: att.guestIp, guestMac: mac, hostMac: tapMac(att.tap) });
}

/** Sends, from guest `g`, one UDP datagram to each target; returns the payload tags used. */
async function sendUdp(g: FakeGuest, targets: Array<[string, number]>, tag: string): Promise<string[]> {
  const tags: string[] = [];
  for (const [dst, dport] of targets) {
    const payload = `${tag}-${dst}:${dport}`;
    tags.push(payload);
    await g.sendUdp({ dst, sport: 40000 + (seq++ % 20000), dport, payload });
  }
  return tags;
}

kernelDescribe("isolation: guests reach the internet and what the operator allows, nothing else", () => {
  beforeAll(async () => {
    inet = makeInternet();
    for (const ip of Object.values(FAR)) {
      if (ip !== FAR.remote) sh("ip", ["-n", inet.ns, "addr", "add", `${ip}/32`, "dev", "lo"]);
    }
    const specs = Object.values(FAR).flatMap((ip) => [`${ip}:9999`, `${ip}:53`]);
    await startIn(inet.ns, SINK, specs, (l) => received.push(JSON.parse(l) as Datagram));
    await startIn(inet.ns, TCP80, []);
    dir = mkdtempSync(join(tmpdir(), "mvnet-iso-"));
    await bootstrap({ dns: [FAR.resolverHost] });
    hn = await HostNetwork.open({ statePath: join(dir, "state.db") });
    a = await hn.attach("vm-a", {
      dns: [FAR.resolverVm],
      allow: [`${FAR.metadata}:80/tcp`],
      publish: ["8080:80/tcp"],
    });
    b = await hn.attach("vm-b");
    ga = guestOn(a);
    gb = guestOn(b);
    await Promise.all([ga.ready, gb.ready]);
  });

  afterAll(async () => {
    await ga?.stop();
    await gb?.stop();
    for (const c of children) c.kill();
    await hn?.detachMany(["vm-a", "vm-b"]);
    await hn?.close();
    await teardown();
    await closeShared();
    rmSync(dir, { recursive: true, force: true });
  });

  it("attach binds each VM's MAC to its TAP's index and records its allow-list and resolver", async () => {
    const index = (tap: string) => ipJson<Array<{ ifindex: number }>>("link", "show", tap)[0]?.ifindex;
    const set = (name: string) =>
      nftJson()
        .map((o) => o.set as { name: string; table: string; elem?: unknown[] } | undefined)
        .find((s) => s?.table === "microvm_net" && s.name === name)?.elem ?? [];
    expect(set("tap_mac")).toEqual(
      expect.arrayContaining([
        { concat: [a.tap, a.guestMac, a.guestIp] },
        { concat: [b.tap, b.guestMac, b.guestIp] },
      ]),
    );
    expect(index(a.tap)).toBeGreaterThan(0);
    const pa = await getGuestPolicy(a.guestIp);
    expect({ ...pa, allow: pa?.allow.sort(), hostAccess: pa?.hostAccess.sort() }).toEqual({
      guestIp: a.guestIp,
      allow: [`${FAR.metadata}:80/tcp`, `${FAR.resolverVm}:53/tcp`, `${FAR.resolverVm}:53/udp`].sort(),
      hostAccess: [`${FAR.resolverVm}:53/tcp`, `${FAR.resolverVm}:53/udp`],
      mac: a.guestMac,
      tap: a.tap,
    });
    expect(await getGuestPolicy(b.guestIp)).toMatchObject({ allow: [], hostAccess: [], mac: b.guestMac });
  });

  it("a frame with another source MAC is dropped on a bound TAP; the bound MAC passes", async () => {
    await gb.stop();
    const spoofer = guestOn(b, "06:00:0a:c8:ff:ff");
    await spoofer.ready;
    await sendUdp(spoofer, [[FAR.remote, 9999]], "mac-spoof");
    await spoofer.stop();
    gb = guestOn(b);
    await gb.ready;
    const [good] = await sendUdp(gb, [[FAR.remote, 9999]], "mac-real");
    expect(await arrives(good as string)).toMatchObject({ from: inet.hostIp });
    expect(tagged("mac-spoof")).toEqual([]);
  });

  it("guests reach neither each other's address nor any blocked range; the internet they reach", async () => {
    const blocked: Array<[string, number]> = [
      [FAR.rfc1918a, 9999],
      [FAR.rfc1918b, 9999],
      [FAR.rfc1918c, 9999],
      [FAR.cgnat, 9999],
      [FAR.metadata, 9999],
      [FAR.resolverVm, 9999], // a resolver opens port 53 only
    ];
    await sendUdp(gb, blocked, "blocked");
    await gb.sendUdp({ dst: a.guestIp, sport: 40999, dport: 9999, payload: "guest-to-guest" });
    const local = await hostUdp("127.0.0.1", 9999);
    try {
      await gb.sendUdp({ dst: "127.0.0.1", sport: 40998, dport: 9999, payload: "to-loopback" });
      const [good] = await sendUdp(gb, [[FAR.remote, 9999]], "internet");
      expect(await arrives(good as string)).toMatchObject({ from: inet.hostIp });
      // vm-a's own guest also reports what reached it: the datagram from vm-b never did.
      const [fromA] = await sendUdp(ga, [[FAR.remote, 9999]], "internet-a");
      await arrives(fromA as string);
      expect(tagged("blocked")).toEqual([]);
      expect(ga.frames.filter((f) => f.proto === "udp" && f.dport === 9999)).toEqual([]);
      expect(local.got).toEqual([]);
    } finally {
      local.sock.close();
    }
  });

  it("a guest's resolver is reachable on port 53 even in a private range; another guest's is not", async () => {
    const [fromB] = await sendUdp(gb, [[FAR.resolverVm, 53]], "dns-b");
    const [hostWide] = await sendUdp(gb, [[FAR.resolverHost, 53]], "dns-hostwide");
    const [fromA] = await sendUdp(ga, [[FAR.resolverVm, 53]], "dns-a");
    expect(await arrives(fromA as string)).toMatchObject({ to: FAR.resolverVm, from: inet.hostIp });
    expect(await arrives(hostWide as string)).toMatchObject({ to: FAR.resolverHost });
    expect(received.some((d) => d.data === fromB)).toBe(false);
  });

  it("a per-VM allow opens its destination for that VM only, and only on the allowed port", async () => {
    const synAck = (g: FakeGuest, sport: number) =>
      g.waitFor(
        (f) => f.proto === "tcp" && f.src === FAR.metadata && f.dport === sport && f.sport === 80,
        5000,
      );
    await gb.sendTcp({ dst: FAR.metadata, sport: 41001, dport: 80 });
    await ga.sendTcp({ dst: FAR.metadata, sport: 41002, dport: 80 });
    expect((await synAck(ga, 41002)).flags).toEqual(expect.arrayContaining(["SYN", "ACK"]));
    const [udp] = await sendUdp(ga, [[FAR.metadata, 9999]], "meta-udp");
    const [control] = await sendUdp(ga, [[FAR.remote, 9999]], "meta-control");
    await arrives(control as string);
    expect(received.some((d) => d.data === udp)).toBe(false);
    expect(gb.frames.some((f) => f.src === FAR.metadata)).toBe(false);
  });

  it("hairpin: a guest reaches a published port through the TAP's host address, to another guest and to itself", async () => {
    const hostIp = a.hostIp;
    await gb.sendTcp({ dst: hostIp, sport: 42001, dport: 8080 });
    const atA = await ga.waitFor((f) => f.proto === "tcp" && f.dport === 80 && f.sport === 42001, 5000);
    // Masqueraded to the TAP's host address: the guest answers the host, which un-NATs it.
    expect(atA).toMatchObject({ src: hostIp, dst: a.guestIp, flags: ["SYN"] });
    await ga.sendTcp({ dst: hostIp, sport: 42002, dport: 8080 });
    const self = await ga.waitFor((f) => f.proto === "tcp" && f.dport === 80 && f.sport === 42002, 5000);
    expect(self).toMatchObject({ src: hostIp, dst: a.guestIp });
    // Through the uplink's address too.
    await gb.sendTcp({ dst: inet.hostIp, sport: 42003, dport: 8080 });
    await ga.waitFor((f) => f.proto === "tcp" && f.dport === 80 && f.sport === 42003, 5000);
    // A port nobody published on the host address: refused at once with a RST, never a silent drop.
    await gb.sendTcp({ dst: hostIp, sport: 42004, dport: 8081 });
    const rst = await gb.waitFor((f) => f.proto === "tcp" && f.sport === 8081 && f.dport === 42004, 5000);
    expect(rst.flags).toContain("RST");
  });

  it("setGuestPolicy replaces a policy atomically, keeps validation before any change, and clear undoes it", async () => {
    const before = await getGuestPolicy(b.guestIp);
    await expect(
      setGuestPolicy(b.guestIp, { allow: [FAR.cgnat, "10.1.0.0/16:80-90/tcp", "10.1.0.0/16:85-95/tcp"] }),
    ).rejects.toThrow(ValidationError);
    await expect(setGuestPolicy(b.guestIp, { mac: b.guestMac, tap: "no-such-tap" })).rejects.toThrow(
      ValidationError,
    );
    expect(await getGuestPolicy(b.guestIp)).toEqual(before);

    await setGuestPolicy(b.guestIp, { allow: [FAR.cgnat], mac: b.guestMac, tap: b.tap });
    const [cg] = await sendUdp(gb, [[FAR.cgnat, 9999]], "cgnat-allowed");
    expect(await arrives(cg as string)).toMatchObject({ to: FAR.cgnat, from: inet.hostIp });
    // Replaced: the CGNAT address closes again, the metadata port opens.
    await setGuestPolicy(b.guestIp, { allow: [`${FAR.metadata}:9999/udp`], mac: b.guestMac, tap: b.tap });
    const [closed] = await sendUdp(gb, [[FAR.cgnat, 9999]], "cgnat-closed");
    const [meta] = await sendUdp(gb, [[FAR.metadata, 9999]], "meta-allowed");
    await arrives(meta as string);
    expect(received.some((d) => d.data === closed)).toBe(false);

    expect(await clearGuestPolicy(b.guestIp)).toBe(true);
    expect(await clearGuestPolicy(b.guestIp)).toBe(false);
    expect(await getGuestPolicy(b.guestIp)).toBeUndefined();
    // Restore what attach gave it (the MAC binding), as reconcile would.
    expect((await hn.reconcile()).fixedPolicies).toEqual([b.guestIp]);
    expect(await getGuestPolicy(b.guestIp)).toEqual(before);
  });

  it("detach removes the VM's policy elements; a TAP made again is bound by its new index", async () => {
    const c = await hn.attach("vm-c", { allow: ["192.0.2.0/24:443/tcp"], dns: ["10.200.0.1"] });
    expect(await getGuestPolicy(c.guestIp)).toMatchObject({ tap: c.tap, mac: c.guestMac });
    // Delete the TAP behind HostNetwork's back: reconcile makes it again and rebinds.
    sh("ip", ["link", "del", c.tap]);
    const report = await hn.reconcile();
    expect(report.recreatedTaps).toEqual(["vm-c"]);
    expect(report.fixedPolicies).toEqual([c.guestIp]);
    expect(await getGuestPolicy(c.guestIp)).toMatchObject({ tap: c.tap, mac: c.guestMac });
    const elems = JSON.stringify(nftJson().filter((o) => (o.set as { name?: string })?.name === "tap_mac"));
    expect(elems.split(c.guestIp).length - 1).toBe(1); // the old index's element is gone
    expect(await hn.detach("vm-c")).toBe(true);
    expect(await getGuestPolicy(c.guestIp)).toBeUndefined();
  });

  it("unbindTap removes a TAP's binding by name or index, and nothing else", async () => {
    const d = await hn.attach("vm-d", { dns: [FAR.resolverVm] });
    const index = ipJson<Array<{ ifindex: number }>>("link", "show", d.tap)[0]?.ifindex as number;
    expect(await unbindTap(index)).toBe(1);
    expect(await unbindTap(d.tap)).toBe(0);
    const p = await getGuestPolicy(d.guestIp);
    expect(p?.mac).toBeUndefined();
    expect(p?.allow).toHaveLength(2); // its resolver stays
    expect((await getGuestPolicy(a.guestIp))?.mac).toBe(a.guestMac);
    await expect(unbindTap("bad name")).rejects.toThrow(ValidationError);
    expect(await hn.detach("vm-d")).toBe(true);
  });

  it("deleteTap takes the TAP's MAC binding with it; a TAP without one costs no listing", async () => {
    await createPointToPointTap("raw-tap0", "10.200.0.1", "10.200.9.9", 0, 0);
    await setGuestPolicy("10.200.9.9", { mac: "06:00:0a:c8:09:09", tap: "raw-tap0" });
    const bound = () =>
      JSON.stringify(nftJson().filter((o) => (o.set as { name?: string })?.name === "tap_mac")).split(
        "10.200.9.9",
      ).length - 1;
    expect(bound()).toBe(1);
    await deleteTap("raw-tap0");
    expect(bound()).toBe(0);
    expect((await getGuestPolicy(a.guestIp))?.mac).toBe(a.guestMac); // other bindings stay
    await createPointToPointTap("raw-tap1", "10.200.0.1", "10.200.9.10", 0, 0);
    await deleteTap("raw-tap1");
  });
});
