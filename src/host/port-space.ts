/**
 * Which host ports may be handed out when a VM publishes a port without asking for one: the
 * configured range (default 30000–32767) minus the kernel's ephemeral range
 * (`net.ipv4.ip_local_port_range`) and minus `net.ipv4.ip_local_reserved_ports`.
 *
 * Why: the kernel picks source ports of the host's own outgoing connections from
 * ip_local_port_range; a DNAT on such a port would divert the replies of those connections to a
 * guest. ip_local_reserved_ports lists ports an administrator set aside for services that bind them
 * later (Documentation/networking/ip-sysctl.rst), so we must not take them either. Both sysctls are
 * per network namespace.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { ExhaustedError, ValidationError } from "../core/errors.js";
import { sysctlGet } from "../kernel/sysctl.js";

/** An inclusive range of ports. */
export interface PortRange {
  start: number;
  end: number;
}

/** Default range of ephemeral (not asked for) published ports: just below Linux's default ip_local_port_range. */
export const DEFAULT_EPHEMERAL_RANGE: Readonly<PortRange> = Object.freeze({ start: 30000, end: 32767 });

/** What the kernel says about local ports. */
export interface LocalPortPolicy {
  /** net.ipv4.ip_local_port_range. */
  localRange: PortRange;
  /** net.ipv4.ip_local_reserved_ports, as ranges. */
  reserved: PortRange[];
}

function port(text: string, field: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 0 || n > 65535)
    throw new ValidationError(field, `"${text}" is not a port number`);
  return n;
}

/**
 * Parses ip_local_reserved_ports text: comma-separated ports and ranges, e.g. `8080,9148-9150`;
 * empty means none.
 * @throws ValidationError (field `ip_local_reserved_ports`).
 */
export function parseReservedPorts(text: string): PortRange[] {
  const out: PortRange[] = [];
  for (const part of text.trim().split(",")) {
    const p = part.trim();
    if (p === "") continue;
    const [a, b] = p.split("-");
    const start = port(a ?? "", "ip_local_reserved_ports");
    const end = b === undefined ? start : port(b, "ip_local_reserved_ports");
    out.push({ start: Math.min(start, end), end: Math.max(start, end) });
  }
  return out;
}

/**
 * Parses ip_local_port_range text: two numbers separated by whitespace, e.g. `32768\t60999`.
 * @throws ValidationError (field `ip_local_port_range`).
 */
export function parseLocalPortRange(text: string): PortRange {
  const [a, b] = text.trim().split(/\s+/);
  const start = port(a ?? "", "ip_local_port_range");
  const end = port(b ?? "", "ip_local_port_range");
  return { start: Math.min(start, end), end: Math.max(start, end) };
}

/** Open descriptors of the two sysctls, by path (see {@link readSysctlAt}). */
const sysctlFds = new Map<string, number>();
const readBuf = Buffer.alloc(4096);

/**
 * Reads a sysctl through a descriptor kept open: one pread(2) at offset 0 instead of open, two
 * reads and close on every attach. Each read at offset 0 renders the current value again
 * (proc_sys_call_handler() in fs/proc/proc_sysctl.c), so nothing is cached but the descriptor —
 * which stays bound to the namespace it was opened in, as this process never changes namespace
 * (store/bootstrap-state.ts netnsId). A value longer than the buffer, or any error, takes the
 * ordinary path.
 */
function readSysctlAt(path: string): string {
  let fd = sysctlFds.get(path);
  try {
    if (fd === undefined) {
      fd = openSync(`/proc/sys/${path}`, "r");
      sysctlFds.set(path, fd);
    }
    const n = readSync(fd, readBuf, 0, readBuf.length, 0);
    if (n < readBuf.length) return readBuf.toString("utf8", 0, n).replace(/\n$/, "");
  } catch {
    if (fd !== undefined) {
      sysctlFds.delete(path);
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
  }
  return sysctlGet(path);
}

/**
 * Reads the local-port sysctls of the caller's network namespace (synchronously; current values
 * on every call, see readSysctlAt).
 * @throws KernelError when /proc/sys cannot be read.
 */
export function readLocalPortPolicy(): LocalPortPolicy {
  return {
    localRange: parseLocalPortRange(readSysctlAt("net/ipv4/ip_local_port_range")),
    reserved: parseReservedPorts(readSysctlAt("net/ipv4/ip_local_reserved_ports")),
  };
}

/**
 * The ports of `range` that are neither in `policy.localRange` nor reserved, ascending.
 * @throws ValidationError for a bad range; ExhaustedError when nothing is left (the message says why).
 */
export function ephemeralPorts(range: PortRange, policy: LocalPortPolicy): number[] {
  const { start, end } = range;
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 1 || end > 65535 || start > end) {
    throw new ValidationError("portRange", `${start}-${end} is not a port range within 1-65535`);
  }
  const excluded = [policy.localRange, ...policy.reserved];
  const out: number[] = [];
  for (let p = start; p <= end; p++) {
    if (!excluded.some((r) => p >= r.start && p <= r.end)) out.push(p);
  }
  if (out.length === 0) {
    throw new ExhaustedError(
      `no ephemeral port left in ${start}-${end}: it lies inside the kernel's ip_local_port_range ` +
        `(${policy.localRange.start}-${policy.localRange.end}) or ip_local_reserved_ports; choose a range outside them`,
    );
  }
  return out;
}
