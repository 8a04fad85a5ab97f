// Coexistence with other firewalls (issue #5): a Docker-like iptables-nft FORWARD policy DROP, a
// native nftables table dropping at the forward hook, and iptables-legacy FORWARD policy DROP. For
// each: real guest packets (both directions) are dropped before the integration and pass after it;
// a second forwarding path that is not a TAP stays dropped; findForeignBlocks and the doctor check
// report the block before and "integrated" after; removal restores the foreign ruleset exactly.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { integrateHostFirewall, removeHostFirewallIntegration } from "../../src/api/integration.js";
import { checkFirewalls } from "../../src/doctor/firewalls.js";
import type { DoctorContext } from "../../src/doctor/types.js";
import { findForeignBlocks } from "../../src/firewall/foreign.js";
import { type NftApplier, openNft } from "../../src/firewall/index.js";
import { parseIptablesSave } from "../../src/firewall/iptables.js";
import { parseXtTable } from "../../src/firewall/xt-parse.js";
import {
  addPortMapping,
  bootstrap,
  createPointToPointTap,
  DEFAULT_TABLE,
  DEFAULT_TAP_GROUP,
  deleteTap,
  teardown,
} from "../../src/index.js";
import { readXtTable } from "../../src/kernel/xtables.js";
import { readIntegrationState } from "../../src/store/integration-state.js";
import { type FakeGuest, startFakeGuest } from "../helpers/fake-guest.js";
import { type Internet, kernelDescribe, makeInternet, sh } from "../helpers/kernel.js";
import { udpServer } from "../helpers/udp-server.js";

const GUEST_IP = "10.200.0.2";
const GUEST_MAC = "06:00:0a:c8:00:02";
const LAN_IP = "172.31.0.2";
const SCOPE = { table: DEFAULT_TABLE, tapGroup: DEFAULT_TAP_GROUP };
const MISS_MS = 1000;
const root = new URL("../..", import.meta.url).pathname;

/** `nft -j list ruleset` without counter values (traffic changes them, rules do not). */
function nftSnapshot(): string {
  const text = sh("nft", ["-j", "list", "ruleset"]);
  return JSON.stringify(JSON.parse(text).nftables.slice(1), (k, v) => (k === "counter" ? "counter" : v));
}

/** `iptables-legacy-save` without counters and the dated comment lines. */
function legacySnapshot(): string {
  return sh("iptables-legacy-save", [])
    .split("\n")
    .filter((l) => !l.startsWith("#"))
    .map((l) => l.replace(/\[\d+:\d+\]/, ""))
    .join("\n");
}

kernelDescribe("coexistence with other firewalls at the forward hook", () => {
  let net: Internet;
  let guest: FakeGuest;
  let nft: NftApplier;
  let server: Awaited<ReturnType<typeof udpServer>>;
  let sport = 41000;
  let tag = 0;

  beforeAll(async () => {
    net = makeInternet();
    // A second forwarding path through the host that is not a TAP: a "LAN" namespace routed via us.
    sh("ip", ["netns", "add", "lan"]);
    sh("ip", ["link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", "lan"]);
    sh("ip", ["addr", "add", "172.31.0.1/24", "dev", "lan0"]);
    sh("ip", ["link", "set", "lan0", "up"]);
    sh("ip", ["-n", "lan", "addr", "add", `${LAN_IP}/24`, "dev", "eth0"]);
    sh("ip", ["-n", "lan", "link", "set", "eth0", "up"]);
    sh("ip", ["-n", "lan", "route", "add", "default", "via", "172.31.0.1"]);
    sh("ip", ["-n", net.ns, "route", "add", "172.31.0.0/24", "via", net.hostIp]);
    await bootstrap();
    const tap = await createPointToPointTap("fc-tap0", "10.200.0.1", GUEST_IP, 0, 0);
    await addPortMapping("", 5353, GUEST_IP, 53, "udp");
    guest = startFakeGuest({ tap: "fc-tap0", guestIp: GUEST_IP, guestMac: GUEST_MAC, hostMac: tap.mac });
    await guest.ready;
    nft = await openNft();
    server = await udpServer(net.ns, net.remoteIp, 9999);
  });

  afterAll(async () => {
    server?.close();
    await guest?.stop();
    nft?.close();
    await deleteTap("fc-tap0");
    await teardown();
  });

  /** Guest → internet (from the TAP). */
  async function guestOut(): Promise<boolean> {
    const payload = `guest-${++tag}`;
    await guest.sendUdp({ dst: net.remoteIp, sport: sport++, dport: 9999, payload });
    return (await server.until(payload, MISS_MS)) !== undefined;
  }

  /** Internet → published port → guest (into the TAP). */
  async function guestIn(): Promise<boolean> {
    guest.frames.length = 0;
    sh("ip", ["netns", "exec", net.ns, "bash", "-c", `echo -n in > /dev/udp/${net.hostIp}/5353`]);
    try {
      await guest.waitFor((f) => f.proto === "udp" && f.dport === 53 && f.src === net.gatewayIp, MISS_MS);
      return true;
    } catch {
      return false;
    }
  }

  /** LAN namespace → internet (not ours). */
  async function lanOut(): Promise<boolean> {
    const payload = `lan-${++tag}`;
    sh("ip", ["netns", "exec", "lan", "bash", "-c", `echo -n ${payload} > /dev/udp/${net.remoteIp}/9999`]);
    return (await server.until(payload, MISS_MS)) !== undefined;
  }

  const doctorCtx = (): DoctorContext =>
    ({
      nft,
      table: DEFAULT_TABLE,
      tapGroup: DEFAULT_TAP_GROUP,
      stateDir: "/run/microvm-net",
    }) as DoctorContext;

  it("control: without a foreign firewall every path passes and nothing is reported", async () => {
    expect(await guestOut()).toBe(true);
    expect(await guestIn()).toBe(true);
    expect(await lanOut()).toBe(true);
    expect(await findForeignBlocks(nft, SCOPE)).toEqual([]);
    expect((await checkFirewalls(doctorCtx())).map((f) => f.severity)).toEqual(["ok"]);
  });

  /**
   * One scenario: install the foreign firewall, check the drop, integrate, check the pass, remove,
   * check the exact restoration, uninstall.
   */
  async function scenario(
    install: () => void,
    uninstall: () => void,
    expected: { kind: string; family: string; table: string; chain: string; target: string },
    snapshot: () => string,
    whileIntegrated?: () => void,
  ): Promise<void> {
    install();
    try {
      const before = snapshot();
      const found = await findForeignBlocks(nft, SCOPE);
      expect(found).toEqual([expect.objectContaining({ ...expected, integrated: false })]);
      const doc = await checkFirewalls(doctorCtx());
      expect(doc).toEqual([
        expect.objectContaining({ severity: "fail", fix: expect.stringContaining("--integrate") }),
      ]);

      expect(await guestOut()).toBe(false);
      expect(await guestIn()).toBe(false);
      expect(await lanOut()).toBe(false);

      const result = await integrateHostFirewall();
      expect(result.inserted).toHaveLength(1);
      expect(result.remaining).toEqual([]);
      expect(result.blocks).toEqual([expect.objectContaining({ ...expected, integrated: true })]);
      expect(readIntegrationState()?.entries).toHaveLength(1);
      // Idempotent: a second run finds everything in place.
      expect((await integrateHostFirewall()).inserted).toEqual([]);
      expect((await checkFirewalls(doctorCtx())).map((f) => f.severity)).toEqual(["ok"]);

      expect(await guestOut()).toBe(true);
      expect(await guestIn()).toBe(true);
      expect(await lanOut()).toBe(false);
      whileIntegrated?.();

      await removeHostFirewallIntegration();
      expect(readIntegrationState()).toBeUndefined();
      expect(snapshot()).toBe(before);
      expect(await findForeignBlocks(nft, SCOPE)).toEqual([
        expect.objectContaining({ ...expected, integrated: false }),
      ]);
      expect(await guestOut()).toBe(false);
    } finally {
      uninstall();
    }
  }

  it("why iptables chains get iptables rules: a native nft rule there breaks iptables-nft -S and -save", () => {
    sh("iptables-nft", ["-P", "FORWARD", "DROP"]);
    try {
      sh("nft", ["insert", "rule", "ip", "filter", "FORWARD", "meta", "iifgroup", "28022", "accept"]);
      const run = spawnSync("iptables-nft", ["-S"], { encoding: "utf8" });
      expect(run.status).not.toBe(0);
      expect(run.stderr).toMatch(/Parsing nftables rule failed/);
      expect(spawnSync("iptables-nft-save", [], { encoding: "utf8" }).status).not.toBe(0);
    } finally {
      sh("nft", ["delete", "table", "ip", "filter"]);
    }
  });

  it("Docker-like iptables-nft: FORWARD policy DROP, FORWARD -j DOCKER-USER (RETURN)", async () => {
    await scenario(
      () => {
        sh("iptables-nft", ["-P", "FORWARD", "DROP"]);
        sh("iptables-nft", ["-N", "DOCKER-USER"]);
        sh("iptables-nft", ["-A", "DOCKER-USER", "-j", "RETURN"]);
        sh("iptables-nft", ["-A", "FORWARD", "-j", "DOCKER-USER"]);
      },
      () => sh("nft", ["delete", "table", "ip", "filter"]),
      { kind: "iptables-nft", family: "ip", table: "filter", chain: "FORWARD", target: "DOCKER-USER" },
      nftSnapshot,
      () => {
        // iptables-nft still reads and edits its table: our rules are its own devgroup matches.
        const rules = sh("iptables-nft", ["-S", "DOCKER-USER"]);
        expect(rules).toContain(
          "-A DOCKER-USER -m devgroup --src-group 0x6d76 -m comment --comment microvm-net -j ACCEPT",
        );
        expect(rules).toContain(
          "-A DOCKER-USER -m devgroup --dst-group 0x6d76 -m comment --comment microvm-net -j ACCEPT",
        );
        sh("iptables-nft", ["-I", "FORWARD", "-s", "203.0.113.99", "-j", "ACCEPT"]);
        expect(sh("iptables-nft", ["-S", "FORWARD"])).toContain("-A FORWARD -s 203.0.113.99/32 -j ACCEPT");
        sh("iptables-nft", ["-D", "FORWARD", "-s", "203.0.113.99", "-j", "ACCEPT"]);
        sh("iptables-nft-save", []);
      },
    );
  });

  it("iptables-nft without Docker: FORWARD policy DROP and a drop rule, integrated at the top of FORWARD", async () => {
    await scenario(
      () => {
        sh("iptables-nft", ["-P", "FORWARD", "DROP"]);
        sh("iptables-nft", ["-A", "FORWARD", "-i", "lan0", "-j", "DROP"]);
      },
      () => sh("nft", ["delete", "table", "ip", "filter"]),
      { kind: "iptables-nft", family: "ip", table: "filter", chain: "FORWARD", target: "FORWARD" },
      nftSnapshot,
      () => {
        const rules = sh("iptables-nft", ["-S", "FORWARD"]).split("\n");
        // Ours first, the host's own drop rule after them, untouched.
        expect(rules.slice(1, 4)).toEqual([
          "-A FORWARD -m devgroup --src-group 0x6d76 -m comment --comment microvm-net -j ACCEPT",
          "-A FORWARD -m devgroup --dst-group 0x6d76 -m comment --comment microvm-net -j ACCEPT",
          "-A FORWARD -i lan0 -j DROP",
        ]);
      },
    );
  });

  it("native nftables: table inet fw, forward chain policy drop", async () => {
    await scenario(
      () =>
        sh(
          "nft",
          ["-f", "-"],
          "table inet fw {\n chain forward {\n  type filter hook forward priority 0; policy drop;\n  ip saddr 203.0.113.0/24 accept\n }\n}\n",
        ),
      () => sh("nft", ["delete", "table", "inet", "fw"]),
      { kind: "nftables", family: "inet", table: "fw", chain: "forward", target: "forward" },
      nftSnapshot,
      () => {
        const listed = sh("nft", ["list", "chain", "inet", "fw", "forward"]);
        expect(listed).toMatch(/iifgroup 28022 accept comment "microvm-net"/);
        expect(listed).toMatch(/oifgroup 28022 accept comment "microvm-net"/);
      },
    );
  });

  it("iptables-legacy: FORWARD policy DROP", async () => {
    await scenario(
      () => sh("iptables-legacy", ["-P", "FORWARD", "DROP"]),
      () => sh("iptables-legacy", ["-P", "FORWARD", "ACCEPT"]),
      { kind: "iptables-legacy", family: "ip", table: "filter", chain: "FORWARD", target: "FORWARD" },
      () => `${legacySnapshot()}\n${nftSnapshot()}`,
      () => {
        expect(sh("iptables-legacy", ["-S", "FORWARD"])).toContain(
          "-A FORWARD -m devgroup --src-group 0x6d76 -m comment --comment microvm-net -j ACCEPT",
        );
        // The kernel reading (getsockopt) and the tool's reading agree, user chains and gotos included.
        sh("iptables-legacy", ["-N", "EXTRA"]);
        sh("iptables-legacy", ["-A", "EXTRA", "-o", "eth9", "-j", "REJECT"]);
        sh("iptables-legacy", ["-A", "FORWARD", "-i", "eth9", "-g", "EXTRA"]);
        const fromKernel = [...parseXtTable(readXtTable("filter"), DEFAULT_TAP_GROUP)].sort();
        const fromTool = [
          ...(parseIptablesSave(sh("iptables-legacy-save", []), DEFAULT_TAP_GROUP).get("filter") ?? []),
        ].sort();
        expect(fromKernel).toEqual(fromTool);
        expect(fromKernel.find(([n]) => n === "FORWARD")?.[1].rules.map((r) => r.ours ?? r.verdict)).toEqual([
          "from-tap",
          "to-tap",
          "goto",
        ]);
        sh("iptables-legacy", ["-D", "FORWARD", "-i", "eth9", "-g", "EXTRA"]);
        sh("iptables-legacy", ["-F", "EXTRA"]);
        sh("iptables-legacy", ["-X", "EXTRA"]);
      },
    );
  });

  it("all three at once: one integration call, one removal, each ruleset back exactly", async () => {
    sh("iptables-nft", ["-P", "FORWARD", "DROP"]);
    sh(
      "nft",
      ["-f", "-"],
      "table inet fw {\n chain forward {\n  type filter hook forward priority 0; policy drop;\n }\n}\n",
    );
    sh("iptables-legacy", ["-P", "FORWARD", "DROP"]);
    try {
      const before = `${legacySnapshot()}\n${nftSnapshot()}`;
      expect((await findForeignBlocks(nft, SCOPE)).map((b) => [b.kind, b.integrated])).toEqual([
        ["nftables", false],
        ["iptables-nft", false],
        ["iptables-legacy", false],
      ]);
      expect(await guestOut()).toBe(false);
      const result = await integrateHostFirewall();
      expect(result.inserted.map((e) => e.kind)).toEqual(["nftables", "iptables-nft", "iptables-legacy"]);
      expect(result.remaining).toEqual([]);
      expect(await guestOut()).toBe(true);
      expect(await guestIn()).toBe(true);
      expect(await lanOut()).toBe(false);
      await removeHostFirewallIntegration();
      expect(`${legacySnapshot()}\n${nftSnapshot()}`).toBe(before);
      expect(await guestOut()).toBe(false);
    } finally {
      sh("nft", ["delete", "table", "ip", "filter"]);
      sh("nft", ["delete", "table", "inet", "fw"]);
      sh("iptables-legacy", ["-P", "FORWARD", "ACCEPT"]);
    }
  });

  it("`mvnet bootstrap --integrate` lets guests through Docker's DROP; `mvnet teardown` takes it out again", async () => {
    const save = () =>
      sh("iptables-nft-save", [])
        .split("\n")
        .filter((l) => !l.startsWith("#"))
        .map((l) => l.replace(/\[\d+:\d+\]/, ""))
        .join("\n");
    const mvnet = (...args: string[]) => {
      const r = spawnSync(
        join(root, "node_modules", ".bin", "tsx"),
        [join(root, "src", "cli", "main.ts"), ...args],
        {
          encoding: "utf8",
        },
      );
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
      return r.stdout;
    };
    sh("iptables-nft", ["-P", "FORWARD", "DROP"]);
    sh("iptables-nft", ["-N", "DOCKER-USER"]);
    sh("iptables-nft", ["-A", "DOCKER-USER", "-j", "RETURN"]);
    sh("iptables-nft", ["-A", "FORWARD", "-j", "DOCKER-USER"]);
    try {
      const before = save();
      expect(await guestOut()).toBe(false);
      expect(mvnet("bootstrap", "--integrate")).toMatch(/integrated 1 chain\(s\)$/m);
      expect(sh("iptables-nft", ["-S", "DOCKER-USER"])).toContain("--src-group 0x6d76");
      expect(await guestOut()).toBe(true);
      expect(await lanOut()).toBe(false);
      mvnet("teardown");
      expect(save()).toBe(before);
      expect(readIntegrationState("/run/microvm-net")).toBeUndefined();
    } finally {
      sh("nft", ["delete", "table", "ip", "filter"]);
      await bootstrap();
    }
  });
});
