/**
 * Published ports as a VM asks for them: parsing Docker-style `[hostIp:][hostPort:]guestPort[/proto]`
 * text, and expanding ranges into one wanted host port per guest port.
 */
import { ValidationError } from "../core/errors.js";
import { type Protocol, validateIPv4, validatePort, validateProtocol } from "../core/validate.js";
import type { PortRange } from "./port-space.js";

/** Host address meaning "every address of the host". */
export const ANY_HOST = "0.0.0.0";

/** Most host ports one VM may publish (a bound on the work of one attach). */
export const MAX_PUBLISHED_PER_VM = 1024;

/** One published port, or a range of them, as asked for. */
export interface PublishSpec {
  /** Guest port, or an inclusive range of guest ports. */
  guestPort: number | PortRange;
  /**
   * Host port: a port, an inclusive range, or 0 / absent for "any" (an ephemeral port, see
   * port-space.ts). With a guest range, a host range of the same length maps port by port, and an
   * absent host port gives each guest port its own ephemeral port. With one guest port, a host range
   * means "any free port of this range".
   */
  hostPort?: number | PortRange;
  /** `tcp` (default) or `udp`. */
  protocol?: string;
  /** Host address the port is published on: an IPv4 address of the host (e.g. `127.0.0.1` for the host only), or `0.0.0.0` / absent for all. */
  hostIp?: string;
}

/** One host port to allocate for one guest port. */
export interface PortWant {
  protocol: Protocol;
  hostIp: string;
  guestPort: number;
  host:
    | { kind: "exact"; port: number }
    | { kind: "range"; start: number; end: number }
    | { kind: "ephemeral" };
}

function parsePortOrRange(text: string, field: string): number | PortRange {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m)
    throw new ValidationError(
      field,
      `"${text}" is not a port or a range such as 8000-8010`,
      "ERR_INVALID_PORT",
    );
  const start = Number(m[1]);
  if (m[2] === undefined) return start;
  return { start, end: Number(m[2]) };
}

/**
 * Parses `[hostIp:][hostPort:]guestPort[/proto]`: `80` (any host port), `8080:80`, `8000-8010:8000-8010`,
 * `127.0.0.1:8080:80/tcp`, `127.0.0.1::53/udp` (any port on that address).
 * @throws ValidationError (field `publish`, or the part that is wrong) before anything is touched.
 */
export function parsePublish(text: string): PublishSpec {
  if (typeof text !== "string" || text.trim() === "") {
    throw new ValidationError(
      "publish",
      `${JSON.stringify(text)} is not [hostIp:][hostPort:]guestPort[/proto]`,
    );
  }
  const [body, proto, extra] = text.trim().split("/");
  if (extra !== undefined) throw new ValidationError("publish", `"${text}" has more than one "/"`);
  const parts = (body ?? "").split(":");
  if (parts.length > 3) {
    throw new ValidationError("publish", `"${text}" is not [hostIp:][hostPort:]guestPort[/proto]`);
  }
  const spec: PublishSpec = {
    guestPort: parsePortOrRange(parts[parts.length - 1] ?? "", "guestPort"),
  };
  if (proto !== undefined) spec.protocol = validateProtocol(proto);
  if (parts.length >= 2) {
    const hp = parts[parts.length - 2] ?? "";
    if (hp !== "") spec.hostPort = parsePortOrRange(hp, "hostPort");
  }
  if (parts.length === 3) spec.hostIp = validateIPv4(parts[0], "hostIp");
  return spec;
}

function range(v: number | PortRange, field: string): PortRange {
  if (typeof v === "number") {
    validatePort(v, field);
    return { start: v, end: v };
  }
  if (typeof v !== "object" || v === null) throw new ValidationError(field, "must be a port or {start, end}");
  const start = validatePort(v.start, `${field}.start`);
  const end = validatePort(v.end, `${field}.end`);
  if (end < start)
    throw new ValidationError(field, `range ${start}-${end} is empty (end < start)`, "ERR_INVALID_PORT");
  return { start, end };
}

/**
 * Validates and expands what a VM asks to publish into one {@link PortWant} per guest port, in order.
 * @throws ValidationError naming the bad entry (`publish[i]…`): bad ports, protocol or address, a host
 *   range whose length differs from the guest range's, one host port for a guest range, the same
 *   (protocol, host address, host port) asked twice, or more than {@link MAX_PUBLISHED_PER_VM} ports.
 */
export function expandPublish(specs: ReadonlyArray<PublishSpec | string> = []): PortWant[] {
  if (!Array.isArray(specs)) throw new ValidationError("publish", "must be an array");
  const out: PortWant[] = [];
  specs.forEach((raw, i) => {
    const f = `publish[${i}]`;
    const s = typeof raw === "string" ? parsePublish(raw) : raw;
    if (typeof s !== "object" || s === null) throw new ValidationError(f, "must be a spec object or text");
    const protocol = validateProtocol(s.protocol ?? "tcp", `${f}.protocol`);
    const hostIp =
      s.hostIp === undefined || s.hostIp === "" ? ANY_HOST : validateIPv4(s.hostIp, `${f}.hostIp`);
    const guest = range(s.guestPort, `${f}.guestPort`);
    const n = guest.end - guest.start + 1;
    const hostGiven = s.hostPort !== undefined && s.hostPort !== 0;
    const host = hostGiven ? range(s.hostPort as number | PortRange, `${f}.hostPort`) : undefined;
    if (out.length + n > MAX_PUBLISHED_PER_VM) {
      throw new ValidationError("publish", `more than ${MAX_PUBLISHED_PER_VM} ports for one VM`);
    }
    for (let k = 0; k < n; k++) {
      const guestPort = guest.start + k;
      let want: PortWant["host"];
      if (!host) want = { kind: "ephemeral" };
      else if (n === 1)
        want = host.start === host.end ? { kind: "exact", port: host.start } : { kind: "range", ...host };
      else if (host.end - host.start + 1 === n) want = { kind: "exact", port: host.start + k };
      else {
        throw new ValidationError(
          `${f}.hostPort`,
          `guest range ${guest.start}-${guest.end} needs a host range of the same length (${n} ports) or none`,
        );
      }
      out.push({ protocol, hostIp, guestPort, host: want });
    }
  });
  const seen = new Set<string>();
  for (const w of out) {
    if (w.host.kind !== "exact") continue;
    const key = `${w.protocol} ${w.hostIp} ${w.host.port}`;
    if (seen.has(key))
      throw new ValidationError("publish", `${w.protocol} port ${w.host.port} on ${w.hostIp} is asked twice`);
    seen.add(key);
  }
  return out;
}

/** True when two host addresses would clash for the same protocol and port (bind(2) rules for IPv4). */
export function hostIpsClash(a: string, b: string): boolean {
  return a === b || a === ANY_HOST || b === ANY_HOST;
}
