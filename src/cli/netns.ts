/**
 * Acting inside another network namespace. setns(2) moves only the calling thread, while libuv's and
 * koffi's worker threads stay behind (GUIDE §4), so mvnet re-executes itself inside the namespace
 * instead of switching in-process.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { ValidationError } from "../core/errors.js";

const INNER = "MVNET_IN_NETNS";

/** A name `ip netns add` accepts and that cannot escape /run/netns. @throws ValidationError. */
export function validateNetnsName(name: unknown): string {
  if (typeof name !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(name) || name === "." || name === "..") {
    throw new ValidationError("netns", `${JSON.stringify(name)} is not a network namespace name`);
  }
  return name;
}

/**
 * When `--netns NAME` was given and we are not yet inside, re-runs this very command under
 * `nsenter --net=/run/netns/NAME` (the namespace `ip netns add NAME` made) and returns its exit code;
 * returns undefined when the caller should go on in the current namespace.
 * @throws ValidationError for a bad name or a namespace that does not exist (exit code 2).
 */
export function reexecInNetns(argv: string[]): number | undefined {
  const i = argv.findIndex((a) => a === "--netns" || a.startsWith("--netns="));
  if (i < 0 || process.env[INNER]) return undefined;
  const arg = argv[i] as string;
  const name = validateNetnsName(arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : argv[i + 1]);
  if (!existsSync(`/run/netns/${name}`)) {
    throw new ValidationError(
      "netns",
      `no network namespace ${name} (ip netns add ${name} makes one)`,
      "ERR_NOT_FOUND",
    );
  }
  const rest = argv.filter((_, j) => j !== i && !(j === i + 1 && !arg.includes("=")));
  const r = spawnSync(
    "nsenter",
    [`--net=/run/netns/${name}`, "--", process.execPath, ...process.execArgv, ...rest.slice(1)],
    {
      stdio: "inherit",
      env: { ...process.env, [INNER]: name },
    },
  );
  if (r.error) throw r.error;
  return r.status ?? 1;
}
