/**
 * A small JSON record of what `bootstrap()` changed outside our nftables table (sysctls), so that
 * `teardown()` can restore it — also from another process. One file per network namespace, because
 * sysctls under /proc/sys/net are per namespace: the file is named after the namespace's inode.
 */
import { mkdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Default directory for state files: tmpfs, so a reboot (which also clears the kernel's state) clears it. */
export const DEFAULT_STATE_DIR = "/run/microvm-net";

/** What bootstrap recorded. */
export interface BootstrapState {
  /** Format version of this record. */
  version: 1;
  /** sysctl path (slash form) → value it had before bootstrap changed it. */
  sysctls: Record<string, string>;
  /** Subnet and table bootstrap was last run with. */
  subnet: string;
  table: string;
}

/** The namespace id, read once per thread (each worker thread has its own copy of this module). */
let cachedNetns: string | undefined;

/**
 * `net:[4026531840]` → `4026531840`: identifies the calling thread's network namespace. Read from
 * /proc once and then remembered (a readlink costs ~40 µs on a busy host, and every TAP and mapping
 * asks): nothing in microvm-net moves a thread to another namespace in-process — `--netns`
 * re-executes the CLI under nsenter (cli/netns.ts), since setns(2) would leave libuv's and koffi's
 * threads behind (GUIDE §4). A caller that does setns(2) itself must call {@link forgetNetnsId}.
 */
export function netnsId(): string {
  if (cachedNetns === undefined) {
    const link = readlinkSync("/proc/thread-self/ns/net");
    cachedNetns = /\[(\d+)\]/.exec(link)?.[1] ?? link;
  }
  return cachedNetns;
}

/** Forgets the remembered namespace id (after this thread moved to another namespace with setns(2)). */
export function forgetNetnsId(): void {
  cachedNetns = undefined;
}

/** Path of the state file for the current network namespace under `dir`. */
export function statePath(dir = DEFAULT_STATE_DIR): string {
  return join(dir, `bootstrap-${netnsId()}.json`);
}

/** Reads the record, or undefined when there is none. @throws on a corrupt file (never guessed over). */
export function readBootstrapState(dir = DEFAULT_STATE_DIR): BootstrapState | undefined {
  let text: string;
  try {
    text = readFileSync(statePath(dir), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  return JSON.parse(text) as BootstrapState;
}

/** Writes the record atomically (write to a temporary file, then rename). */
export function writeBootstrapState(state: BootstrapState, dir = DEFAULT_STATE_DIR): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const path = statePath(dir);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, path);
}

/** Removes the record; absent is fine. */
export function removeBootstrapState(dir = DEFAULT_STATE_DIR): void {
  rmSync(statePath(dir), { force: true });
}
