// IPv6 on our TAPs is off (issue 5): a guest's IPv6 gets no answer from the host, its router
// advertisements change nothing on the host, and nothing it sends is forwarded — shown with real
// frames that this process writes into each TAP as a VMM's guest would, whatever mechanism the
// library uses to turn IPv6 off. A control TAP made here with IPv6 on receives the very same frames
// and must answer, autoconfigure and forward them, so every "nothing happened" below can fail.
//
// Order matters: our TAPs are checked first, while the host's IPv6 forwarding is off (with it on,
// `accept_ra=1` ignores router advertisements and would hide a TAP that accepts them), then the
// controls.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { closeShared } from "../../src/api/context.js";
import { HostNetwork } from "../../src/host/index.js";
import { bootstrap, createPointToPointTap, deleteTap, teardown } from "../../src/index.js";
import { koffi, sysRead, sysWrite } from "../../src/kernel/ffi.js";
import { tapClose, tapOpen } from "../../src/kernel/tun.js";
import { ipJson, kernelDescribe, sh } from "../helpers/kernel.js";
import {
  ALL_NODES,
  ARP_REQUEST,
  arpReplyFrame,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  eui64Address,
  ICMP_ECHO_REPLY,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_NEIGHBOR_SOLICITATION,
  ICMPV6_ROUTER_ADVERTISEMENT,
  IPPROTO_ICMP,
  type Ipv6Summary,
  icmpEchoFrame,
  icmpv6EchoBody,
  icmpv6Frame,
  ipv6MulticastMac,
  neighborAdvertisementBody,
  parseArp,
  parseEthernet,
  parseIpv4,
  routerAdvertisementBody,
  stripVnetHdr,
  summarizeIpv6,
  udp6Frame,
  withVnetHdr,
} from "../helpers/packets.js";

const ROUTER_LL = "fe80::1";
const RA_PREFIX = "2001:db8:1::";
const RA_ROUTE = "2001:db8:99::";
/** "Elsewhere": a second namespace behind a veth, reached through the host's IPv6 routing. */
const FAR_NS = "v6far";
const FAR_IP = "2001:db8:2::1";
const FAR_PORT = 9999;
const CONTROL_TAP = "ctl6";

/**
 * One end of a TAP opened in this process exactly as a VMM opens it (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR),
 * playing the guest: it answers ARP for the guest's IPv4 address and neighbour solicitations for its
 * IPv6 addresses (else a reply the host wanted to send would wait on neighbour discovery and never
 * show), and keeps every frame the host writes.
 */
class GuestPort {
  /** Sequence numbers of the ICMP echo replies received (IPv4). */
  readonly pingReplies: number[] = [];
  readonly ipv6: Ipv6Summary[] = [];
  readonly linkLocal: string;
  readonly global: string;
  readonly #fd: number;
  readonly #poll: { close(): void };
  #seq = 0;

  constructor(
    readonly tap: string,
    readonly mac: string,
    readonly tapMac: string,
    readonly ip4?: string,
  ) {
    this.linkLocal = eui64Address(mac);
    this.global = eui64Address(mac, RA_PREFIX);
    this.#fd = tapOpen(tap, { nonBlocking: true });
    const buf = Buffer.alloc(65536 + 10);
    this.#poll = koffi.node.poll(this.#fd, { readable: true }, () => {
      for (;;) {
        const n = sysRead(this.#fd, buf, `reading ${tap}`);
        if (n < 0) return;
        this.#receive(stripVnetHdr(buf.subarray(0, n)).frame);
      }
    });
  }

  send(frame: Buffer): void {
    sysWrite(this.#fd, withVnetHdr(frame), `writing a frame to ${this.tap}`);
  }

  /**
   * The pass path: an IPv4 ping from the guest to `hostIp`, resolved once the host's reply is back.
   * Frames written before it were handled by the host before it (a TAP write runs the receive path
   * in the writer's context, drivers/net/tun.c tun_get_user).
   */
  async pingHost(hostIp: string): Promise<void> {
    const seq = ++this.#seq;
    this.send(
      icmpEchoFrame({
        srcMac: this.mac,
        dstMac: this.tapMac,
        src: this.ip4 as string,
        dst: hostIp,
        id: 7,
        seq,
      }),
    );
    await waitUntil(() => this.pingReplies.includes(seq));
  }

  close(): void {
    this.#poll.close();
    tapClose(this.#fd);
  }

  /** IPv6 frames from the host that answer the guest: addressed to one of its unicast addresses. */
  repliesV6(): Ipv6Summary[] {
    return this.ipv6.filter(
      (f) => f.icmpType === ICMPV6_ECHO_REPLY || f.dst === this.linkLocal || f.dst === this.global,
    );
  }

  #receive(frame: Buffer): void {
    const eth = parseEthernet(frame);
    if (eth.etherType === ETHERTYPE_ARP) {
      const arp = parseArp(eth.payload);
      if (arp.op === ARP_REQUEST && arp.targetIp === this.ip4) this.send(arpReplyFrame(arp, this.mac));
      return;
    }
    const v6 = summarizeIpv6(frame);
    if (v6) {
      this.ipv6.push(v6);
      const mine = v6.ndTarget === this.linkLocal || v6.ndTarget === this.global;
      if (v6.icmpType === ICMPV6_NEIGHBOR_SOLICITATION && mine && v6.src !== "::") {
        this.send(
          icmpv6Frame({
            srcMac: this.mac,
            dstMac: v6.srcMac,
            src: v6.ndTarget as string,
            dst: v6.src,
            type: ICMPV6_NEIGHBOR_ADVERTISEMENT,
            body: neighborAdvertisementBody(v6.ndTarget as string, this.mac),
          }),
        );
      }
      return;
    }
    if (eth.etherType !== ETHERTYPE_IPV4) return;
    const ip = parseIpv4(eth.payload);
    if (ip.protocol === IPPROTO_ICMP && ip.payload[0] === ICMP_ECHO_REPLY && ip.dst === this.ip4) {
      this.pingReplies.push(ip.payload.readUInt16BE(6));
    }
  }
}

/** The guest's IPv6 frames, the same for every TAP but for the guest's and the TAP's MACs. */
function frames(g: GuestPort) {
  const echo = (dst: string, dstMac: string, seq: number) =>
    icmpv6Frame({
      srcMac: g.mac,
      dstMac,
      src: g.linkLocal,
      dst,
      type: ICMPV6_ECHO_REQUEST,
      body: icmpv6EchoBody(0x6666, seq, Buffer.from("microvm-net ipv6")),
    });
  return {
    echoAllNodes: echo(ALL_NODES, ipv6MulticastMac(ALL_NODES), 1),
    /** To the address the host's side of this TAP would have, from the TAP's MAC (RFC 4291 App. A). */
    echoHost: echo(eui64Address(g.tapMac), g.tapMac, 2),
    routerAdvertisement: icmpv6Frame({
      srcMac: g.mac,
      dstMac: ipv6MulticastMac(ALL_NODES),
      src: ROUTER_LL,
      dst: ALL_NODES,
      type: ICMPV6_ROUTER_ADVERTISEMENT,
      body: routerAdvertisementBody({
        routerLifetime: 1800,
        sourceMac: g.mac,
        prefixes: [{ prefix: RA_PREFIX, length: 64 }],
        routes: [{ prefix: RA_ROUTE, length: 48 }],
      }),
    }),
    toFar: (tag: string) =>
      udp6Frame({
        srcMac: g.mac,
        dstMac: g.tapMac,
        src: g.global,
        dst: FAR_IP,
        sport: 40000,
        dport: FAR_PORT,
        payload: Buffer.from(tag),
      }),
  };
}

/** The host's IPv6 state that a router advertisement could change, without timers and states. */
function ipv6State() {
  const addrs = ipJson<Array<{ ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }>>(
    "-6",
    "addr",
    "show",
  ).flatMap((l) => l.addr_info.map((a) => `${l.ifname} ${a.local}/${a.prefixlen}`));
  const routes = ipJson<Array<Record<string, unknown>>>("-6", "route", "show", "table", "all").map(
    (r) => `${r.type ?? ""} ${r.dst} via ${r.gateway ?? "-"} dev ${r.dev ?? "-"} table ${r.table ?? "main"}`,
  );
  const neighbours = ipJson<Array<Record<string, unknown>>>("-6", "neigh", "show").map(
    (n) => `${n.dst} dev ${n.dev} lladdr ${n.lladdr ?? "-"} ${"router" in n ? "router" : ""}`,
  );
  return { addrs: addrs.sort(), routes: routes.sort(), neighbours: neighbours.sort() };
}

/** Datagrams the far namespace received, by payload. */
const farGot: string[] = [];

function startFarSink(): Promise<() => void> {
  // The sink runs inside the far namespace (a socket opened here would be in ours).
  const script = `const s = require("node:dgram").createSocket("udp6");
s.on("message", (m) => process.stdout.write(String(m) + "\\n"));
s.bind(${FAR_PORT}, "${FAR_IP}", () => process.stdout.write("ready\\n"));
process.stdin.on("end", () => process.exit(0)); process.stdin.resume();`;
  const child = spawn("ip", ["netns", "exec", FAR_NS, process.execPath, "-e", script], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let buf = "";
    child.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line === "ready") resolve(() => child.kill());
        else farGot.push(line);
      }
    });
    child.on("exit", (code) => reject(new Error(`far sink exited with ${code}`)));
  });
}

function setForwarding(on: boolean): void {
  sh("sysctl", ["-qw", `net.ipv6.conf.all.forwarding=${on ? 1 : 0}`]);
}

const tapMacOf = (tap: string) =>
  ipJson<Array<{ address: string }>>("link", "show", tap)[0]?.address as string;
/** Resolves once `pred` holds (checked every 50 ms); rejects after 5 s. For hooks, where expect.poll is not allowed. */
async function waitUntil(pred: () => boolean): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`still not true after 5 s: ${pred.toString()}`);
}
const quiet = () => new Promise((r) => setTimeout(r, 1000));

kernelDescribe("IPv6 on our TAPs: no answer, no router advertisement accepted, no forwarding", () => {
  let dir: string;
  let hn: HostNetwork;
  let stopSink: () => void;
  const ports: GuestPort[] = [];
  const ours: Array<{ made: string; port: GuestPort; hostIp: string }> = [];
  let control: GuestPort;

  beforeAll(async () => {
    // Elsewhere: 2001:db8:2::/64 routed through a veth to a second namespace (no DAD: usable at once).
    sh("ip", ["netns", "add", FAR_NS]);
    sh("ip", ["link", "add", "v6up", "type", "veth", "peer", "name", "v6wan", "netns", FAR_NS]);
    sh("ip", ["addr", "add", "2001:db8:f::1/64", "dev", "v6up", "nodad"]);
    sh("ip", ["link", "set", "v6up", "up"]);
    sh("ip", ["-n", FAR_NS, "link", "set", "lo", "up"]);
    sh("ip", ["-n", FAR_NS, "addr", "add", "2001:db8:f::2/64", "dev", "v6wan", "nodad"]);
    sh("ip", ["-n", FAR_NS, "addr", "add", `${FAR_IP}/128`, "dev", "lo", "nodad"]);
    sh("ip", ["-n", FAR_NS, "link", "set", "v6wan", "up"]);
    sh("ip", ["-6", "route", "add", "2001:db8:2::/64", "via", "2001:db8:f::2", "dev", "v6up"]);
    stopSink = await startFarSink();
    setForwarding(false);

    await bootstrap();
    const p2p = await createPointToPointTap("fc-v6", "10.200.0.1", "10.200.0.250", 0, 0);
    dir = mkdtempSync(join(tmpdir(), "mvnet-v6-"));
    hn = await HostNetwork.open({ statePath: join(dir, "state.db") });
    const att = await hn.attach("vm-v6");

    // The control: a TAP made without our library, with IPv6 on and everything a router
    // advertisement carries accepted (accept_ra=2: even while forwarding is on).
    sh("ip", ["tuntap", "add", "dev", CONTROL_TAP, "mode", "tap", "vnet_hdr"]);
    for (const [k, v] of [
      ["disable_ipv6", "0"],
      ["accept_dad", "0"],
      ["accept_ra", "2"],
      ["accept_ra_rt_info_max_plen", "64"],
    ]) {
      sh("sysctl", ["-qw", `net.ipv6.conf.${CONTROL_TAP}.${k}=${v}`]);
    }
    sh("ip", ["link", "set", CONTROL_TAP, "up"]);

    const open = (tap: string, mac: string, ip4?: string) => {
      const p = new GuestPort(tap, mac, tapMacOf(tap), ip4);
      ports.push(p);
      return p;
    };
    ours.push({
      made: "createPointToPointTap",
      port: open(p2p.name, "02:00:0a:c8:00:fa", "10.200.0.250"),
      hostIp: "10.200.0.1",
    });
    ours.push({
      made: "HostNetwork.attach",
      port: open(att.tap, att.guestMac, att.guestIp),
      hostIp: att.hostIp,
    });
    // Its carrier comes up when opened; only then does the kernel give it a link-local address.
    control = open(CONTROL_TAP, "02:00:00:00:c7:01");
    await waitUntil(() => ipv6State().addrs.includes(`${CONTROL_TAP} ${eui64Address(control.tapMac)}/64`));
    // Were IPv6 on for a TAP of ours, its link-local address would have appeared with the carrier
    // too (ours were opened first, and link events are handled in order), but answer only after
    // duplicate address detection (RFC 4862 §5.4): wait for that, so that such a TAP cannot pass for
    // one with IPv6 off merely by being asked too early.
    const tentative = () =>
      ipJson<Array<{ ifname: string; addr_info: Array<{ tentative?: boolean }> }>>("-6", "addr", "show").some(
        (l) => ours.some((o) => o.port.tap === l.ifname) && l.addr_info.some((a) => a.tentative),
      );
    await waitUntil(() => !tentative());
  });

  afterAll(async () => {
    for (const p of ports) p.close();
    stopSink?.();
    await hn?.detach("vm-v6");
    await hn?.close();
    await deleteTap("fc-v6").catch(() => undefined);
    await teardown();
    await closeShared();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("our TAPs: echo requests to ff02::1 and to the host's would-be link-local get no reply; an IPv4 ping does", async () => {
    for (const { made, port, hostIp } of ours) {
      const f = frames(port);
      port.send(f.echoAllNodes);
      port.send(f.echoHost);
      // The pass path on the same TAP, sent last: once its reply is in, the IPv6 frames were handled.
      await port.pingHost(hostIp);
      await quiet();
      expect({ made, replies: port.repliesV6() }).toEqual({ made, replies: [] });
    }
  });

  it("our TAPs: a router advertisement adds no address, route, default route or neighbour on the host", async () => {
    for (const { made, port, hostIp } of ours) {
      const before = ipv6State();
      port.send(frames(port).routerAdvertisement);
      await port.pingHost(hostIp);
      await quiet();
      const after = ipv6State();
      expect({ made, ...after }).toEqual({ made, ...before });
      expect(after.addrs.filter((a) => a.startsWith(`${port.tap} `))).toEqual([]);
      expect(after.routes.filter((r) => r.includes(` dev ${port.tap} `) || r.includes("default"))).toEqual(
        [],
      );
      expect(port.repliesV6()).toEqual([]);
    }
  });

  it("our TAPs: a packet to an IPv6 address routed elsewhere is not forwarded, with forwarding on", async () => {
    setForwarding(true);
    try {
      for (const { port, hostIp } of ours) {
        port.send(frames(port).toFar(`leak-${port.tap}`));
        await port.pingHost(hostIp);
      }
      // The control's datagram takes the same route and is sent after ours: when it arrives, ours
      // had every chance to.
      control.send(frames(control).toFar("control-forwarded"));
      await expect.poll(() => farGot.includes("control-forwarded"), { timeout: 5000 }).toBe(true);
      await quiet();
      expect(farGot.filter((d) => d.startsWith("leak-"))).toEqual([]);
    } finally {
      setForwarding(false);
    }
  });

  it("control TAP with IPv6 on: the same echo requests are answered", async () => {
    const f = frames(control);
    control.send(f.echoAllNodes);
    control.send(f.echoHost);
    await expect
      .poll(
        () =>
          control.ipv6
            .filter((p) => p.icmpType === ICMPV6_ECHO_REPLY && p.dst === control.linkLocal && p.checksumOk)
            .map((p) => p.src)
            .sort(),
        { timeout: 5000 },
      )
      .toEqual([eui64Address(control.tapMac), eui64Address(control.tapMac)]);
  });

  it("control TAP with IPv6 on: the same router advertisement gives a SLAAC address, its routes and a default route", async () => {
    control.send(frames(control).routerAdvertisement);
    const slaac = `${CONTROL_TAP} ${eui64Address(control.tapMac, RA_PREFIX)}/64`;
    await expect.poll(() => ipv6State().addrs.includes(slaac), { timeout: 5000 }).toBe(true);
    const { routes, neighbours } = ipv6State();
    expect(routes).toEqual(
      expect.arrayContaining([
        ` ${RA_PREFIX}/64 via - dev ${CONTROL_TAP} table main`,
        ` ${RA_ROUTE}/48 via ${ROUTER_LL} dev ${CONTROL_TAP} table main`,
        ` default via ${ROUTER_LL} dev ${CONTROL_TAP} table main`,
      ]),
    );
    expect(neighbours).toContain(`${ROUTER_LL} dev ${CONTROL_TAP} lladdr ${control.mac} router`);
    // Still nothing on ours.
    for (const { port } of ours) {
      expect(ipv6State().addrs.filter((a) => a.startsWith(`${port.tap} `))).toEqual([]);
    }
  });
});
