// What the numbers were measured on: hardware, kernel, tool versions, and how busy the machine was.
import { readFileSync } from "node:fs";
import { arch, cpus, release, totalmem } from "node:os";
import { gunzipSync } from "node:zlib";
import { output } from "./spawn.js";

/** The machine and software a result file belongs to. */
export interface Machine {
  cpus: number;
  cpu: string;
  memGiB: number;
  kernel: string;
  /** CONFIG_HZ and RCU settings matter for delete costs (baselines.md §5), when readable. */
  kernelConfig: Record<string, string>;
  arch: string;
  node: string;
  ip: string;
  iptables: string;
  nft: string;
  libnftables: string;
  gitCommit: string;
  gitDirty: boolean;
}

function kernelConfig(): Record<string, string> {
  const wanted = [
    "CONFIG_HZ",
    "CONFIG_RCU_LAZY",
    "CONFIG_PREEMPT_NONE",
    "CONFIG_PREEMPT_VOLUNTARY",
    "CONFIG_PREEMPT",
  ];
  const read = (path: string) =>
    path.endsWith(".gz") ? gunzipSync(readFileSync(path)).toString("utf8") : readFileSync(path, "utf8");
  for (const path of ["/proc/config.gz", `/boot/config-${release()}`]) {
    let text: string;
    try {
      text = read(path);
    } catch {
      continue; // not there: try the next place
    }
    const out: Record<string, string> = {};
    for (const line of text.split("\n")) {
      const [k, v] = line.split("=");
      if (k && v !== undefined && wanted.includes(k)) out[k] = v;
    }
    return out;
  }
  return {};
}

/** Describes this machine (tool versions through their own `--version`/`-V`). */
export function describeMachine(root: string): Machine {
  return {
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? "unknown",
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    kernelConfig: kernelConfig(),
    arch: arch(),
    node: process.version,
    ip: output("ip", ["-V"]),
    iptables: output("iptables", ["--version"]),
    nft: output("nft", ["--version"]),
    libnftables: output("dpkg-query", ["-W", "-f=$" + "{Version}", "libnftables1"]),
    gitCommit: output("git", ["-C", root, "rev-parse", "HEAD"]),
    gitDirty: output("git", ["-C", root, "status", "--porcelain", "--untracked-files=no"]) !== "",
  };
}

/** The 1, 5 and 15-minute load averages (/proc/loadavg). */
export function loadAverage(): [number, number, number] {
  const [a, b, c] = readFileSync("/proc/loadavg", "utf8").split(" ").map(Number);
  return [a ?? 0, b ?? 0, c ?? 0];
}

/** `uptime`'s line, for the record. */
export function uptime(): string {
  return output("uptime", []);
}

/** This process's resident set size, MiB (/proc/self/status VmRSS via process.memoryUsage). */
export function rssMiB(): number {
  return process.memoryUsage().rss / 2 ** 20;
}
