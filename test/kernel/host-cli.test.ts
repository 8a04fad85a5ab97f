// `mvnet attach | detach | ls | reconcile | gc` run as separate processes, read back with `ip -j`.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ipJson, kernelDescribe, sh } from "../helpers/kernel.js";

const root = new URL("../..", import.meta.url).pathname;
let dir: string;
const mvnet = (...args: string[]) => {
  const r = spawnSync(
    join(root, "node_modules", ".bin", "tsx"),
    [join(root, "test", "helpers", "host-cli-main.ts"), "--db", join(dir, "state.db"), ...args],
    { encoding: "utf8", cwd: root },
  );
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const taps = () =>
  ipJson<Array<{ ifname: string; mtu: number; linkinfo?: { info_kind: string } }>>(
    "-d",
    "link",
    "show",
  ).filter((l) => l.linkinfo?.info_kind === "tun");

kernelDescribe("mvnet host commands", () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "mvnet-cli-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("attach prints what the VMM needs (JSON), ls lists it, detach takes it back", () => {
    const r = mvnet(
      "--json",
      "attach",
      "vm-cli",
      "--publish",
      "8080:80",
      "-p",
      "127.0.0.1::53/udp",
      "--mtu",
      "1400",
      "--dns",
      "192.0.2.53",
    );
    expect(r.err).toMatch(/warning: this host is not bootstrapped/);
    expect(r.code).toBe(0);
    const a = JSON.parse(r.out);
    expect(a).toMatchObject({
      vmId: "vm-cli",
      state: "attached",
      guestIp: "10.200.0.2",
      mtu: 1400,
      bootArg: "ip=10.200.0.2::10.200.0.1:255.255.0.0::eth0:off:192.0.2.53",
      firecracker: { iface_id: "eth0", guest_mac: "06:00:0a:c8:00:02", mtu: 1400 },
      ports: [
        { protocol: "tcp", hostIp: "0.0.0.0", hostPort: 8080, guestPort: 80 },
        { protocol: "udp", hostIp: "127.0.0.1", hostPort: 30000, guestPort: 53 },
      ],
    });
    expect(taps()).toEqual([expect.objectContaining({ ifname: a.tap, mtu: 1400 })]);
    expect(mvnet("ls").out).toMatch(new RegExp(`vm-cli\\s+attached\\s+${a.tap}\\s+10\\.200\\.0\\.2/16`));
    expect(JSON.parse(mvnet("--json", "ls").out)).toEqual([a]);
    expect(mvnet("attach", "vm-cli", "--publish", "9090:80").code).toBe(1); // attached with other options
    expect(mvnet("detach", "vm-cli").out).toMatch(/detached vm-cli/);
    expect(taps()).toEqual([]);
    expect(mvnet("ls").out).toMatch(/no VMs attached/);
  });

  it("bad input exits 2 and touches nothing; reconcile and gc report what they did", () => {
    expect(mvnet("attach", "bad id").code).toBe(2);
    expect(mvnet("attach", "vm", "--publish", "80/icmp").code).toBe(2);
    expect(mvnet("gc").code).toBe(2);
    expect(taps()).toEqual([]);
    for (const vm of ["vm-a", "vm-b"]) expect(mvnet("attach", vm).code).toBe(0);
    const [b] = taps().filter((l) => l.ifname.startsWith("vmb"));
    sh("ip", ["link", "del", b?.ifname as string]);
    expect(JSON.parse(mvnet("--json", "reconcile").out)).toMatchObject({ recreatedTaps: ["vm-b"] });
    expect(JSON.parse(mvnet("--json", "gc", "vm-b").out)).toEqual({ dropped: ["vm-a"] });
    expect(JSON.parse(mvnet("--json", "gc", "--all").out)).toEqual({ dropped: ["vm-b"] });
    expect(taps()).toEqual([]);
  });
});
