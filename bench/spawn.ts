// Spawning the tools the baselines use. Synchronous on purpose: the cheapest way Node has to run a
// process (no event-loop round trips), so the baseline is never slowed down by how we call it and
// the ratios err in the baseline's favour.
import { spawnSync } from "node:child_process";

/** Runs `cmd args…`, waits for it, throws with its stderr when it fails. */
export function run(cmd: string, args: string[], input?: string): void {
  const r = spawnSync(cmd, args, {
    input,
    stdio: [input === undefined ? "ignore" : "pipe", "ignore", "pipe"],
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited with ${r.status ?? r.signal}: ${r.stderr}`);
  }
}

/** Runs `cmd args…` and returns its stdout ("" when it fails or is missing). */
export function output(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return r.status === 0 ? `${r.stdout}`.trim() : "";
}

/** True when `cmd` can be run (`cmd --version` exits 0). */
export function available(cmd: string): boolean {
  const r = spawnSync(cmd, ["--version"], { stdio: "ignore" });
  return !r.error && r.status === 0;
}
