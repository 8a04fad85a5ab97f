/**
 * Sysctls through `/proc/sys`, with synchronous calls on purpose: `/proc/sys/net` shows the
 * network namespace of the thread that opens it, and async fs calls run on libuv's pool, whose
 * threads may sit in another namespace than the caller (GUIDE §4). Writes go straight to
 * open/write/close through koffi (≈ 13 µs here against ≈ 32 µs for `fs.writeFileSync`): a TAP
 * creation pays one.
 */
import { readFileSync } from "node:fs";
import { KernelError, ValidationError } from "../core/errors.js";
import { validateIfName } from "../core/validate.js";
import { O_CLOEXEC, O_WRONLY, sysClose, sysOpen, sysWrite } from "./ffi.js";

const EIO = 5;

const SEGMENT_RE = /^[A-Za-z0-9_.-]+$/;
const KEY_RE = /^[a-z0-9_]+$/;

/**
 * Checks a slash-separated sysctl path relative to `/proc/sys` (`net/ipv4/ip_forward`). Slashes,
 * not dots, because interface names may contain dots (`net/ipv4/conf/eth0.10/forwarding`).
 * @throws ValidationError (field `path`) for an absolute path, an empty, `.` or `..` segment, or
 *   characters outside `[A-Za-z0-9_.-]`.
 */
export function validateSysctlPath(path: unknown): string {
  if (typeof path !== "string" || path.length === 0) {
    throw new ValidationError("path", "a sysctl path must be a non-empty string");
  }
  if (path.startsWith("/")) {
    throw new ValidationError("path", `"${path}" must be relative to /proc/sys, e.g. net/ipv4/ip_forward`);
  }
  for (const seg of path.split("/")) {
    if (seg === "" || seg === "." || seg === ".." || !SEGMENT_RE.test(seg)) {
      throw new ValidationError(
        "path",
        `"${path}" has an empty, "." or ".." segment, or characters outside [A-Za-z0-9_.-]`,
      );
    }
  }
  return path;
}

function errnoOf(err: unknown): number {
  const n = (err as NodeJS.ErrnoException | undefined)?.errno;
  return typeof n === "number" ? Math.abs(n) : 5; // EIO when fs gave no errno
}

/**
 * Reads a sysctl of the caller's network namespace.
 * @param path slash-separated, relative to `/proc/sys` (see {@link validateSysctlPath}).
 * @returns the value with its trailing newline removed (multi-value keys keep their tabs).
 * @throws ValidationError for a bad path; KernelError (syscall `read(/proc/sys/<path>)`, ENOENT
 *   for an unknown key or interface).
 */
export function sysctlGet(path: string): string {
  const p = validateSysctlPath(path);
  try {
    return readFileSync(`/proc/sys/${p}`, "utf8").replace(/\n$/, "");
  } catch (err) {
    throw new KernelError(`read(/proc/sys/${p})`, errnoOf(err), `reading sysctl ${p}`);
  }
}

/**
 * Writes a sysctl of the caller's network namespace, in one `write(2)` as the kernel expects.
 * @param path slash-separated, relative to `/proc/sys`.
 * @param value written as text (`1`, `"32768 60999"`); must not contain a newline.
 * @throws ValidationError for a bad path or value; KernelError (syscall `write(/proc/sys/<path>)`):
 *   EINVAL for a value the kernel refuses, ENOENT for an unknown key, EACCES/EPERM (`isPermission`)
 *   without privileges or for a read-only key.
 */
export function sysctlSet(path: string, value: string | number): void {
  const p = validateSysctlPath(path);
  const text = String(value);
  if (text.length === 0 || /[\r\n]/.test(text)) {
    throw new ValidationError("value", `${JSON.stringify(text)} is not a single-line sysctl value`);
  }
  const syscall = `write(/proc/sys/${p})`;
  const context = `setting sysctl ${p} to ${text}`;
  let fd: number;
  try {
    fd = sysOpen(`/proc/sys/${p}`, O_WRONLY | O_CLOEXEC, context);
  } catch (err) {
    throw new KernelError(syscall, errnoOf(err), context);
  }
  try {
    const buf = Buffer.from(text);
    // proc_sys_call_handler() takes the value in one write; a short one would be a partial value.
    if (sysWrite(fd, buf, context) !== buf.length) throw new KernelError(syscall, EIO, context);
  } catch (err) {
    if (err instanceof KernelError && err.syscall === syscall) throw err;
    throw new KernelError(syscall, errnoOf(err), context);
  } finally {
    sysClose(fd);
  }
}

/**
 * Path of a per-interface sysctl: `net/<family>/conf/<ifname>/<key>`. `ifname` may also be `all`
 * or `default` (Documentation/networking/ip-sysctl.rst).
 * @throws ValidationError for a bad family, interface name or key.
 */
export function ifaceSysctlPath(family: "ipv4" | "ipv6", ifname: string, key: string): string {
  if (family !== "ipv4" && family !== "ipv6") {
    throw new ValidationError("family", `${JSON.stringify(family)} is not "ipv4" or "ipv6"`);
  }
  // `all` and `default` are the per-family directories beside the interfaces', not interface names.
  if (ifname !== "all" && ifname !== "default") validateIfName(ifname, "ifname");
  if (typeof key !== "string" || !KEY_RE.test(key)) {
    throw new ValidationError("key", `${JSON.stringify(key)} is not a sysctl key such as route_localnet`);
  }
  return `net/${family}/conf/${ifname}/${key}`;
}
