// Isolation of guests whose address is outside the bootstrap subnet (10.200.0.0/16): a TAP made by
// createTap with its own CIDR, and a point-to-point TAP with any guest address. They are guests
// because their packets arrive on a link of our TAP group, whatever address they carry. Real frames
// from fake guests; a dropped datagram is shown by ordering (sent before one that passes on the same
// path, which must arrive first). Control: the same guest on a TAP outside our group gets through.
import { type ChildProcess, spawn } from "node:child_process";
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { closeShared } from "../../src/api/context.js";
import {
  addPortMapping,
  bootstrap,
  createPointToPointTap,
  createTap,
  deleteTap,
  removePortMapping,
  teardown,
} from "../../src/index.js";
import { type FakeGuest, startFakeGuest } from "../helpers/fake-guest.js";
import { type Internet, ipJson, kernelDescribe, makeInternet, sh } from "../helpers/kernel.js";

const FAR = { metadata: "169.254.169.254", lan: "192.168.7.10" };
const CONTROL_GROUP = 4242;

// A UDP sink on each address:port given, one JSON line per datagram; and a TCP listener on 0.0.0.0:80.
const SINK = `
const dgram = require("node:dgram");
require("node:net").createServer((s) => s.end("ok")).listen(80, "0.0.0.0");
const specs = process.argv.slice(1);
let pending = specs.length;
for (const spec of specs) {
  const [ip, port] = spec.split(":");
  const s = dgram.createSocket("udp4");
  s.on("message", (m, r) => process.stdout.write(JSON.stringify({ to: ip, from: r.address, data: String(m) }) + "\\n"));
  s.bind(Number(port), ip, () => { if (--pending === 0) process.stdout.write("ready\\n"); });
}
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
`;

interface Datagram {
  to: string;
  from: string;
  data: string;
}

interface Guest {
  name: string;
  tap: string;
  hostIp: string;
  guestIp: string;
  g: FakeGuest;
}

const received: Datagram[] = [];
let sink: ChildProcess | undefined;
let sshd: Server | undefined;
let inet: Internet;
let g1: Guest; // createTap("tap1", "172.30.0.1/24")
let g2: Guest; // createPointToPointTap("tap2", "10.77.0.1", "10.77.0.2")
let g3: Guest; // a subnet guest, 10.200.0.5
let ctl: Guest; // control: a TAP outside our group, 172.29.0.1/24
let seq = 0;

async function arrives(data: string): Promise<Datagram> {
  await expect.poll(() => received.some((d) => d.data === data), { timeout: 5000 }).toBe(true);
  return received.find((d) => d.data === data) as Datagram;
}

function guest(name: string, tap: string, hostIp: string, guestIp: string): Guest {
  const hostMac = ipJson<Array<{ address: string }>>("link", "show", tap)[0]?.address as string;
  const last = guestIp.split(".").map((o) => Number(o).toString(16).padStart(2, "0"));
  const g = startFakeGuest({ tap, guestIp, guestMac: `06:00:${last.join(":")}`, hostMac });
  return { name, tap, hostIp, guestIp, g };
}

async function udp(from: Guest, dst: string, tag: string): Promise<string> {
  const payload = `${tag}-${from.name}-${dst}-${seq}`;
  await from.g.sendUdp({ dst, sport: 40000 + seq++, dport: 9999, payload });
  return payload;
}

/** The first TCP answer `from` gets to a SYN it sends to dst:dport. */
async function synAnswer(from: Guest, dst: string, dport: number): Promise<string[]> {
  const sport = 41000 + seq++;
  await from.g.sendTcp({ dst, sport, dport });
  const f = await from.g.waitFor((x) => x.proto === "tcp" && x.sport === dport && x.dport === sport, 5000);
  return f.flags ?? [];
}

const got9999 = (x: Guest) => x.g.frames.filter((f) => f.proto === "udp" && f.dport === 9999);

kernelDescribe("isolation: guests outside the bootstrap subnet are isolated by their TAP's group", () => {
  beforeAll(async () => {
    inet = makeInternet();
    for (const ip of Object.values(FAR)) sh("ip", ["-n", inet.ns, "addr", "add", `${ip}/32`, "dev", "lo"]);
    // The internet knows the guests' addresses, as a neighbour routing them via the host would.
    for (const net of ["172.30.0.0/24", "10.77.0.0/24", "172.29.0.0/24"]) {
      sh("ip", ["-n", inet.ns, "route", "add", net, "via", inet.hostIp]);
    }
    const specs = [inet.remoteIp, ...Object.values(FAR)].map((ip) => `${ip}:9999`);
    sink = spawn("ip", ["netns", "exec", inet.ns, process.execPath, "-e", SINK, ...specs], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    await new Promise<void>((resolve, reject) => {
      let buf = "";
      sink?.stdout?.on("data", (d: Buffer) => {
        buf += d.toString();
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line === "ready") resolve();
          else received.push(JSON.parse(line) as Datagram);
        }
      });
      sink?.on("exit", (code) => reject(new Error(`sink exited with ${code}`)));
    });
    // A host service on every address (sshd-like): guests must be refused.
    sshd = createServer((s) => s.end("ssh"));
    await new Promise<void>((resolve) => sshd?.listen(22, "0.0.0.0", resolve));

    await bootstrap();
    await createTap("tap1", "172.30.0.1/24");
    await createPointToPointTap("tap2", "10.77.0.1", "10.77.0.2", 0, 0);
    await createPointToPointTap("tap3", "10.200.0.1", "10.200.0.5", 0, 0);
    await createTap("ctl0", "172.29.0.1/24", { group: CONTROL_GROUP });
    g1 = guest("g1", "tap1", "172.30.0.1", "172.30.0.2");
    g2 = guest("g2", "tap2", "10.77.0.1", "10.77.0.2");
    g3 = guest("g3", "tap3", "10.200.0.1", "10.200.0.5");
    ctl = guest("ctl", "ctl0", "172.29.0.1", "172.29.0.2");
    await Promise.all([g1, g2, g3, ctl].map((x) => x.g.ready));
  });

  afterAll(async () => {
    await Promise.all([g1, g2, g3, ctl].map((x) => x?.g.stop()));
    sink?.kill();
    sshd?.close();
    for (const tap of ["tap1", "tap2", "tap3"]) await deleteTap(tap).catch(() => undefined);
    sh("ip", ["link", "del", "ctl0"]);
    await teardown();
    await closeShared();
  });

  it("they reach the internet masqueraded to the uplink address; metadata, RFC 1918 and other guests they do not", async () => {
    for (const [from, others] of [
      [g1, [g2, g3]],
      [g2, [g1, g3]],
    ] as Array<[Guest, Guest[]]>) {
      const blocked: string[] = [];
      for (const dst of [FAR.metadata, FAR.lan]) blocked.push(await udp(from, dst, "blocked"));
      for (const o of others) await udp(from, o.guestIp, "guest-to-guest");
      const good = await udp(from, inet.remoteIp, "internet");
      expect(await arrives(good)).toMatchObject({ from: inet.hostIp });
      expect(received.filter((d) => blocked.includes(d.data))).toEqual([]);
      for (const o of others) expect(got9999(o)).toEqual([]);
    }
  });

  it("control: the same datagrams from a TAP outside our group pass, unmasqueraded", async () => {
    const meta = await udp(ctl, FAR.metadata, "control");
    expect(await arrives(meta)).toMatchObject({ from: ctl.guestIp });
    const lan = await udp(ctl, FAR.lan, "control");
    expect(await arrives(lan)).toMatchObject({ from: ctl.guestIp });
  });

  it("a SYN to the metadata service gets nothing; to the internet a SYN-ACK", async () => {
    for (const from of [g1, g2]) {
      const sport = 42000 + seq++;
      await from.g.sendTcp({ dst: FAR.metadata, sport, dport: 80 });
      expect(await synAnswer(from, inet.remoteIp, 80)).toEqual(expect.arrayContaining(["SYN", "ACK"]));
      expect(from.g.frames.some((f) => f.src === FAR.metadata)).toBe(false);
    }
    // Control: the same SYN from outside our group is answered.
    expect(await synAnswer(ctl, FAR.metadata, 80)).toEqual(expect.arrayContaining(["SYN", "ACK"]));
  });

  it("a host service on 0.0.0.0 answers them with a RST, through their TAP's and the uplink's address", async () => {
    for (const from of [g1, g2]) {
      expect(await synAnswer(from, from.hostIp, 22)).toContain("RST");
      expect(await synAnswer(from, inet.hostIp, 22)).toContain("RST");
    }
    expect(await synAnswer(ctl, ctl.hostIp, 22)).toEqual(expect.arrayContaining(["SYN", "ACK"]));
  });

  it("the internet cannot open connections to them; to the control guest it can", async () => {
    const send = (dst: string, payload: string) =>
      sh("ip", [
        "netns",
        "exec",
        inet.ns,
        process.execPath,
        "-e",
        `const s=require("node:dgram").createSocket("udp4");s.send(${JSON.stringify(payload)},9999,${JSON.stringify(dst)},()=>s.close())`,
      ]);
    const before = [g1, g2].map((x) => got9999(x).length);
    send(g1.guestIp, "in-g1");
    send(g2.guestIp, "in-g2");
    send(ctl.guestIp, "in-ctl");
    await ctl.g.waitFor((f) => f.proto === "udp" && f.dport === 9999 && f.src === inet.gatewayIp, 5000);
    expect([g1, g2].map((x) => got9999(x).length)).toEqual(before);
  });

  it("a published port of one leads there from another (hairpin, masqueraded to the TAP's address)", async () => {
    await addPortMapping("", 8090, g2.guestIp, 80, "tcp");
    try {
      const sport = 43000 + seq++;
      await g1.g.sendTcp({ dst: inet.hostIp, sport, dport: 8090 });
      const at = await g2.g.waitFor((f) => f.proto === "tcp" && f.dport === 80 && f.sport === sport, 5000);
      expect(at).toMatchObject({ src: g2.hostIp, dst: g2.guestIp, flags: ["SYN"] });
    } finally {
      await removePortMapping("", 8090, g2.guestIp, 80, "tcp");
    }
  });
});
