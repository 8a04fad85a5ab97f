import ipaddr from "ipaddr.js";
import { ValidationError } from "./errors.js";

/** Transport protocols a port can be published for. */
export type Protocol = "tcp" | "udp";

/** IP protocol numbers (IANA; include/uapi/linux/in.h IPPROTO_TCP, IPPROTO_UDP), as the kernel keys them. */
export const IPPROTO: Readonly<Record<Protocol, number>> = { tcp: 6, udp: 17 };

/** Longest interface name the kernel keeps (IFNAMSIZ 16 including the NUL); it truncates silently. */
export const IFNAME_MAX_BYTES = 15;

const IFNAME_RE = /^[A-Za-z0-9_.-]+$/;

/**
 * Names the kernel keeps for itself: `all` and `default` are the directories of
 * /proc/sys/net/{ipv4,ipv6}/conf/, so register_netdevice() refuses a device of that name with
 * EINVAL (net/core/dev.c, dev_get_valid_name → dev_valid_name; net/ipv4/devinet.c owns the sysctl
 * names).
 */
export const RESERVED_IFNAMES: ReadonlySet<string> = new Set(["all", "default"]);

/**
 * A TAP's MTU range in bytes. 68 is IPv4's minimum (RFC 791); the maximum is tun's
 * `dev->max_mtu = MAX_MTU - dev->hard_header_len` (drivers/net/tun.c, tun_net_initialize) =
 * 65535 − ETH_HLEN 14 = 65521 for a TAP; dev_validate_mtu() refuses more with EINVAL.
 */
export const TAP_MTU_MIN = 68;
/** See {@link TAP_MTU_MIN}. */
export const TAP_MTU_MAX = 65521;

/**
 * Describes any value for an error message without ever throwing: strings quoted (cut at 64
 * characters), numbers as written (`-0` kept), BigInts with `n`, Symbols as `Symbol(desc)`, arrays
 * by length, other objects by their constructor (a null-prototype object, which has no
 * `toString`, as such). `String(v)` and `JSON.stringify(v)` throw a TypeError for some of these.
 */
export function describe(v: unknown): string {
  try {
    switch (typeof v) {
      case "string":
        return JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}…` : v);
      case "number":
        return Object.is(v, -0) ? "-0" : String(v);
      case "bigint":
        return `${v.toString()}n`;
      case "symbol":
        return v.toString();
      case "boolean":
      case "undefined":
        return String(v);
      case "function":
        return "a function";
    }
    if (v === null) return "null";
    if (Array.isArray(v)) return `an array of ${v.length}`;
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto === null) return "an object without prototype";
    const ctor = (proto as { constructor?: unknown }).constructor;
    const name = typeof ctor === "function" && typeof ctor.name === "string" ? ctor.name : "";
    return name && name !== "Object" ? `a ${name}` : "an object";
  } catch {
    return "a value"; // e.g. a Proxy whose traps throw
  }
}

/**
 * Checks that `value` is an array (of anything; the caller checks the items).
 * @throws ValidationError naming `field` otherwise.
 */
export function validateArray(value: unknown, field: string): readonly unknown[] {
  if (!Array.isArray(value)) throw new ValidationError(field, `${describe(value)} is not an array`);
  return value;
}

/**
 * Checks a filesystem path given as an option: a non-empty string without NUL (which every path
 * syscall refuses).
 * @throws ValidationError (code `ERR_INVALID_PATH`).
 */
export function validatePath(value: unknown, field: string): string {
  if (typeof value !== "string" || value.length === 0 || value.includes("\0")) {
    throw new ValidationError(field, `${describe(value)} is not a path`, "ERR_INVALID_PATH");
  }
  return value;
}

/**
 * Checks a TAP's MTU: an integer in {@link TAP_MTU_MIN}–{@link TAP_MTU_MAX} (68–65521).
 * @throws ValidationError (code `ERR_INVALID_MTU`).
 */
export function validateTapMtu(value: unknown, field = "mtu"): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < TAP_MTU_MIN || value > TAP_MTU_MAX) {
    throw new ValidationError(
      field,
      `${describe(value)} is not a TAP MTU in ${TAP_MTU_MIN}-${TAP_MTU_MAX}`,
      "ERR_INVALID_MTU",
    );
  }
  return value;
}

/**
 * Checks an interface name the way `dev_valid_name()` in net/core/dev.c does, but stricter:
 * 1–15 bytes, not `.` or `..`, only `[A-Za-z0-9_.-]`, and not a reserved name
 * ({@link RESERVED_IFNAMES}: `all`, `default`).
 * @throws ValidationError (code `ERR_INVALID_NAME`) otherwise.
 */
export function validateIfName(name: unknown, field = "name"): string {
  if (typeof name !== "string" || name.length === 0) {
    throw new ValidationError(field, "an interface name must be a non-empty string", "ERR_INVALID_NAME");
  }
  if (Buffer.byteLength(name) > IFNAME_MAX_BYTES) {
    throw new ValidationError(
      field,
      `"${name}" is longer than ${IFNAME_MAX_BYTES} bytes (the kernel would truncate it)`,
      "ERR_INVALID_NAME",
    );
  }
  if (name === "." || name === ".." || !IFNAME_RE.test(name)) {
    throw new ValidationError(
      field,
      `"${name}" may hold only letters, digits, "_", "." and "-", and may not be "." or ".."`,
      "ERR_INVALID_NAME",
    );
  }
  if (RESERVED_IFNAMES.has(name)) {
    throw new ValidationError(
      field,
      `"${name}" is reserved by the kernel (/proc/sys/net/*/conf/${name})`,
      "ERR_INVALID_NAME",
    );
  }
  return name;
}

/**
 * Four decimal octets 0–255 without leading zeros: exactly the strings ipaddr.js's
 * `IPv4.isValidFourPartDecimal` accepts, each of which is its own canonical form (the unit
 * property test checks both). One regular expression instead of its three passes, because every
 * address of every netlink and nf_tables message goes through here.
 */
const DOTTED_QUAD = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * Parses a dotted-quad IPv4 address (no shorthand such as `10.1`, no leading zeros).
 * @returns the address in canonical form (the input itself: only canonical forms are accepted).
 * @throws ValidationError (code `ERR_INVALID_ADDRESS`).
 */
export function validateIPv4(value: unknown, field = "address"): string {
  if (typeof value !== "string" || !DOTTED_QUAD.test(value)) {
    throw new ValidationError(field, `${describe(value)} is not an IPv4 address`, "ERR_INVALID_ADDRESS");
  }
  return value;
}

/** A parsed IPv4 CIDR, normalised: `network` has the host bits cleared. */
export interface Cidr {
  /** Address as written (host bits kept), e.g. `10.200.0.1` for `10.200.0.1/16`. */
  address: string;
  /** Network address, host bits cleared, e.g. `10.200.0.0`. */
  network: string;
  /** Prefix length, 0–32. */
  prefix: number;
}

/**
 * Parses `a.b.c.d/n`. Host bits are allowed and cleared in `network`, as Go's `net.ParseCIDR` does.
 * @throws ValidationError (code `ERR_INVALID_CIDR`).
 */
export function parseCidr(value: unknown, field = "cidr"): Cidr {
  if (typeof value !== "string") {
    throw new ValidationError(field, `${describe(value)} is not a CIDR`, "ERR_INVALID_CIDR");
  }
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(value);
  if (!m || !DOTTED_QUAD.test(m[1] as string) || Number(m[2]) > 32) {
    throw new ValidationError(
      field,
      `"${value}" is not an IPv4 CIDR such as 10.200.0.0/16`,
      "ERR_INVALID_CIDR",
    );
  }
  const address = m[1] as string; // canonical: DOTTED_QUAD accepts nothing else
  const prefix = Number(m[2]);
  const network = intToIPv4(ipv4ToInt(address) & prefixMask(prefix));
  return { address, network, prefix };
}

/**
 * Checks a port number: an integer in 1–65535.
 * @throws ValidationError (code `ERR_INVALID_PORT`).
 */
export function validatePort(value: unknown, field = "port"): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new ValidationError(
      field,
      `${describe(value)} is not a port number in 1-65535`,
      "ERR_INVALID_PORT",
    );
  }
  return value;
}

/**
 * Checks a protocol name; case-insensitive, returns lower case.
 * @throws ValidationError (code `ERR_INVALID_PROTOCOL`).
 */
export function validateProtocol(value: unknown, field = "protocol"): Protocol {
  const p = typeof value === "string" ? value.toLowerCase() : value;
  if (p !== "tcp" && p !== "udp") {
    throw new ValidationError(field, `${describe(value)} is not "tcp" or "udp"`, "ERR_INVALID_PROTOCOL");
  }
  return p;
}

/**
 * Checks a uid or gid: an integer in 0–4294967294 (`(uid_t)-1` means "unset" to the kernel).
 * @throws ValidationError (code `ERR_INVALID_ID`).
 */
export function validateId(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xfffffffe) {
    throw new ValidationError(field, `${describe(value)} is not a uid/gid in 0-4294967294`, "ERR_INVALID_ID");
  }
  return value;
}

/** `10.200.0.1` → 0x0ac80001 (unsigned 32-bit). Input must already be valid. */
export function ipv4ToInt(ip: string): number {
  const b = ipaddr.IPv4.parse(ip).octets;
  return (
    ((b[0] as number) * 2 ** 24 + ((b[1] as number) << 16) + ((b[2] as number) << 8) + (b[3] as number)) >>> 0
  );
}

/** 0x0ac80001 → `10.200.0.1`. */
export function intToIPv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Netmask of a prefix length as an unsigned 32-bit integer (`/16` → 0xffff0000). */
export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** True when `ip` lies inside `cidr`. */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  const mask = prefixMask(cidr.prefix);
  return (ipv4ToInt(ip) & mask) >>> 0 === ipv4ToInt(cidr.network);
}

const MAC_RE = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/**
 * Checks a MAC address: six colon-separated hex bytes, unicast (IEEE 802: bit 0 of the first octet
 * clear), not all zero.
 * @returns lower case.
 * @throws ValidationError (code `ERR_INVALID_MAC`).
 */
export function validateMac(value: unknown, field = "mac"): string {
  const m = typeof value === "string" ? value.toLowerCase() : "";
  if (!MAC_RE.test(m) || (Number.parseInt(m.slice(0, 2), 16) & 1) === 1 || m === "00:00:00:00:00:00") {
    throw new ValidationError(
      field,
      `${JSON.stringify(value)} is not a unicast MAC address`,
      "ERR_INVALID_MAC",
    );
  }
  return m;
}
