// Issue 3, scenario 6: after two real guests ran with published ports and traffic, and both VMs are
// removed and teardown() runs, the namespace is exactly as before bootstrap(): no TAP, rule, route,
// address, sysctl change or state file of ours remains.
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  addPortMapping,
  bootstrap,
  closeShared,
  createPointToPointTap,
  deleteTap,
  removePortMapping,
  teardown,
} from "../../src/index.js";
import { type Internet, makeInternet } from "../helpers/kernel.js";
import { VMM_GID, VMM_UID } from "./harness/artifacts.js";
import { artifacts, e2eDescribe, printGuestsOnFailure } from "./harness/env.js";
import { GuestVm } from "./harness/guest.js";
import { httpGet, type PeerServer, peerClient, retryUntil, startPeer, udpAsk } from "./harness/net.js";
import { type Snapshot, settle, snapshot } from "./harness/snapshot.js";

const HOST_IP = "10.200.0.1";
const A = { name: "vm-a", tap: "mvtap-a", ip: "10.200.0.2" };
const B = { name: "vm-b", tap: "mvtap-b", ip: "10.200.0.3" };

e2eDescribe("clean-up after real guests", () => {
  let inet: Internet;
  let baseline: Snapshot;
  let a: GuestVm | undefined;
  let b: GuestVm | undefined;
  let peer: PeerServer | undefined;

  printGuestsOnFailure(() => [a, b]);

  beforeAll(async () => {
    inet = makeInternet();
    await settle();
    baseline = snapshot();
  });

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await peer?.stop();
    await closeShared();
  });

  it("6: after both VMs are removed and teardown() runs, nothing of ours remains", async () => {
    const mappings: Array<[string, number, string, number, string]> = [
      ["", 8080, A.ip, 80, "tcp"],
      ["127.0.0.1", 8082, B.ip, 80, "tcp"], // sets route_localnet on B's TAP
      [inet.hostIp, 8083, B.ip, 9000, "udp"],
      [inet.uplink, 8084, A.ip, 80, "tcp"],
    ];
    await bootstrap({ guestToHost: [{ protocol: "tcp", port: 7000 }] });
    for (const g of [A, B]) await createPointToPointTap(g.tap, HOST_IP, g.ip, VMM_UID, VMM_GID);
    for (const m of mappings) await addPortMapping(...m);
    peer = await startPeer(inet.ns, [`tcp:${inet.remoteIp}:8000`]);
    const spec = (g: typeof A) => ({
      name: g.name,
      tap: g.tap,
      guestIp: g.ip,
      hostIp: HOST_IP,
      prefix: 16,
      uid: VMM_UID,
      gid: VMM_GID,
    });
    [a, b] = await Promise.all([GuestVm.boot(spec(A), artifacts()), GuestVm.boot(spec(B), artifacts())]);
    await retryUntil(() => httpGet(A.ip, 80, "/", 1000), 30_000);
    await retryUntil(() => httpGet(B.ip, 80, "/", 1000), 30_000);

    // Real traffic through every kind of state we make: egress, each mapping, loopback.
    for (const vm of [a, b]) {
      expect(await vm.ok(`timeout 10 wget -q -O- http://${inet.remoteIp}:8000/`)).toContain(inet.hostIp);
    }
    expect(peerClient(inet.ns, ["http-get", inet.hostIp, "8080", "/cgi-bin/whoami", "5000"]).out).toContain(
      `guest=${A.ip}`,
    );
    expect(peerClient(inet.ns, ["http-get", inet.hostIp, "8084", "/cgi-bin/whoami", "5000"]).out).toContain(
      `guest=${A.ip}`,
    );
    expect(await httpGet("127.0.0.1", 8082, "/cgi-bin/whoami")).toContain(`guest=${B.ip}`);
    expect(await udpAsk(inet.hostIp, 8083, "cleanup")).toContain("data=cleanup");

    const during = snapshot();
    expect(during.links.map((l) => (l as { ifname: string }).ifname)).toEqual(
      expect.arrayContaining([A.tap, B.tap]),
    );
    expect(during.sysctls["net/ipv4/ip_forward"]).toBe("1");
    expect(during.sysctls[`net/ipv4/conf/${B.tap}/route_localnet`]).toBe("1");
    expect(during.nftables.length).toBeGreaterThan(baseline.nftables.length);
    expect(during.stateFiles.length).toBeGreaterThan(0);

    // Remove both VMs (QEMU, mappings, TAP), then tear the host down.
    await a.stop();
    await b.stop();
    for (const m of mappings) await removePortMapping(...m);
    for (const g of [A, B]) await deleteTap(g.tap);
    await teardown();

    await settle();
    expect(snapshot()).toEqual(baseline);
  });
});
