// Hairpin and source-MAC binding with real guests attached by HostNetwork: a guest reaches a
// published port through the host's addresses (to another guest, and to itself), an unpublished
// host port is refused at once, and a guest that changes its MAC is cut off until it restores it.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Attachment, bootstrap, closeShared, HostNetwork, teardown } from "../../src/index.js";
import { type Internet, makeInternet } from "../helpers/kernel.js";
import { VMM_GID, VMM_UID } from "./harness/artifacts.js";
import { artifacts, e2eDescribe, printGuestsOnFailure } from "./harness/env.js";
import { GuestVm } from "./harness/guest.js";
import { httpGet, type PeerServer, retryUntil, startPeer } from "./harness/net.js";

e2eDescribe("hairpin and MAC binding on real guests", () => {
  let inet: Internet;
  let host: HostNetwork;
  let peer: PeerServer;
  let a: Attachment;
  let b: Attachment;
  let va: GuestVm | undefined;
  let vb: GuestVm | undefined;
  let hostPort = 0;
  const dir = mkdtempSync(join(tmpdir(), "mvnet-e2e-hairpin-"));

  printGuestsOnFailure(() => [va, vb]);

  const boot = (name: string, x: Attachment) =>
    GuestVm.boot(
      {
        name,
        tap: x.tap,
        guestIp: x.guestIp,
        hostIp: x.hostIp,
        prefix: x.prefix,
        uid: VMM_UID,
        gid: VMM_GID,
        bootArgOverride: x.bootArg,
        mac: x.guestMac,
      },
      artifacts(),
    );

  beforeAll(async () => {
    inet = makeInternet();
    await bootstrap();
    peer = await startPeer(inet.ns, [`udp:${inet.remoteIp}:9100`]);
    host = await HostNetwork.open({ statePath: join(dir, "state.db") });
    a = await host.attach("vm-hp-a", { uid: VMM_UID, gid: VMM_GID, publish: ["80/tcp"] });
    b = await host.attach("vm-hp-b", { uid: VMM_UID, gid: VMM_GID });
    hostPort = a.ports[0]?.hostPort as number;
    [va, vb] = await Promise.all([boot("vm-hp-a", a), boot("vm-hp-b", b)]);
    await retryUntil(() => httpGet(a.guestIp, 80, "/", 1000), 30_000);
  });

  afterAll(async () => {
    await va?.stop();
    await vb?.stop();
    await peer?.stop();
    await host?.detachMany(["vm-hp-a", "vm-hp-b"]);
    await host?.close();
    await teardown();
    await closeShared();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a guest reaches another guest's published port through the TAP's host address and the uplink's", async () => {
    const g = vb as GuestVm;
    for (const via of [b.hostIp, inet.hostIp]) {
      const body = await g.ok(`timeout 10 wget -q -O- http://${via}:${hostPort}/cgi-bin/whoami`);
      // Masqueraded to the host's address on A's TAP: A answers the host, which un-NATs the reply.
      expect(body).toBe(`guest=${a.guestIp} client=${a.hostIp}\n`);
    }
  });

  it("a guest reaches its own published port through the host (hairpin to itself)", async () => {
    const body = await (va as GuestVm).ok(
      `timeout 10 wget -q -O- http://${a.hostIp}:${hostPort}/cgi-bin/whoami`,
    );
    expect(body).toBe(`guest=${a.guestIp} client=${a.hostIp}\n`);
  });

  it("a host port nobody published is refused at once, not left to time out", async () => {
    const r = await (vb as GuestVm).run(`echo x | nc -w 10 ${b.hostIp} ${hostPort + 1}`);
    expect(r.rc).not.toBe(0);
    expect(r.out).toMatch(/refused/i);
  });

  it("a guest that changes its MAC is cut off; with the MAC attach gave it, it is back", async () => {
    const g = vb as GuestVm;
    const send = (tag: string) => g.run(`nettool udp-send ${inet.remoteIp} 9100 ${tag} 1500`);
    await g.ok("ip link set dev eth0 address 06:00:0a:c8:ff:fe");
    try {
      expect((await send("spoofed-mac")).rc).not.toBe(0); // no answer
    } finally {
      await g.ok(`ip link set dev eth0 address ${b.guestMac}`);
    }
    // Routes survive a live MAC change; if the kernel dropped the default route, put it back.
    if (!(await g.ok("ip route")).includes("default")) await g.ok(`ip route add default via ${b.hostIp}`);
    // Sent after the spoofed one on the same path, and answered: the spoofed one never arrived.
    const real = await send("real-mac");
    expect(real).toMatchObject({ rc: 0, out: `peer saw client=${inet.hostIp}\n` });
    expect(peer.records().filter((r) => r.data.includes("spoofed-mac"))).toEqual([]);
    expect(peer.records().find((r) => r.data.includes("real-mac"))?.remote).toBe(inet.hostIp);
  });
});
