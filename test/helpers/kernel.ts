// Shared set-up for kernel tests. Every kernel test file runs in a fresh private network namespace
// made by scripts/test.mjs; `kernelDescribe` refuses to run anywhere else.
import { execFileSync } from "node:child_process";
import { readlinkSync } from "node:fs";
import { describe } from "vitest";
import { KernelError } from "../../src/core/errors.js";

function skipReason(): string | undefined {
  if (process.env.MVNET_SKIP_KERNEL) return process.env.MVNET_SKIP_KERNEL;
  const expected = process.env.MVNET_TEST_NETNS;
  if (!expected)
    return "kernel tests skipped: not started by scripts/test.mjs inside a private network namespace";
  if (readlinkSync("/proc/self/ns/net") !== expected)
    return "kernel tests skipped: not in the private namespace";
  return undefined;
}

/** Why kernel tests cannot run here, or undefined when they can. */
export const kernelSkip = skipReason();
if (kernelSkip) console.log(kernelSkip);

/** `describe` for tests that touch the kernel: skipped (with one line saying why) outside a private netns. */
export const kernelDescribe = kernelSkip ? describe.skip : describe;

/** True when running as real root (not root mapped in a user namespace): other uids can be used. */
export function isRealRoot(): boolean {
  try {
    const map = execFileSync("cat", ["/proc/self/uid_map"], { encoding: "utf8" }).trim().split(/\s+/);
    return map[0] === "0" && map[1] === "0" && map[2] === "4294967295";
  } catch {
    return false;
  }
}

/** Runs a command (test set-up and independent read-back only; the product never spawns these). */
export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] });
}

/** The errno name (`EEXIST`) of the KernelError `f` throws, or undefined when it returns; other errors rethrown. */
export function kernelErrno(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
}

/** `ip -j <args>` parsed. */
export function ipJson<T = unknown>(...args: string[]): T {
  const out = sh("ip", ["-j", ...args]);
  return (out.trim() ? JSON.parse(out) : []) as T;
}

/** `nft -j list ruleset` parsed into its `nftables` array. */
export function nftJson(): Array<Record<string, unknown>> {
  const out = sh("nft", ["-j", "list", "ruleset"]);
  return (JSON.parse(out) as { nftables: Array<Record<string, unknown>> }).nftables;
}

/** Reads a sysctl of this namespace, e.g. `net/ipv4/ip_forward`. */
export function readSysctl(path: string): string {
  return sh("cat", [`/proc/sys/${path}`]).trim();
}

/** The fake uplink made by {@link makeInternet}. */
export interface Internet {
  /** Namespace name of "the internet" (usable with `ip netns exec`). */
  ns: string;
  /** Host-side uplink interface. */
  uplink: string;
  /** Host's address on the uplink. */
  hostIp: string;
  /** The internet's router address (the host's default gateway). */
  gatewayIp: string;
  /** An address further out in the internet namespace (on its lo). */
  remoteIp: string;
}

/**
 * Makes a veth pair to a second namespace that plays "the internet", with documentation ranges only
 * (RFC 5737): host 192.0.2.2/24 on `uplink`, gateway 192.0.2.1, a remote host 198.51.100.10, and a
 * default route through it (unless `defaultRoute` is false).
 */
export function makeInternet(
  ns = "inet",
  uplink = "uplink0",
  subnet3 = "192.0.2",
  defaultRoute = true,
): Internet {
  const hostIp = `${subnet3}.2`;
  const gatewayIp = `${subnet3}.1`;
  const remoteIp = "198.51.100.10";
  sh("ip", ["netns", "add", ns]);
  sh("ip", ["link", "add", uplink, "type", "veth", "peer", "name", "wan0", "netns", ns]);
  sh("ip", ["addr", "add", `${hostIp}/24`, "dev", uplink]);
  sh("ip", ["link", "set", uplink, "up"]);
  sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
  sh("ip", ["-n", ns, "addr", "add", `${gatewayIp}/24`, "dev", "wan0"]);
  sh("ip", ["-n", ns, "addr", "add", `${remoteIp}/32`, "dev", "lo"]);
  sh("ip", ["-n", ns, "link", "set", "wan0", "up"]);
  if (defaultRoute) sh("ip", ["route", "add", "default", "via", gatewayIp, "dev", uplink]);
  return { ns, uplink, hostIp, gatewayIp, remoteIp };
}
