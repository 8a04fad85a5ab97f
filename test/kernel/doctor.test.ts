// `mvnet doctor` on a real host (the private netns): healthy after bootstrap + attach, then one thing
// broken at a time; each time the exact finding, the CLI's exit status, and that doctor changed
// nothing (links, addresses, routes, the nftables ruleset, sysctls, state files).
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrap, teardown } from "../../src/api/bootstrap.js";
import { closeShared } from "../../src/api/context.js";
import { addPortMapping, removePortMapping } from "../../src/api/portmap.js";
import { checkForwarding } from "../../src/doctor/forwarding.js";
import { CHECKS, type Check, doctor, type Finding, runChecks } from "../../src/doctor/index.js";
import { checkNftables } from "../../src/doctor/nftables.js";
import type { DoctorReport } from "../../src/doctor/report.js";
import { loopbackHintDir } from "../../src/doctor/stale-loopback.js";
import { type NftApplier, openNft } from "../../src/firewall/nft.js";
import { NetlinkSocket } from "../../src/kernel/netlink/index.js";
import { kernelDescribe, readSysctl, sh } from "../helpers/kernel.js";

const root = new URL("../..", import.meta.url).pathname;
let dir: string;
let stateDir: string;
let db: string;
let driver: string;

// A stand-in for src/cli/main.ts (the lead wires `doctor` into it): the globals main.ts has, the host
// commands (for `attach` and `--db`) and doctor, with main.ts's error-to-exit-code mapping.
const DRIVER = `
import { Command } from "${root}node_modules/commander/esm.mjs";
import { closeShared } from "${root}src/api/context.ts";
import { registerDoctorCommand } from "${root}src/cli/doctor.ts";
import { reportError } from "${root}src/cli/exit.ts";
import { registerHostCommands } from "${root}src/cli/host-commands.ts";
const program = new Command("mvnet").option("--json").option("--table <name>").option("--state-dir <dir>").exitOverride();
registerHostCommands(program);
registerDoctorCommand(program, () => program.opts());
try {
  await program.parseAsync(process.argv);
} catch (e) {
  const code = (e as { code?: string }).code;
  process.exitCode = typeof code === "string" && code.startsWith("commander.") ? 2 : reportError(e, process.argv.includes("--json"));
} finally {
  await closeShared();
}
`;

const mvnet = (...args: string[]) => {
  const r = spawnSync(
    join(root, "node_modules", ".bin", "tsx"),
    [driver, "--db", db, "--state-dir", stateDir, ...args],
    { encoding: "utf8", cwd: root },
  );
  return { code: r.status, out: r.stdout, err: r.stderr };
};

/** Everything doctor must leave as it was, read through independent tools. */
function snapshot(): Record<string, unknown> {
  const files = (d: string): string[] => {
    const out: string[] = [];
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      out.push(`${p} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) out.push(...files(p));
    }
    return out;
  };
  // Carrier (NO-CARRIER, LOWER_UP, operstate) follows whether some process holds a TAP open, and the
  // kernel updates it asynchronously (linkwatch) after reconcile's TAP descriptors close; doctor
  // never opens an existing TAP, so it is left out of the comparison.
  const links = (JSON.parse(sh("ip", ["-j", "-d", "link", "show"])) as Array<Record<string, unknown>>).map(
    ({ operstate: _o, flags, ...rest }) => ({
      ...rest,
      flags: (flags as string[]).filter((f) => f !== "NO-CARRIER" && f !== "LOWER_UP"),
    }),
  );
  const addrs = (JSON.parse(sh("ip", ["-j", "addr", "show"])) as Array<Record<string, unknown>>).map(
    ({ operstate: _o, flags: _f, ...rest }) => rest,
  );
  return {
    links,
    addrs,
    routes: (
      JSON.parse(sh("ip", ["-j", "route", "show", "table", "all"])) as Array<Record<string, unknown>>
    ).map(
      ({ flags: _f, ...rest }) => rest, // "linkdown" follows carrier too
    ),
    ruleset: JSON.parse(sh("nft", ["-j", "list", "ruleset"])),
    forward: readSysctl("net/ipv4/ip_forward"),
    files: files(dir),
  };
}

/** Runs `mvnet --json doctor …` and asserts it changed nothing. */
function cliDoctor(...args: string[]): { code: number | null; report: DoctorReport } {
  const before = snapshot();
  const r = mvnet("--json", "doctor", ...args);
  expect(snapshot()).toEqual(before);
  if (r.out.trim() === "") throw new Error(`doctor printed nothing (exit ${r.code}): ${r.err}`);
  return { code: r.code, report: JSON.parse(r.out) as DoctorReport };
}

/** Runs doctor in this process (same options as the CLI) and asserts it changed nothing. */
async function libDoctor(): Promise<DoctorReport> {
  const before = snapshot();
  const report = await doctor({ stateDir, dbPath: db });
  expect(snapshot()).toEqual(before);
  return report;
}

const find = (r: DoctorReport, id: string): Finding[] => r.findings.filter((f) => f.id === id);
const severityOf = (r: DoctorReport, id: string) => find(r, id).map((f) => f.severity);
// Findings of checks outside this file's scope (e.g. foreign firewalls) are left out of "no failure".
const ownFails = (r: DoctorReport) =>
  r.findings.filter((f) => f.severity === "fail" && !f.id.startsWith("firewall."));

kernelDescribe("mvnet doctor", () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mvnet-doctor-"));
    stateDir = join(dir, "state");
    db = join(dir, "state.db");
    driver = join(dir, "driver.mts");
    writeFileSync(driver, DRIVER);
    await bootstrap({ stateDir });
    const a = mvnet("attach", "vm-a", "-p", "8080:80");
    expect(a.err).not.toMatch(/Error/);
    expect(a.code).toBe(0);
  });
  afterAll(async () => {
    await teardown({ stateDir });
    await closeShared();
    rmSync(dir, { recursive: true, force: true });
  });

  it("reports a bootstrapped host with one VM as healthy, and exits 0", async () => {
    const { code, report } = cliDoctor();
    expect(ownFails(report)).toEqual([]);
    expect(report.findings.filter((f) => f.severity === "warn")).toEqual([]);
    for (const id of [
      "kernel.tun.device",
      "kernel.tun.mode",
      "kernel.tun.create",
      "kernel.nftables",
      "kernel.nftables.features",
      "kernel.nftables.ruleset",
      "net.ip_forward",
      "state.table",
      "stale.taps",
      "stale.mappings",
    ]) {
      expect(severityOf(report, id), id).toEqual(["ok"]);
    }
    expect(code).toBe(report.ok ? 0 : 1);
    // The human form: a mark per line, a summary.
    const human = mvnet("doctor");
    expect(human.out).toMatch(/^ok +a TAP can be created/m);
    expect(human.out).toMatch(/\d+ failed, \d+ warning\(s\)/);
  });

  it("fails when ip_forward was turned off after bootstrap", async () => {
    writeFileSync("/proc/sys/net/ipv4/ip_forward", "0");
    try {
      const { code, report } = cliDoctor();
      expect(find(report, "net.ip_forward")).toEqual([
        expect.objectContaining({ severity: "fail", fix: expect.stringMatching(/^mvnet bootstrap/) }),
      ]);
      expect(code).toBe(1);
      expect(report.ok).toBe(false);
    } finally {
      writeFileSync("/proc/sys/net/ipv4/ip_forward", "1");
    }
  });

  it("fails when the table was flushed behind the bootstrap record", async () => {
    sh("nft", ["delete", "table", "ip", "microvm_net"]);
    try {
      const { code, report } = cliDoctor();
      expect(find(report, "state.table")).toEqual([
        expect.objectContaining({ severity: "fail", fix: expect.stringMatching(/^mvnet bootstrap/) }),
      ]);
      expect(code).toBe(1);
    } finally {
      await bootstrap({ stateDir });
      expect(mvnet("reconcile").code).toBe(0); // puts vm-a's published port back
    }
    expect(severityOf(await libDoctor(), "state.table")).toEqual(["ok"]);
  });

  it("warns when /dev/net/tun is 0600 (exit 0, 1 with --strict), without touching the real node", () => {
    const node = join(dir, "tun0600");
    sh("mknod", ["-m", "600", node, "c", "10", "200"]);
    // Bind-mounted in this test's private mount namespace only (scripts/test.mjs).
    sh("mount", ["--bind", node, "/dev/net/tun"]);
    try {
      const { code, report } = cliDoctor();
      expect(find(report, "kernel.tun.mode")).toEqual([
        expect.objectContaining({
          severity: "warn",
          fix: expect.stringMatching(/chmod 0666 \/dev\/net\/tun/),
          data: expect.objectContaining({ mode: "0600" }),
        }),
      ]);
      expect(severityOf(report, "kernel.tun.create")).toEqual(["ok"]); // root still can
      expect(code).toBe(0);
      expect(cliDoctor("--strict").code).toBe(1);
    } finally {
      sh("umount", ["/dev/net/tun"]);
    }
    expect((statSync("/dev/net/tun").mode & 0o777).toString(8)).not.toBe("600");
  });

  it("finds a stale TAP of ours and a recorded VM whose TAP is gone", async () => {
    sh("ip", ["tuntap", "add", "mode", "tap", "name", "ghost0"]);
    sh("ip", ["link", "set", "ghost0", "alias", "microvm-net:ghost", "group", String(0x6d76)]);
    sh("ip", ["tuntap", "add", "mode", "tap", "name", "foreign0"]);
    sh("ip", ["link", "set", "foreign0", "group", String(0x6d76)]);
    const vmTap = JSON.parse(mvnet("--json", "ls").out)[0].tap as string;
    sh("ip", ["link", "del", vmTap]);
    try {
      const { code, report } = cliDoctor();
      expect(find(report, "stale.tap-orphan")).toEqual([
        expect.objectContaining({
          severity: "warn",
          fix: expect.stringMatching(/^mvnet reconcile/),
          data: { tap: "ghost0", vmId: "ghost" },
        }),
      ]);
      expect(find(report, "stale.vm-without-tap")).toEqual([
        expect.objectContaining({
          severity: "warn",
          data: expect.objectContaining({ vmId: "vm-a", tap: vmTap }),
        }),
      ]);
      expect(find(report, "stale.tap-in-group")).toEqual([
        expect.objectContaining({ severity: "warn", data: expect.objectContaining({ name: "foreign0" }) }),
      ]);
      // vm-a's published port now leads nowhere either.
      expect(severityOf(report, "stale.mapping-no-tap")).toEqual(["warn"]);
      expect(code).toBe(0);
      expect(cliDoctor("--strict").code).toBe(1);
    } finally {
      sh("ip", ["link", "del", "foreign0"]);
      expect(mvnet("reconcile").code).toBe(0); // removes ghost0, re-creates vm-a's TAP
    }
    const after = await libDoctor();
    expect(severityOf(after, "stale.taps")).toEqual(["ok"]);
    expect(severityOf(after, "stale.mappings")).toEqual(["ok"]);
  });

  it("finds a mapping to a guest without TAP, and a stale loopback hint", async () => {
    await addPortMapping("", 9090, "10.200.7.7", 80, "tcp", { stateDir });
    const hintDir = loopbackHintDir(stateDir);
    mkdirSync(hintDir, { recursive: true });
    writeFileSync(join(hintDir, "10.200.9.9"), "");
    try {
      const { code, report } = cliDoctor();
      expect(find(report, "stale.mapping-no-tap")).toEqual([
        expect.objectContaining({
          severity: "warn",
          fix: expect.stringMatching(/^mvnet port rm 9090 10\.200\.7\.7 80 --proto tcp/),
        }),
      ]);
      const hints = find(report, "stale.loopback-hint");
      expect(hints.map((h) => [h.severity, h.data?.guestIp])).toEqual([
        ["warn", "10.200.7.7"], // made by the mapping above (it covers 127.0.0.1)
        ["warn", "10.200.9.9"],
      ]);
      expect(hints[1]?.fix).toBe(`rm -r ${join(hintDir, "10.200.9.9")}`);
      expect(hints[0]?.fix).toBe("mvnet port rm 9090 10.200.7.7 80 --proto tcp");
      expect(code).toBe(0);
    } finally {
      await removePortMapping("", 9090, "10.200.7.7", 80, "tcp", { stateDir });
      rmSync(join(hintDir, "10.200.7.7"), { recursive: true, force: true });
      rmSync(join(hintDir, "10.200.9.9"), { force: true });
    }
  });

  it("warns about route_localnet on all interfaces, and on a TAP of ours no loopback mapping needs", () => {
    sh("ip", ["tuntap", "add", "mode", "tap", "name", "lnet0"]);
    sh("ip", ["link", "set", "lnet0", "alias", "microvm-net", "group", String(0x6d76), "up"]);
    sh("ip", ["addr", "add", "10.200.5.1", "peer", "10.200.5.5", "dev", "lnet0"]);
    writeFileSync("/proc/sys/net/ipv4/conf/lnet0/route_localnet", "1");
    writeFileSync("/proc/sys/net/ipv4/conf/all/route_localnet", "1");
    try {
      const { code, report } = cliDoctor();
      expect(find(report, "net.route_localnet")).toEqual([
        expect.objectContaining({ severity: "warn", data: { key: "net.ipv4.conf.all.route_localnet" } }),
      ]);
      expect(find(report, "stale.route-localnet")).toEqual([
        expect.objectContaining({
          severity: "warn",
          fix: "sysctl -w net.ipv4.conf.lnet0.route_localnet=0",
          data: { tap: "lnet0", peers: ["10.200.5.5"] },
        }),
      ]);
      expect(code).toBe(0);
    } finally {
      writeFileSync("/proc/sys/net/ipv4/conf/all/route_localnet", "0");
      sh("ip", ["link", "del", "lnet0"]);
    }
    expect(severityOf(cliDoctor().report, "net.route_localnet")).toEqual(["ok"]);
  });

  describe("checks in this process", () => {
    let nl: NetlinkSocket;
    let nft: NftApplier;
    beforeAll(async () => {
      nl = NetlinkSocket.open();
      nft = await openNft();
    });
    afterAll(() => {
      nl.close();
      nft.close();
    });

    it("turns a check that throws into a fail finding naming it; the others still run", async () => {
      const broken: Check = async function brokenCheck() {
        throw new Error("boom");
      };
      const ctx = { netlink: nl, nft, table: "microvm_net", tapGroup: 0x6d76, stateDir };
      const findings = await runChecks(ctx, [broken, checkForwarding]);
      expect(findings).toEqual([
        expect.objectContaining({
          id: "doctor.check-error",
          severity: "fail",
          detail: "boom",
          data: { check: "brokenCheck" },
        }),
        expect.objectContaining({ id: "net.ip_forward", severity: "ok" }),
      ]);
      expect(CHECKS.length).toBeGreaterThanOrEqual(7);
    });

    it("names a feature the kernel refuses (a probe rule made unacceptable), and still applies nothing", async () => {
      // The kernel refuses this rule (no such ct helper object): stands in for a missing module.
      const refusing: NftApplier = {
        kind: nft.kind,
        run: (text, o) => nft.run(text.replace(/\bmasquerade$/m, 'ct helper set "no-such-helper"'), o),
        close: () => undefined,
      };
      const before = snapshot();
      const r = await doctor({ nft: refusing, netlink: nl, stateDir, checks: [checkNftables] });
      expect(snapshot()).toEqual(before);
      const f = find(r, "kernel.nftables.features");
      expect(f).toEqual([expect.objectContaining({ severity: "fail", title: "nftables lacks: masquerade" })]);
      expect(JSON.stringify(f[0]?.data)).toMatch(/No such file or directory/);
      expect(r.ok).toBe(false);
    });

    it("refuses a bad table name before reading anything", async () => {
      await expect(doctor({ table: "bad name;", stateDir })).rejects.toMatchObject({ field: "table" });
      await expect(doctor({ tapGroup: -1, stateDir })).rejects.toMatchObject({ field: "tapGroup" });
    });
  });

  it("reads the state database without creating or changing files", () => {
    const list = () => readdirSync(dir).sort();
    const before = list();
    const dbBytes = readFileSync(db);
    cliDoctor();
    expect(list()).toEqual(before);
    expect(readFileSync(db).equals(dbBytes)).toBe(true);
  });
});
