import { execFileSync } from "node:child_process";
import { join } from "node:path";

const root = new URL("../..", import.meta.url).pathname;

/** Outcome of an API call made in another process. */
export interface ChildOutcome {
  ok: boolean;
  result?: unknown;
  error?: { name?: string; code?: string; errno?: number; message?: string };
}

/** Calls `api[fn](...args)` in a fresh Node process, optionally as another uid/gid. */
export function callInChild(
  fn: string,
  args: unknown[],
  ids: { uid?: number; gid?: number } = {},
): ChildOutcome {
  const out = execFileSync(
    join(root, "node_modules", ".bin", "tsx"),
    [join(root, "test", "helpers", "api-child.ts"), JSON.stringify({ fn, args })],
    { encoding: "utf8", cwd: root, ...ids, env: { ...process.env, HOME: "/tmp" } },
  );
  return JSON.parse(out) as ChildOutcome;
}
