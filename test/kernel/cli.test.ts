// The `mvnet` command line, run as a user would (a separate process), inside the private netns.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";
import { ipJson, kernelDescribe, readSysctl, sh } from "../helpers/kernel.js";

const root = new URL("../..", import.meta.url).pathname;
const mvnet = (...args: string[]) => {
  const r = spawnSync(
    join(root, "node_modules", ".bin", "tsx"),
    [join(root, "src", "cli", "main.ts"), ...args],
    {
      encoding: "utf8",
      cwd: root,
    },
  );
  return { code: r.status, out: r.stdout, err: r.stderr };
};

kernelDescribe("mvnet CLI", () => {
  it("bootstraps, creates a TAP, publishes a port, reports status as JSON, and takes it all away", () => {
    expect(mvnet("bootstrap", "--allow-host", "udp:53").code).toBe(0);
    expect(readSysctl("net/ipv4/ip_forward")).toBe("1");
    const created = mvnet("--json", "tap", "create", "fc-cli0", "--guest-ip", "10.200.0.7", "--mtu", "1400");
    expect(created.code).toBe(0);
    expect(JSON.parse(created.out)).toMatchObject({ name: "fc-cli0", mtu: 1400 });
    expect(mvnet("port", "add", "2222", "10.200.0.7", "22", "--proto", "tcp").code).toBe(0);

    const status = JSON.parse(mvnet("--json", "status").out);
    expect(status).toMatchObject({
      bootstrapped: true,
      subnet: "10.200.0.0/16",
      ipForward: true,
      taps: [expect.objectContaining({ name: "fc-cli0", mtu: 1400, up: true })],
      mappings: [
        { protocol: "tcp", host: { kind: "any" }, hostPort: 2222, guestIp: "10.200.0.7", guestPort: 22 },
      ],
    });
    expect(mvnet("status").out).toMatch(/fc-cli0[\s\S]*tcp\s+\*\s+2222\s+10\.200\.0\.7:22/);

    expect(mvnet("port", "rm", "2222", "10.200.0.7", "22").code).toBe(0);
    expect(mvnet("tap", "delete", "fc-cli0").code).toBe(0);
    expect(mvnet("teardown").code).toBe(0);
    expect(readSysctl("net/ipv4/ip_forward")).toBe("0");
    expect(ipJson<Array<{ ifname: string }>>("link", "show").map((l) => l.ifname)).toEqual(["lo"]);
    expect(sh("nft", ["list", "ruleset"]).trim()).toBe("");
  });

  it("exits 2 with the bad field named for invalid input, and touches nothing", () => {
    const r = mvnet("tap", "create", "tap-a-very-long-vm-id", "--guest-ip", "10.200.0.2");
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/invalid name/);
    const p = mvnet("--json", "port", "add", "70000", "10.200.0.2", "80");
    expect(p.code).toBe(2);
    expect(JSON.parse(p.err).error.code).toBe("ERR_INVALID_PORT");
    const missing = mvnet("tap", "create", "tap0");
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/give --cidr, or --guest-ip/);
    expect(sh("nft", ["list", "ruleset"]).trim()).toBe("");
  });

  it("says so when port rm finds nothing to remove", () => {
    expect(mvnet("port", "add", "8080", "10.200.0.2", "80").code).toBe(0);
    const r = mvnet("port", "rm", "8080", "10.200.0.3", "80");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/nothing to remove/);
    expect(mvnet("--json", "port", "ls").out).toMatch(/10\.200\.0\.2/);
    expect(mvnet("teardown").code).toBe(0);
  });

  it("exits 1 and leaves a device that is not ours alone", () => {
    sh("ip", ["link", "add", "veth-x", "type", "veth", "peer", "name", "veth-y"]);
    const r = mvnet("tap", "delete", "veth-x");
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/not a TAP made by microvm-net/);
    expect(ipJson<Array<{ ifname: string }>>("link", "show").map((l) => l.ifname)).toContain("veth-x");
  });

  it("acts inside a named network namespace with --netns", () => {
    sh("ip", ["netns", "add", "vmhost"]);
    expect(mvnet("--netns", "vmhost", "tap", "create", "fc-ns0", "--cidr", "172.30.0.1/24").code).toBe(0);
    expect(sh("ip", ["-n", "vmhost", "-j", "link", "show", "fc-ns0"])).toContain("fc-ns0");
    expect(ipJson<Array<{ ifname: string }>>("link", "show").map((l) => l.ifname)).not.toContain("fc-ns0");
    expect(mvnet("--netns", "vmhost", "tap", "delete", "fc-ns0").code).toBe(0);
  });
});
