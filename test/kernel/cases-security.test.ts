// Cases C10, C14, C18 of ../shared/cases (security), with real packets: VMs attached by
// HostNetwork, fake guests on their TAPs, "the internet" (netns inet) as the neighbour. Each case
// shows the packet that must be dropped or refused and the one that must pass.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { closeShared } from "../../src/api/context.js";
import { getGuestPolicy, setGuestPolicy } from "../../src/api/guest-policy.js";
import { type Attachment, HostNetwork } from "../../src/host/index.js";
import { bootstrap, teardown } from "../../src/index.js";
import { type FakeGuest, startFakeGuest } from "../helpers/fake-guest.js";
import { type Internet, ipJson, kernelDescribe, makeInternet, readSysctl, sh } from "../helpers/kernel.js";
import type { Ipv4Summary } from "../helpers/packets.js";

const METADATA = "169.254.169.254";

// A TCP connect attempt from "the internet": argv ip, port, ms. Prints nothing; exits after ms.
const PROBE = `const s = require("node:net").connect(Number(process.argv[2]), process.argv[1]);
s.on("error", () => {}); setTimeout(() => process.exit(0), Number(process.argv[3]));`;
const TCP80 = `require("node:net").createServer((s) => s.end("ok")).listen(80, "0.0.0.0", () => process.stdout.write("ready\\n"));
process.stdin.on("end", () => process.exit(0)); process.stdin.resume();`;

const children: ChildProcess[] = [];
let dir: string;
let hn: HostNetwork;
let inet: Internet;
let m: Attachment; // no allowances of its own; publishes 127.0.0.1:9000 → 80
let n: Attachment; // allowed: metadata tcp/80 and host tcp/22
let gm: FakeGuest;
let gn: FakeGuest;
let sport = 43000;

const tapMac = (tap: string) => ipJson<Array<{ address: string }>>("link", "show", tap)[0]?.address as string;
const guestOn = (att: Attachment) =>
  startFakeGuest({ tap: att.tap, guestIp: att.guestIp, guestMac: att.guestMac, hostMac: tapMac(att.tap) });

/** Sends a SYN from guest `g` to dst:dport and waits for the answer frame (SYN-ACK or RST). */
async function synAnswer(g: FakeGuest, dst: string, dport: number): Promise<Ipv4Summary> {
  const sp = sport++;
  await g.sendTcp({ dst, sport: sp, dport });
  return g.waitFor((f) => f.proto === "tcp" && f.src === dst && f.sport === dport && f.dport === sp, 5000);
}

/** Sends a SYN from guest `g` to dst:dport; returns the source port, to look for an answer later. */
async function synOnly(g: FakeGuest, dst: string, dport: number): Promise<number> {
  const sp = sport++;
  await g.sendTcp({ dst, sport: sp, dport });
  return sp;
}

const answered = (g: FakeGuest, dst: string, sp: number) =>
  g.frames.some((f) => f.proto === "tcp" && f.src === dst && f.dport === sp);

kernelDescribe("security cases C10, C14, C18", () => {
  let sshd: Server;
  let sshdConnections = 0;

  beforeAll(async () => {
    inet = makeInternet();
    sh("ip", ["-n", inet.ns, "addr", "add", `${METADATA}/32`, "dev", "lo"]);
    // The neighbour routes our subnet through the host, as a machine on the same LAN could.
    sh("ip", ["-n", inet.ns, "route", "add", "10.200.0.0/16", "via", inet.hostIp]);
    const server = spawn("ip", ["netns", "exec", inet.ns, process.execPath, "-e", TCP80], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    children.push(server);
    await new Promise<void>((resolve) => server.stdout?.on("data", () => resolve()));
    // A host service on 0.0.0.0:22 (C18).
    sshd = createServer((s) => {
      sshdConnections++;
      s.end("SSH-2.0-test\r\n");
    });
    await new Promise<void>((resolve) => sshd.listen(22, "0.0.0.0", resolve));

    dir = mkdtempSync(join(tmpdir(), "mvnet-sec-"));
    await bootstrap();
    hn = await HostNetwork.open({ statePath: join(dir, "state.db") });
    m = await hn.attach("vm-m", { publish: ["127.0.0.1:9000:80/tcp"] });
    n = await hn.attach("vm-n", {
      allow: [`${METADATA}:80/tcp`],
      hostPorts: [{ protocol: "tcp", port: 22 }],
    });
    gm = guestOn(m);
    gn = guestOn(n);
    await Promise.all([gm.ready, gn.ready]);
  });

  afterAll(async () => {
    await gm?.stop();
    await gn?.stop();
    for (const c of children) c.kill();
    sshd?.close();
    await hn?.detachMany(["vm-m", "vm-n"]);
    await hn?.close();
    await teardown();
    await closeShared();
    rmSync(dir, { recursive: true, force: true });
  });

  it("C10: a port published on 127.0.0.1 is reached by the host there, and by no neighbour at any address", async () => {
    const probe = (ip: string, port: number) =>
      sh("ip", ["netns", "exec", inet.ns, process.execPath, "-e", PROBE, ip, String(port), "300"]);
    probe(inet.hostIp, 9000); // the host's uplink address
    probe(m.hostIp, 9000); // the TAPs' host address, routed through the host
    probe(m.guestIp, 80); // the guest itself, directly
    // 127.0.0.1 sent to the host: the neighbour's local table moved behind a rule routing it out.
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
    sh("ip", ["netns", "exec", inet.ns, "sysctl", "-qw", "net.ipv4.conf.wan0.route_localnet=1"]);
    try {
      probe("127.0.0.1", 9000);
    } finally {
      sh("ip", ["-n", inet.ns, "rule", "del", "pref", "10"]);
      sh("ip", ["-n", inet.ns, "rule", "add", "pref", "0", "table", "local"]);
      sh("ip", ["-n", inet.ns, "rule", "del", "pref", "1000"]);
    }
    // Then the host itself, at 127.0.0.1: its SYN reaches the guest (masqueraded to the TAP address).
    const sock = connect({ host: "127.0.0.1", port: 9000 });
    sock.on("error", () => undefined);
    try {
      const syn = await gm.waitFor((f) => f.proto === "tcp" && f.dport === 80, 5000);
      expect(syn).toMatchObject({ src: m.hostIp, dst: m.guestIp, flags: ["SYN"] });
    } finally {
      sock.destroy();
    }
    // Nothing from the neighbour ever reached the guest, by any of the four addresses.
    expect(gm.frames.filter((f) => f.src === inet.gatewayIp)).toEqual([]);
    expect(readSysctl(`net/ipv4/conf/${m.tap}/route_localnet`)).toBe("1");
    expect(readSysctl(`net/ipv4/conf/${n.tap}/route_localnet`)).toBe("0");
    expect(readSysctl("net/ipv4/conf/all/route_localnet")).toBe("0");
  });

  it("C14: a guest's SYN to 169.254.169.254:80 is dropped unless allowed, per VM and per host", async () => {
    // vm-m has no allowance: dropped. Shown by the control sent after it, on the same path, answered.
    const dropped = await synOnly(gm, METADATA, 80);
    expect((await synAnswer(gm, inet.remoteIp, 80)).flags).toEqual(expect.arrayContaining(["SYN", "ACK"]));
    // vm-n is allowed it (attach `allow`): answered.
    const ok = await synAnswer(gn, METADATA, 80);
    expect(ok.flags).toEqual(expect.arrayContaining(["SYN", "ACK"]));
    expect(answered(gm, METADATA, dropped)).toBe(false);

    // Per host: allowed for every guest by bootstrap, then taken back.
    await bootstrap({ allowedDestinations: [`${METADATA}:80/tcp`] });
    try {
      expect((await synAnswer(gm, METADATA, 80)).flags).toEqual(expect.arrayContaining(["SYN", "ACK"]));
    } finally {
      await bootstrap();
    }
    const again = await synOnly(gm, METADATA, 80);
    expect((await synAnswer(gn, METADATA, 80)).flags).toContain("SYN");
    expect(answered(gm, METADATA, again)).toBe(false);
    // Another port of the metadata address stays closed even for vm-n.
    const other = await synOnly(gn, METADATA, 8080);
    expect((await synAnswer(gn, METADATA, 80)).flags).toContain("SYN");
    expect(answered(gn, METADATA, other)).toBe(false);
  });

  it("C18: a guest's connection to the host's 0.0.0.0:22 via the TAP address is refused at once unless allowed", async () => {
    const rst = await synAnswer(gm, m.hostIp, 22);
    expect(rst.flags).toContain("RST");
    expect(rst.flags).not.toContain("SYN");
    // vm-n is allowed tcp/22 on the host: the service answers.
    const synAck = await synAnswer(gn, n.hostIp, 22);
    expect(synAck.flags).toEqual(expect.arrayContaining(["SYN", "ACK"]));
    // Per host: guestToHost opens it for every guest, and re-bootstrapping closes it again.
    await bootstrap({ guestToHost: [{ protocol: "tcp", port: 22 }] });
    try {
      expect((await synAnswer(gm, m.hostIp, 22)).flags).toEqual(expect.arrayContaining(["SYN", "ACK"]));
    } finally {
      await bootstrap();
    }
    expect((await synAnswer(gm, m.hostIp, 22)).flags).toContain("RST");
    // The fake guests never complete a handshake, so the service never saw a connection.
    expect(sshdConnections).toBe(0);
  });
  it("a policy change without mac/tap keeps the guest's MAC binding; a binding to a foreign device is refused", async () => {
    const before = await getGuestPolicy(m.guestIp);
    expect(before).toMatchObject({ mac: m.guestMac, tap: m.tap });
    await setGuestPolicy(m.guestIp, { allow: ["192.0.2.99:5432/tcp"] });
    expect(await getGuestPolicy(m.guestIp)).toMatchObject({ mac: m.guestMac, tap: m.tap });
    for (const tap of ["lo", n.tap]) {
      await expect(setGuestPolicy(m.guestIp, { mac: m.guestMac, tap })).rejects.toMatchObject({
        field: "tap",
      });
    }
    await setGuestPolicy(m.guestIp, { allow: before?.allow ?? [] });
    expect(await getGuestPolicy(m.guestIp)).toEqual(before);
  });
});
