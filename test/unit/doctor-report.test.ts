// The doctor's pure parts: report formatting and exit status, reading nft's probe errors, dev_t
// splitting, the `mvnet port rm` fix text.
import { describe, expect, it } from "vitest";
import {
  NFT_FEATURES,
  PROBE_SENTINEL,
  probeOutcome,
  renderFeatureProbe,
  renderRulesetProbe,
} from "../../src/doctor/nft-probe.js";
import { doctorExitCode, formatReport, makeReport, worstSeverity } from "../../src/doctor/report.js";
import { portRmCommand } from "../../src/doctor/stale-mappings.js";
import { probeTapName, splitDev } from "../../src/doctor/tun.js";
import type { Finding } from "../../src/doctor/types.js";

const ok: Finding = {
  id: "kernel.tun.device",
  severity: "ok",
  title: "/dev/net/tun is the tun device (10,200)",
};
const info: Finding = {
  id: "state.record",
  severity: "info",
  title: "not bootstrapped",
  fix: "mvnet bootstrap",
};
const warn: Finding = {
  id: "kernel.tun.mode",
  severity: "warn",
  title: "/dev/net/tun is mode 0600",
  detail: "line one\nline two",
  fix: "chmod 0666 /dev/net/tun",
};
const fail: Finding = {
  id: "stale.loopback-hint",
  severity: "fail",
  title: "bad",
  fix: "mvnet port rm 1 10.0.0.2 2 --proto tcp\nrm /run/x",
};

describe("doctor report", () => {
  it("is ok unless a finding fails; the exit status follows, --strict also fails on warnings", () => {
    expect(makeReport([ok, info, warn]).ok).toBe(true);
    expect(makeReport([ok, fail]).ok).toBe(false);
    expect(doctorExitCode(makeReport([ok, info]))).toBe(0);
    expect(doctorExitCode(makeReport([ok, info]), true)).toBe(0);
    expect(doctorExitCode(makeReport([ok, warn]))).toBe(0);
    expect(doctorExitCode(makeReport([ok, warn]), true)).toBe(1);
    expect(doctorExitCode(makeReport([fail, ok]))).toBe(1);
    expect(worstSeverity([])).toBe("ok");
    expect(worstSeverity([info, ok])).toBe("info");
    expect(worstSeverity([warn, fail, info])).toBe("fail");
  });

  it("prints one line per finding with its mark, detail and fix indented, and a summary", () => {
    expect(formatReport(makeReport([ok, info, warn, fail]))).toBe(
      [
        "ok /dev/net/tun is the tun device (10,200)  [kernel.tun.device]",
        "i  not bootstrapped  [state.record]",
        "   fix: mvnet bootstrap",
        "!  /dev/net/tun is mode 0600  [kernel.tun.mode]",
        "     line one",
        "     line two",
        "   fix: chmod 0666 /dev/net/tun",
        "✗  bad  [stale.loopback-hint]",
        "   fix: mvnet port rm 1 10.0.0.2 2 --proto tcp",
        "        rm /run/x",
        "",
        "problems found: 1 failed, 1 warning(s), 1 note(s), 1 ok",
        "",
      ].join("\n"),
    );
  });

  it("leaves out passed checks with quiet, and never prints a fix for an ok finding", () => {
    const withFix: Finding = { ...ok, fix: "nothing to do" };
    expect(formatReport(makeReport([withFix]))).not.toMatch(/fix:/);
    expect(formatReport(makeReport([withFix, warn]), true)).toBe(
      [
        "!  /dev/net/tun is mode 0600  [kernel.tun.mode]",
        "     line one",
        "     line two",
        "   fix: chmod 0666 /dev/net/tun",
        "",
        "healthy: 0 failed, 1 warning(s), 0 note(s), 1 ok",
        "",
      ].join("\n"),
    );
  });
});

describe("nftables probes", () => {
  it("end every probe with the sentinel that makes the kernel abort it", () => {
    for (const f of Object.keys(NFT_FEATURES)) {
      const lines = renderFeatureProbe(f).trimEnd().split("\n");
      expect(lines.at(-1)).toBe(PROBE_SENTINEL);
      expect(lines[0]).toBe("add table ip mvnet_doctor_probe");
    }
    expect(renderRulesetProbe("10.200.0.0/16", 28022).trimEnd().split("\n").at(-1)).toBe(PROBE_SENTINEL);
    expect(() => renderFeatureProbe("nope")).toThrow(/unknown/);
  });

  // Error texts as libnftables 1.0.6 and `nft -f` print them (captured on this machine).
  it("counts a probe as supported only when the sentinel's EEXIST is the one error", () => {
    const sentinel = "Error: Could not process rule: File exists\nadd table ip p\n                ^\n";
    expect(probeOutcome(sentinel)).toEqual({ supported: true, errors: [] });
    const missing = `Error: Could not process rule: No such file or directory\nadd table ip p\n          ^^^^^^^^^^\n${sentinel}`;
    expect(probeOutcome(missing)).toEqual({
      supported: false,
      errors: ["Error: Could not process rule: No such file or directory"],
    });
    const withLocation =
      "/dev/stdin:9:17-34: Error: Could not process rule: Operation not supported\ncreate table ip p\n^^^\n/dev/stdin:10:1-5: Error: Could not process rule: File exists\n";
    expect(probeOutcome(withLocation)).toEqual({
      supported: false,
      errors: ["/dev/stdin:9:17-34: Error: Could not process rule: Operation not supported"],
    });
    expect(probeOutcome("Error: syntax error, unexpected fwd\n")).toEqual({
      supported: false,
      errors: ["Error: syntax error, unexpected fwd"],
    });
    expect(probeOutcome("")).toEqual({ supported: false, errors: ["nft failed without a message"] });
    expect(probeOutcome(`${sentinel}${sentinel}`).supported).toBe(false);
  });
});

describe("doctor helpers", () => {
  it("splits dev_t as glibc does", () => {
    expect(splitDev((10 << 8) | 200)).toEqual({ major: 10, minor: 200 });
    // major 300, minor 70000: the high bits of each live above bit 20 and bit 32.
    const rdev = Number((BigInt(300 & 0xfff) << 8n) | BigInt(70000 & 0xff) | (BigInt(70000 & ~0xff) << 12n));
    expect(splitDev(rdev)).toEqual({ major: 300, minor: 70000 });
  });

  it("names the probe TAP within the kernel's 15 bytes", () => {
    expect(probeTapName(4194304)).toBe("mvdoc-2hwcg"); // PID_MAX_LIMIT (4194304);
    expect(probeTapName(4194304).length).toBeLessThanOrEqual(15);
  });

  it("spells the exact `mvnet port rm` of a mapping", () => {
    const base = { protocol: "tcp" as const, hostPort: 8080, guestIp: "10.200.0.2", guestPort: 80 };
    expect(portRmCommand({ ...base, host: { kind: "any" } })).toBe(
      "mvnet port rm 8080 10.200.0.2 80 --proto tcp",
    );
    expect(portRmCommand({ ...base, host: { kind: "address", ip: "127.0.0.1" } })).toBe(
      "mvnet port rm 8080 10.200.0.2 80 --proto tcp --host 127.0.0.1",
    );
    expect(portRmCommand({ ...base, protocol: "udp", host: { kind: "interface", name: "eth0" } })).toBe(
      "mvnet port rm 8080 10.200.0.2 80 --proto udp --host eth0",
    );
  });
});
