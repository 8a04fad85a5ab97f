// Issue 3, scenario 5: two real guests at once. Each reaches the internet; neither reaches the other,
// nor an address in a private range behind the host — also when a guest routes the other's address
// through the host on purpose (it is root in its own kernel), so that the host's rules, not a failed
// ARP, are what stops it. Counters around our forward chain (harness/probe.ts) show where packets die.
import { afterAll, beforeAll, expect, it } from "vitest";
import { bootstrap, closeShared, createPointToPointTap, deleteTap, teardown } from "../../src/index.js";
import { type Internet, makeInternet, sh } from "../helpers/kernel.js";
import { VMM_GID, VMM_UID } from "./harness/artifacts.js";
import { artifacts, e2eDescribe, printGuestsOnFailure, timing } from "./harness/env.js";
import { GuestVm } from "./harness/guest.js";
import { httpGet, type PeerServer, peerClient, retryUntil, startPeer } from "./harness/net.js";
import { installProbe, readProbe, removeProbe } from "./harness/probe.js";

const HOST_IP = "10.200.0.1";
const A = { name: "vm-a", tap: "mvtap-a", ip: "10.200.0.2" };
const B = { name: "vm-b", tap: "mvtap-b", ip: "10.200.0.3" };
/** Private-range hosts behind the host (in the "internet" namespace, reached through the default route). */
const PRIVATE = ["172.16.9.9", "10.99.0.5", "192.168.7.7"];
const nothing = { packets: [], http: "", udp: "" };

/** What a guest tries against `target`: ping, a TCP connection to its web server, a UDP datagram. */
async function attempts(vm: GuestVm, target: string): Promise<{ ping: number; tcp: number; udp: number }> {
  const ping = await vm.run(`ping -c 2 -W 1 ${target}`);
  const tcp = await vm.run(`echo from-${vm.spec.name} | nc -w 2 ${target} 80`);
  const udp = await vm.run(`nettool udp-send ${target} 9000 from-${vm.spec.name} 1500`);
  return { ping: ping.rc, tcp: tcp.rc, udp: udp.rc };
}

/**
 * What `vm` received from `other`: IPv4 packets its NIC delivered (captured before its IP stack), the
 * clients of its web server, the datagrams of its UDP server.
 */
async function receivedFrom(
  vm: GuestVm,
  other: string,
): Promise<{ packets: string[]; http: string; udp: string }> {
  const packets = (await vm.ok("cat /tmp/ip-log")).split("\n").filter((l) => l.includes(`src=${other} `));
  return {
    packets,
    http: await vm.ok("cat /tmp/http-clients"),
    udp: await vm.ok("cat /tmp/udp-log"),
  };
}

e2eDescribe("two real guests at once", () => {
  let inet: Internet;
  let a: GuestVm | undefined;
  let b: GuestVm | undefined;
  let peer: PeerServer;

  const both = (): [GuestVm, GuestVm] => [a as GuestVm, b as GuestVm];

  printGuestsOnFailure(() => [a, b]);

  beforeAll(async () => {
    inet = makeInternet();
    for (const p of PRIVATE) sh("ip", ["-n", inet.ns, "addr", "add", `${p}/32`, "dev", "lo"]);
    await bootstrap();
    peer = await startPeer(inet.ns, [`tcp:${inet.remoteIp}:8000`, ...PRIVATE.map((p) => `tcp:${p}:8000`)]);
    await createPointToPointTap(A.tap, HOST_IP, A.ip, VMM_UID, VMM_GID);
    await createPointToPointTap(B.tap, HOST_IP, B.ip, VMM_UID, VMM_GID);
    const spec = (g: typeof A) => ({
      name: g.name,
      tap: g.tap,
      guestIp: g.ip,
      hostIp: HOST_IP,
      prefix: 16,
      uid: VMM_UID,
      gid: VMM_GID,
    });
    const t0 = performance.now();
    [a, b] = await Promise.all([GuestVm.boot(spec(A), artifacts()), GuestVm.boot(spec(B), artifacts())]);
    await Promise.all([A, B].map((g) => retryUntil(() => httpGet(g.ip, 80, "/", 1000), 30_000)));
    timing(
      `two guests booted in parallel (${artifacts().accel}), both answering HTTP after`,
      performance.now() - t0,
    );
  });

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await peer?.stop();
    removeProbe();
    await deleteTap(A.tap).catch(() => undefined);
    await deleteTap(B.tap).catch(() => undefined);
    await teardown().catch(() => undefined);
    await closeShared();
  });

  it("5: each guest reaches the internet, masqueraded to the host's uplink address", async () => {
    for (const vm of both()) {
      const body = await vm.ok(`timeout 10 wget -q -O- http://${inet.remoteIp}:8000/egress-${vm.spec.name}`);
      expect(body.trim()).toBe(`peer saw client=${inet.hostIp}`);
      const rec = peer.records().filter((r) => r.data.startsWith(`GET /egress-${vm.spec.name} `));
      expect(rec.map((r) => r.remote)).toEqual([inet.hostIp]);
      // The guest's packet log (used below to show what did not arrive) sees the answer arrive.
      expect(await vm.ok("cat /tmp/ip-log")).toContain(
        `IP-RX src=${inet.remoteIp} dst=${vm.spec.guestIp} proto=6`,
      );
    }
  });

  it("5: on their shared subnet neither guest reaches the other (nothing answers ARP on a TAP)", async () => {
    const [ga, gb] = both();
    installProbe([
      { name: "a2b", saddr: A.ip, daddr: B.ip },
      { name: "b2a", saddr: B.ip, daddr: A.ip },
    ]);
    const [fromA, fromB] = await Promise.all([attempts(ga, B.ip), attempts(gb, A.ip)]);
    expect(fromA).toEqual({ ping: 1, tcp: 1, udp: 1 });
    expect(fromB).toEqual({ ping: 1, tcp: 1, udp: 1 });
    expect(await receivedFrom(gb, A.ip)).toEqual(nothing);
    expect(await receivedFrom(ga, B.ip)).toEqual(nothing);
    expect(await ga.ok(`ip neigh show ${B.ip}`)).not.toContain("lladdr");
    // Nothing even reached the host's forwarding path: the frames never left the guest.
    expect(readProbe()).toEqual({ a2b: { before: 0, after: 0 }, b2a: { before: 0, after: 0 } });
  });

  it("5: routed through the host on purpose, the host's rules drop guest → guest traffic", async () => {
    const [ga, gb] = both();
    await ga.ok(`ip route add ${B.ip}/32 via ${HOST_IP} dev eth0`);
    await gb.ok(`ip route add ${A.ip}/32 via ${HOST_IP} dev eth0`);
    try {
      installProbe([
        { name: "a2b", saddr: A.ip, daddr: B.ip },
        { name: "b2a", saddr: B.ip, daddr: A.ip },
      ]);
      const [fromA, fromB] = await Promise.all([attempts(ga, B.ip), attempts(gb, A.ip)]);
      expect(fromA).toEqual({ ping: 1, tcp: 1, udp: 1 });
      expect(fromB).toEqual({ ping: 1, tcp: 1, udp: 1 });
      expect(await receivedFrom(gb, A.ip)).toEqual(nothing);
      expect(await receivedFrom(ga, B.ip)).toEqual(nothing);
      const probe = readProbe();
      // ping ×2, at least one SYN, one datagram reached the host's forward hook, and none passed our table.
      expect(probe.a2b?.before).toBeGreaterThanOrEqual(4);
      expect(probe.b2a?.before).toBeGreaterThanOrEqual(4);
      expect(probe.a2b?.after).toBe(0);
      expect(probe.b2a?.after).toBe(0);
    } finally {
      await ga.run(`ip route del ${B.ip}/32`);
      await gb.run(`ip route del ${A.ip}/32`);
    }
  });

  it("5: neither guest reaches a private-range address behind the host, which the host itself reaches", async () => {
    for (const p of PRIVATE) {
      expect(peerClient(inet.ns, ["http-get", p, "8000", "/control", "3000"]).rc).toBe(0);
      expect((await httpGet(p, 8000, "/from-host", 3000)).trim()).toBe(`peer saw client=${inet.hostIp}`);
    }
    installProbe(
      PRIVATE.flatMap((p, i) => [
        { name: `a2p${i}`, saddr: A.ip, daddr: p },
        { name: `b2p${i}`, saddr: B.ip, daddr: p },
      ]),
    );
    // All attempts at once (each waits out its timeout), from both guests in parallel.
    const tries = await Promise.all(
      both().map((vm) =>
        vm.ok(
          `${PRIVATE.map(
            (p) => `(timeout 3 wget -q -O- http://${p}:8000/from-${vm.spec.name}; echo "${p} rc=$?") &`,
          ).join("\n")}\nwait`,
        ),
      ),
    );
    for (const out of tries) {
      for (const p of PRIVATE) expect(out).toMatch(new RegExp(`^${p.replace(/\./g, "\\.")} rc=[1-9]`, "m"));
    }
    expect(peer.records().filter((r) => r.data.includes("/from-vm-"))).toEqual([]);
    const probe = readProbe();
    for (const [name, c] of Object.entries(probe)) {
      expect(c.before, name).toBeGreaterThan(0);
      expect(c.after, name).toBe(0);
    }
    expect(Object.keys(probe)).toHaveLength(PRIVATE.length * 2);
  });
});
