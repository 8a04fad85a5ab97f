// Issue 4 on a real guest: one HostNetwork.attach() gives everything the VMM needs. The guest boots
// with exactly the boot argument, TAP (host_dev_name) and MAC (guest_mac) that attach returned, and
// an internet client reaches it through the published port attach chose.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type Attachment, bootstrap, closeShared, HostNetwork, teardown } from "../../src/index.js";
import { type Internet, ipJson, makeInternet } from "../helpers/kernel.js";
import { VMM_GID, VMM_UID } from "./harness/artifacts.js";
import { artifacts, e2eDescribe, printGuestsOnFailure } from "./harness/env.js";
import { GuestVm } from "./harness/guest.js";
import { httpGet, peerClient, retryUntil } from "./harness/net.js";

e2eDescribe("attach() output boots a real guest", () => {
  let inet: Internet;
  let host: HostNetwork;
  let a: Attachment;
  let vm: GuestVm | undefined;
  const dir = mkdtempSync(join(tmpdir(), "mvnet-e2e-attach-"));

  printGuestsOnFailure(() => [vm]);

  beforeAll(async () => {
    inet = makeInternet();
    await bootstrap();
    host = await HostNetwork.open({ statePath: join(dir, "state.db") });
    a = await host.attach("vm-e2e-attach", { uid: VMM_UID, gid: VMM_GID, mtu: 1400, publish: ["80/tcp"] });
    vm = await GuestVm.boot(
      {
        name: "vm-attach",
        tap: a.firecracker.host_dev_name,
        guestIp: a.guestIp,
        hostIp: a.hostIp,
        prefix: a.prefix,
        uid: VMM_UID,
        gid: VMM_GID,
        bootArgOverride: a.bootArg,
        mac: a.firecracker.guest_mac,
      },
      artifacts(),
    );
    await retryUntil(() => httpGet(a.guestIp, 80, "/", 1000), 30_000);
  });

  afterAll(async () => {
    await vm?.stop();
    await host?.detach("vm-e2e-attach");
    await host?.close();
    await teardown();
    await closeShared();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the guest configured itself from attach's boot argument and runs with attach's MAC", async () => {
    const g = vm as GuestVm;
    expect(a.firecracker).toEqual({
      iface_id: "eth0",
      host_dev_name: a.tap,
      guest_mac: a.guestMac,
      mtu: 1400,
    });
    expect(g.bootArg).toBe(a.bootArg);
    const addr = await g.ok("ip -o -4 addr show dev eth0");
    expect(addr).toContain(`inet ${a.guestIp}/${a.prefix}`);
    expect((await g.ok("cat /sys/class/net/eth0/address")).trim()).toBe(a.guestMac);
    expect(await g.ok("ip route")).toMatch(new RegExp(`default via ${a.hostIp.replace(/\./g, "\\.")}`));
    const [tap] = ipJson<Array<{ mtu: number }>>("link", "show", a.tap);
    expect(tap?.mtu).toBe(1400);
  });

  it("an internet client reaches the guest through the host port attach published", () => {
    const port = a.ports.find((p) => p.guestPort === 80 && p.protocol === "tcp");
    expect(port).toBeDefined();
    const r = peerClient(inet.ns, [
      "http-get",
      inet.hostIp,
      String(port?.hostPort),
      "/cgi-bin/whoami",
      "5000",
    ]);
    expect(r).toEqual({ rc: 0, out: `guest=${a.guestIp} client=${inet.gatewayIp}\n` });
  });
});
