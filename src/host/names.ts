/**
 * Names HostNetwork gives: VM ids it accepts, TAP names derived from them, and the interface alias
 * that marks a TAP as belonging to one VM.
 */
import { hash as digestOf } from "node:crypto";
import { TAP_ALIAS } from "../api/context.js";
import { ValidationError } from "../core/errors.js";
import { describe, IFNAME_MAX_BYTES } from "../core/validate.js";
import type { Link } from "../kernel/netlink/index.js";

/** Longest VM id accepted (it is written into the TAP's alias, at most 255 bytes). */
export const VM_ID_MAX = 128;

const VM_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:@-]*$/;

/**
 * Checks a VM id: 1–128 characters, a letter or digit first, then letters, digits, `_ . : @ -`
 * (Firecracker's jailer ids — letters, digits and `-` — all fit).
 * @throws ValidationError (field `vmId`, code `ERR_INVALID_ID`).
 */
export function validateVmId(vmId: unknown): string {
  if (typeof vmId !== "string" || vmId.length === 0 || vmId.length > VM_ID_MAX || !VM_ID_RE.test(vmId)) {
    throw new ValidationError(
      "vmId",
      `${describe(vmId)} is not a VM id (1-${VM_ID_MAX} characters: a letter or digit, then letters, digits, "_", ".", ":", "@", "-")`,
      "ERR_INVALID_ID",
    );
  }
  return vmId;
}

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";
const HASH_CHARS = 6;
const READABLE_MAX = IFNAME_MAX_BYTES - HASH_CHARS - 1;

/**
 * The TAP name of a VM: up to 8 letters and digits of its id (lower case), `-`, then 6 base32
 * characters (30 bits) of SHA-256 of the id — 15 bytes at most, the kernel's limit. Deterministic:
 * the same id gives the same name in every process. `attempt` > 0 gives the alternatives used when a
 * name is already taken (by another VM with a similar id, or by an interface we did not make).
 * @example tapNameFor("web-frontend-7") → "webfront-xxxxxx"
 */
export function tapNameFor(vmId: string, attempt = 0): string {
  const readable = vmId
    .replace(/[^A-Za-z0-9]/g, "")
    .toLowerCase()
    .slice(0, READABLE_MAX);
  // One-shot hash (Node ≥ 20.12): no Hash object per name.
  const digest = digestOf("sha256", attempt === 0 ? vmId : `${vmId}\0${attempt}`, "buffer");
  let hash = "";
  for (let i = 0; i < HASH_CHARS; i++) {
    // 5 bits at a time from the first 4 bytes (30 bits used).
    hash += BASE32[(digest.readUInt32BE(0) >>> (27 - 5 * i)) & 31];
  }
  return `${readable || "mv"}-${hash}`;
}

/** The alias (IFLA_IFALIAS) of a VM's TAP: `microvm-net:<vmId>`; `ip link` shows it. */
export function tapAliasFor(vmId: string): string {
  return `${TAP_ALIAS}:${vmId}`;
}

/**
 * True when `link` is a TAP HostNetwork made (kind `tun`, alias `microvm-net:<vmId>`), in `group`
 * when given. TAPs made through createTap carry the bare `microvm-net` alias and are never taken
 * for HostNetwork's.
 */
export function isVmTap(link: Link, group?: number): boolean {
  return (
    link.kind === "tun" &&
    link.alias?.startsWith(`${TAP_ALIAS}:`) === true &&
    (group === undefined || link.group === group)
  );
}

/** The VM id in a HostNetwork TAP's alias, or undefined. */
export function vmIdOfTap(link: Link): string | undefined {
  return isVmTap(link) ? link.alias?.slice(TAP_ALIAS.length + 1) : undefined;
}
