// Issue 3, scenarios 1-4 and case C15: one real Linux guest (QEMU microvm, our own small kernel, busybox)
// on a TAP made by createPointToPointTap, after bootstrap(), with a fake uplink to an "internet"
// namespace. The guest's network comes only from the boot argument and MAC our library renders.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { guestMac } from "../../src/guest/index.js";
import {
  addPortMapping,
  bootstrap,
  closeShared,
  createPointToPointTap,
  deleteTap,
  teardown,
} from "../../src/index.js";
import { type Internet, ipJson, makeInternet, sh } from "../helpers/kernel.js";
import { VMM_GID, VMM_UID } from "./harness/artifacts.js";
import { artifacts, e2eDescribe, printGuestsOnFailure, timing } from "./harness/env.js";
import { GuestVm } from "./harness/guest.js";
import {
  type HostService,
  hostService,
  httpGet,
  type PeerServer,
  peerClient,
  retryUntil,
  startPeer,
  udpAsk,
} from "./harness/net.js";

const HOST_IP = "10.200.0.1";
const GUEST_IP = "10.200.0.2";
const PREFIX = 16;
const TAP = "mvtap-a";
const ALLOWED_PORT = 7000; // guestToHost allows it
const OTHER_PORT = 7001; // a host service the configuration does not open to guests

e2eDescribe("one real guest on our TAP", () => {
  let inet: Internet;
  let vm: GuestVm | undefined;
  let naive: GuestVm | undefined;
  let peer: PeerServer;
  let allowed: HostService;
  let other: HostService;

  printGuestsOnFailure(() => [vm, naive]);

  beforeAll(async () => {
    inet = makeInternet();
    await bootstrap({ guestToHost: [{ protocol: "tcp", port: ALLOWED_PORT }] });
    await createPointToPointTap(TAP, HOST_IP, GUEST_IP, VMM_UID, VMM_GID);
    await addPortMapping("", 8080, GUEST_IP, 80, "tcp");
    await addPortMapping("", 8081, GUEST_IP, 9000, "udp");
    peer = await startPeer(inet.ns, [`tcp:${inet.remoteIp}:8000`]);
    allowed = await hostService(ALLOWED_PORT);
    other = await hostService(OTHER_PORT);
    vm = await GuestVm.boot(
      {
        name: "vm-a",
        tap: TAP,
        guestIp: GUEST_IP,
        hostIp: HOST_IP,
        prefix: PREFIX,
        uid: VMM_UID,
        gid: VMM_GID,
      },
      artifacts(),
    );
    const waited = await retryUntil(() => httpGet(GUEST_IP, 80, "/", 1000), 30_000);
    timing(`vm-a (${artifacts().accel}) ready line after`, vm.readyMs);
    timing(`vm-a (${artifacts().accel}) first HTTP answer to the host after`, vm.readyMs + waited);
  });

  afterAll(async () => {
    await vm?.stop();
    await naive?.stop();
    await peer?.stop();
    await allowed?.close();
    await other?.close();
    await deleteTap(TAP).catch(() => undefined);
    await deleteTap("mvtap-n").catch(() => undefined);
    await teardown().catch(() => undefined);
    await closeShared();
  });

  it("C15: the guest kernel takes exactly our address, prefix and default route, and our MAC", async () => {
    const g = vm as GuestVm;
    expect(g.bootArg).toBe("ip=10.200.0.2::10.200.0.1:255.255.0.0::eth0:off");
    const cmdline = (await g.ok("cat /proc/cmdline")).split(/\s+/);
    expect(cmdline).toContain(g.bootArg);
    // The NIC was announced on the command line, as Firecracker does (no ACPI in this guest).
    expect(cmdline.some((w) => w.startsWith("virtio_mmio.device="))).toBe(true);
    const addrs = (await g.ok("ip -4 -o addr show dev eth0")).match(/inet \S+/g);
    expect(addrs).toEqual([`inet ${GUEST_IP}/${PREFIX}`]);
    const routes = (await g.ok("ip -4 route show"))
      .trim()
      .split("\n")
      .map((l) => l.trim().replace(/\s+/g, " "))
      .sort();
    expect(routes).toEqual([
      `10.200.0.0/16 dev eth0 scope link src ${GUEST_IP}`,
      `default via ${HOST_IP} dev eth0`,
    ]);
    expect((await g.ok("cat /sys/class/net/eth0/address")).trim()).toBe(guestMac(GUEST_IP));
    // The host learned the guest's MAC on our TAP from real frames.
    await httpGet(GUEST_IP, 80, "/");
    const neigh = ipJson<Array<{ dst: string; lladdr?: string }>>("neigh", "show", "dev", TAP);
    expect(neigh.find((n) => n.dst === GUEST_IP)?.lladdr).toBe(guestMac(GUEST_IP));
  });

  it("C15: fed a 255.255.255.255 netmask instead, the same kernel guesses a /8", async () => {
    await createPointToPointTap("mvtap-n", HOST_IP, "10.200.0.9", VMM_UID, VMM_GID);
    naive = await GuestVm.boot(
      {
        name: "vm-naive",
        tap: "mvtap-n",
        guestIp: "10.200.0.9",
        hostIp: HOST_IP,
        prefix: PREFIX,
        uid: VMM_UID,
        gid: VMM_GID,
        bootArgOverride: "ip=10.200.0.9::10.200.0.1:255.255.255.255::eth0:off",
      },
      artifacts(),
    );
    expect(await naive.ok("ip -4 -o addr show dev eth0")).toContain("inet 10.200.0.9/8");
    expect(await naive.ok("ip -4 route show")).toMatch(/^10\.0\.0\.0\/8 dev eth0/m);
    await naive.stop();
    await deleteTap("mvtap-n");
  });

  it("QEMU runs as the TAP's owner uid, without capabilities", () => {
    const status = readFileSync(`/proc/${(vm as GuestVm).pid}/status`, "utf8");
    expect(status).toMatch(new RegExp(`^Uid:\\s+${VMM_UID}\\s+${VMM_UID}\\s+${VMM_UID}\\s+${VMM_UID}$`, "m"));
    expect(status).toMatch(new RegExp(`^Gid:\\s+${VMM_GID}\\s+${VMM_GID}\\s+${VMM_GID}\\s+${VMM_GID}$`, "m"));
    expect(status).toMatch(/^CapEff:\s+0+$/m);
    expect(status).toMatch(/^Groups:\s*$/m);
  });

  it("1: host and guest ping each other; TCP host → guest; guest → an allowed host service only", async () => {
    const g = vm as GuestVm;
    const echos = await g.snmp("Icmp", "InEchos");
    sh("busybox", ["ping", "-c", "2", "-W", "2", GUEST_IP]);
    expect((await g.snmp("Icmp", "InEchos")) - echos).toBe(2);

    expect(await g.ok(`ping -c 2 -W 2 ${HOST_IP}`)).toMatch(/2 packets transmitted, 2 packets received/);

    expect((await httpGet(GUEST_IP, 80, "/cgi-bin/whoami")).trim()).toBe(
      `guest=${GUEST_IP} client=${HOST_IP}`,
    );
    expect(await g.ok("cat /tmp/http-clients")).toContain(`${HOST_IP}\n`);

    expect(await g.ok(`echo hello-allowed | nc -w 5 ${HOST_IP} ${ALLOWED_PORT}`)).toContain(
      `host-service-${ALLOWED_PORT}`,
    );
    expect(allowed.seen).toEqual([{ remote: GUEST_IP, data: "hello-allowed\n" }]);

    const refused = await g.run(`echo hello-other | nc -w 5 ${HOST_IP} ${OTHER_PORT}`);
    expect(refused.rc).not.toBe(0);
    expect(refused.out).not.toContain(`host-service-${OTHER_PORT}`);
    expect(other.seen).toEqual([]);
  });

  it("2: egress — the guest fetches a page from the internet, whose server sees the host's uplink address", async () => {
    const g = vm as GuestVm;
    const body = await g.ok(`timeout 10 wget -q -O- http://${inet.remoteIp}:8000/egress`);
    expect(body.trim()).toBe(`peer saw client=${inet.hostIp}`);
    const got = peer.records().filter((r) => r.data.startsWith("GET /egress "));
    expect(got).toHaveLength(1);
    expect(got[0]?.remote).toBe(inet.hostIp);
  });

  it("3: ingress — an internet client reaches the guest's servers through published host ports, tcp and udp", async () => {
    const g = vm as GuestVm;
    const tcp = peerClient(inet.ns, ["http-get", inet.hostIp, "8080", "/cgi-bin/whoami", "5000"]);
    expect(tcp).toEqual({ rc: 0, out: `guest=${GUEST_IP} client=${inet.gatewayIp}\n` });
    expect(await g.ok("cat /tmp/http-clients")).toContain(`${inet.gatewayIp}\n`);

    const udp = peerClient(inet.ns, ["udp-ask", inet.hostIp, "8081", "ingress-udp", "5000"]);
    expect(udp).toEqual({ rc: 0, out: `udp-echo from=${inet.gatewayIp} data=ingress-udp\n` });
    expect(await g.ok("cat /tmp/udp-log")).toMatch(
      new RegExp(`^UDP-RX from=${inet.gatewayIp.replace(/\./g, "\\.")}:\\d+ data=ingress-udp$`, "m"),
    );
  });

  it("4: the host reaches the published ports through 127.0.0.1 and through its uplink address", async () => {
    const g = vm as GuestVm;
    // From 127.0.0.1 the packet is masqueraded to the TAP's host address (a guest cannot answer 127/8).
    expect((await httpGet("127.0.0.1", 8080, "/cgi-bin/whoami")).trim()).toBe(
      `guest=${GUEST_IP} client=${HOST_IP}`,
    );
    expect((await httpGet(inet.hostIp, 8080, "/cgi-bin/whoami")).trim()).toBe(
      `guest=${GUEST_IP} client=${inet.hostIp}`,
    );
    expect(await udpAsk("127.0.0.1", 8081, "via-loopback")).toBe(
      `udp-echo from=${HOST_IP} data=via-loopback`,
    );
    expect(await udpAsk(inet.hostIp, 8081, "via-uplink")).toBe(
      `udp-echo from=${inet.hostIp} data=via-uplink`,
    );
    const log = await g.ok("cat /tmp/udp-log");
    expect(log).toContain("data=via-loopback");
    expect(log).toContain("data=via-uplink");
  });
});
