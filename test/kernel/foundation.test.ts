// The foundation's acceptance test: a fake uplink to an "internet" namespace, bootstrap, a
// point-to-point TAP owned by uid 1234, host tcp/8080 published to guest:80, the TAP opened by uid
// 1234 the way a VMM does; a SYN from the internet arrives in the TAP DNATed to guest:80, and a frame
// the guest writes leaves the uplink masqueraded to the host's address.
import { type ChildProcess, spawn } from "node:child_process";
import { connect } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { addPortMapping, bootstrap, createPointToPointTap, deleteTap, teardown } from "../../src/index.js";
import { type FakeGuest, startFakeGuest } from "../helpers/fake-guest.js";
import {
  type Internet,
  ipJson,
  isRealRoot,
  kernelDescribe,
  makeInternet,
  readSysctl,
} from "../helpers/kernel.js";
import { udpServer } from "../helpers/udp-server.js";

const GUEST_IP = "10.200.0.2";
const GUEST_MAC = "06:00:0a:c8:00:02";

kernelDescribe("foundation: a published port and NAT on real kernel objects", () => {
  let net: Internet;
  let guest: FakeGuest;
  const owner = isRealRoot() ? 1234 : 0;

  beforeAll(async () => {
    net = makeInternet();
    await bootstrap();
    const tap = await createPointToPointTap("fc-tap0", "10.200.0.1", GUEST_IP, owner, owner);
    await addPortMapping("", 8080, GUEST_IP, 80, "tcp");
    guest = startFakeGuest({
      tap: "fc-tap0",
      uid: owner,
      gid: owner,
      guestIp: GUEST_IP,
      guestMac: GUEST_MAC,
      hostMac: tap.mac,
    });
    await guest.ready;
  });

  afterAll(async () => {
    guest?.stop();
    await deleteTap("fc-tap0");
    await teardown();
  });

  it("the TAP is owned by the VMM's uid, single queue, with the /32 pair and up", () => {
    const [link] = ipJson<Array<Record<string, unknown>>>("-d", "link", "show", "fc-tap0");
    const info = (link?.linkinfo as { info_data?: Record<string, unknown> })?.info_data;
    expect(info).toMatchObject({ type: "tap", pi: false, vnet_hdr: true, multi_queue: false, persist: true });
    expect(info?.user).toBe(owner === 0 ? "root" : 1234);
    const [addr] = ipJson<Array<{ addr_info: Array<Record<string, unknown>> }>>("addr", "show", "fc-tap0");
    expect(addr?.addr_info).toEqual([
      expect.objectContaining({ family: "inet", local: "10.200.0.1", address: GUEST_IP, prefixlen: 32 }),
    ]);
    // IPv6 stays off until it is filtered like IPv4: no link-local address, no RAs accepted.
    expect(readSysctl("net/ipv6/conf/fc-tap0/disable_ipv6")).toBe("1");
    expect(addr?.addr_info.some((a) => a.family === "inet6")).toBe(false);
  });

  it("a SYN from the internet to the host's uplink address :8080 arrives in the TAP for guest:80", async () => {
    let client: ChildProcess | undefined;
    try {
      client = spawn(
        "ip",
        ["netns", "exec", net.ns, "bash", "-c", `exec 3<>/dev/tcp/${net.hostIp}/8080; sleep 5`],
        {
          stdio: "ignore",
        },
      );
      const syn = await guest.waitFor((f) => f.proto === "tcp" && f.dport === 80, 5000);
      expect(syn).toMatchObject({ src: net.gatewayIp, dst: GUEST_IP, dport: 80 });
    } finally {
      client?.kill();
    }
  });

  it("a frame the guest writes to an internet address leaves the uplink from the host's address", async () => {
    const server = await udpServer(net.ns, net.remoteIp, 9999);
    try {
      await guest.sendUdp({ src: GUEST_IP, dst: net.remoteIp, sport: 40000, dport: 9999, payload: "hello" });
      expect(await server.next(5000)).toEqual({ from: net.hostIp, data: "hello" });
    } finally {
      server.close();
    }
  });

  it("a frame with a forged source (another guest's, or an outside address) is dropped at the TAP", async () => {
    const server = await udpServer(net.ns, net.remoteIp, 9998);
    try {
      for (const forged of ["10.200.0.3", "8.8.8.8", net.gatewayIp]) {
        await guest.sendUdp({ src: forged, dst: net.remoteIp, sport: 40001, dport: 9998, payload: forged });
      }
      await guest.sendUdp({
        src: GUEST_IP,
        dst: net.remoteIp,
        sport: 40001,
        dport: 9998,
        payload: "genuine",
      });
      // The genuine datagram, sent last, is the first and only one to arrive.
      expect(await server.next(5000)).toEqual({ from: net.hostIp, data: "genuine" });
      expect(await server.next(500)).toBeUndefined();
    } finally {
      server.close();
    }
  });

  it("the host reaches the published port through 127.0.0.1, with route_localnet on that TAP only", async () => {
    const sock = connect({ host: "127.0.0.1", port: 8080 });
    sock.on("error", () => undefined);
    try {
      const syn = await guest.waitFor(
        (f) => f.proto === "tcp" && f.dport === 80 && f.src === "10.200.0.1",
        5000,
      );
      expect(syn).toMatchObject({ dst: GUEST_IP, dport: 80 });
    } finally {
      sock.destroy();
    }
    expect(readSysctl("net/ipv4/conf/fc-tap0/route_localnet")).toBe("1");
    expect(readSysctl("net/ipv4/conf/all/route_localnet")).toBe("0");
    expect(readSysctl(`net/ipv4/conf/${net.uplink}/route_localnet`)).toBe("0");
  });
});
