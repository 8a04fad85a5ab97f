// The seed's own TAP path (Go + vishvananda/netlink, bench/seed-go/main.go), built on first use when
// Go and Debian's golang-github-vishvananda-netlink-dev are installed; otherwise not measured.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PhaseResult } from "./phase.js";
import { opStats } from "./stats.js";

const GOPATH = "/usr/share/gocode";
let built: string | null | undefined;

/** Path of the built `seedtap`, or undefined (with the reason logged once) when it cannot be built. */
export function seedTapBinary(root: string): string | undefined {
  if (built !== undefined) return built ?? undefined;
  built = null;
  if (!existsSync(join(GOPATH, "src", "github.com", "vishvananda", "netlink"))) {
    console.log("tap: Go baseline skipped (apt-get install golang-go golang-github-vishvananda-netlink-dev)");
    return undefined;
  }
  const out = join(tmpdir(), "mvnet-bench-seedtap");
  const r = spawnSync("go", ["build", "-o", out, "."], {
    cwd: join(root, "bench", "seed-go"),
    env: { ...process.env, GOPATH, GO111MODULE: "off" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  if (r.error || r.status !== 0) {
    console.log(`tap: Go baseline skipped (go build failed: ${r.error?.message ?? r.stderr})`);
    return undefined;
  }
  built = out;
  return out;
}

/** Runs `seedtap args…`; returns its per-TAP times as phases (loop lag: not ours, so zero). */
export function runSeedTap(bin: string, args: string[]): { create: PhaseResult; delete: PhaseResult } {
  const r = spawnSync(bin, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  if (r.error || r.status !== 0)
    throw new Error(`seedtap ${args.join(" ")}: ${r.error?.message ?? r.stderr}`);
  const out = JSON.parse(r.stdout) as { create: number[]; delete: number[] };
  const phase = (times: number[]): PhaseResult => ({
    ops: opStats(times),
    lag: { worst: 0, p99: 0, ticks: 0 },
    times,
  });
  return { create: phase(out.create), delete: phase(out.delete) };
}
