/**
 * A published port as plain data: which packets (protocol, host side, host port) go to which guest
 * (address, port). Validation here is the only way a value reaches the nft text, so nothing a caller
 * passes can be read by nft as a command.
 */
import { ValidationError } from "../core/errors.js";
import {
  IPPROTO,
  type Protocol,
  validateIfName,
  validateIPv4,
  validatePort,
  validateProtocol,
} from "../core/validate.js";
import type { ElemField, SetElem } from "../kernel/nftnl/index.js";

/**
 * Which packets addressed to the host a mapping catches:
 * - `any`: to any local address of the host (the kernel's `fib daddr type local`), and 127.0.0.1
 *   from the host itself;
 * - `address`: to that one address (e.g. `192.0.2.2`, or `127.0.0.1` for host-only publishing);
 * - `interface`: arriving on that interface (`name`, e.g. `uplink0`) and addressed to the host.
 */
export type HostMatch =
  | { kind: "any" }
  | { kind: "address"; ip: string }
  | { kind: "interface"; name: string };

/** One published port: `protocol` host side `host`:`hostPort` → `guestIp`:`guestPort`. Ports 1–65535. */
export interface Mapping {
  protocol: Protocol;
  host: HostMatch;
  hostPort: number;
  guestIp: string;
  guestPort: number;
}

/** Name of the nftables map holding mappings of each host-match kind. */
export const MAP_NAMES = { any: "pm_any", address: "pm_addr", interface: "pm_iif" } as const;

/** One of our map names. */
export type MapName = (typeof MAP_NAMES)[keyof typeof MAP_NAMES];

/**
 * Checks every field of a mapping and returns a normalised copy (protocol lower case, addresses
 * canonical).
 * @throws ValidationError naming the bad field (`protocol`, `host`, `hostPort`, `guestIp`, `guestPort`).
 */
export function validateMapping(m: unknown): Mapping {
  if (typeof m !== "object" || m === null) throw new ValidationError("mapping", "must be an object");
  const r = m as Record<string, unknown>;
  return {
    protocol: validateProtocol(r.protocol),
    host: validateHostMatch(r.host),
    hostPort: validatePort(r.hostPort, "hostPort"),
    guestIp: validateIPv4(r.guestIp, "guestIp"),
    guestPort: validatePort(r.guestPort, "guestPort"),
  };
}

/**
 * Checks a {@link HostMatch}.
 * @throws ValidationError (field `host`, or `host.ip` / `host.name` for a bad address or name).
 */
export function validateHostMatch(h: unknown): HostMatch {
  if (typeof h !== "object" || h === null) {
    throw new ValidationError("host", 'must be {kind:"any"}, {kind:"address",ip} or {kind:"interface",name}');
  }
  const r = h as Record<string, unknown>;
  switch (r.kind) {
    case "any":
      return { kind: "any" };
    case "address":
      return { kind: "address", ip: validateIPv4(r.ip, "host.ip") };
    case "interface":
      return { kind: "interface", name: validateIfName(r.name, "host.name") };
    default:
      throw new ValidationError("host", `unknown kind ${JSON.stringify(r.kind)}`);
  }
}

/** The map a mapping lives in. */
export function mapOf(host: HostMatch): MapName {
  return MAP_NAMES[host.kind];
}

/**
 * True when the host reaches the mapping through 127.0.0.1: it covers all host addresses, or a 127/8
 * address. Such a mapping needs route_localnet on the guest's TAP (api/loopback.ts).
 */
export function coversLoopback(host: HostMatch): boolean {
  return host.kind === "any" || (host.kind === "address" && host.ip.startsWith("127."));
}

/**
 * The map element of a mapping for our nf_tables messages (kernel/nftnl), in the maps' declared field
 * order (ruleset.ts renderSkeleton): key `inet_proto . inet_service` (any host address),
 * `inet_proto . ipv4_addr . inet_service` (one address) or `inet_proto . ifname . inet_service` (one
 * interface); value `ipv4_addr . inet_service` (the guest's address and port).
 */
export function mappingElem(m: Mapping): SetElem {
  const proto: ElemField = { type: "inet_proto", value: IPPROTO[m.protocol] };
  const port: ElemField = { type: "inet_service", value: m.hostPort };
  const key: ElemField[] =
    m.host.kind === "address"
      ? [proto, { type: "ipv4_addr", value: m.host.ip }, port]
      : m.host.kind === "interface"
        ? [proto, { type: "ifname", value: m.host.name }, port]
        : [proto, port];
  return {
    key,
    data: [
      { type: "ipv4_addr", value: m.guestIp },
      { type: "inet_service", value: m.guestPort },
    ],
  };
}

/** `tcp/8080 on 192.0.2.2` — the host side of a mapping, for messages. */
export function describeHostSide(m: Mapping): string {
  const where =
    m.host.kind === "any"
      ? "any address"
      : m.host.kind === "address"
        ? m.host.ip
        : `interface ${m.host.name}`;
  return `${m.protocol}/${m.hostPort} on ${where}`;
}

type Json = unknown;

function asRecord(v: Json): Record<string, Json> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, Json>) : undefined;
}

function concatOf(v: Json): Json[] | undefined {
  const c = asRecord(v)?.concat;
  return Array.isArray(c) ? c : undefined;
}

/**
 * Reads the mappings out of `nft -j list table` / `list map` output (libnftables JSON schema 1, see
 * libnftables-json(5)): each map element is `[{"concat":[key…]}, {"concat":[ip, port]}]`.
 * Elements of maps other than ours, or that do not parse as a valid mapping, are skipped.
 * @returns mappings in the order nft listed them (pm_any, pm_addr, pm_iif as they appear).
 */
export function parseMappings(json: string): Mapping[] {
  const doc = asRecord(JSON.parse(json));
  const items = Array.isArray(doc?.nftables) ? doc.nftables : [];
  const out: Mapping[] = [];
  for (const item of items) {
    const map = asRecord(asRecord(item)?.map);
    if (!map || !Array.isArray(map.elem)) continue;
    const kind = (Object.keys(MAP_NAMES) as Array<keyof typeof MAP_NAMES>).find(
      (k) => MAP_NAMES[k] === map.name,
    );
    if (!kind) continue;
    for (const e of map.elem) {
      // An element with attributes (timeout, counter) is wrapped as {"elem": {"val": …}}; ours have none.
      const pair = Array.isArray(e) ? e : undefined;
      const key = concatOf(pair?.[0]);
      const value = concatOf(pair?.[1]);
      if (!key || !value) continue;
      const [proto, ...rest] = key;
      const hostPort = rest[rest.length - 1];
      const host: Json =
        kind === "any" ? { kind } : kind === "address" ? { kind, ip: rest[0] } : { kind, name: rest[0] };
      try {
        out.push(
          validateMapping({ protocol: proto, host, hostPort, guestIp: value[0], guestPort: value[1] }),
        );
      } catch {
        // Not one of ours (written by hand with another protocol, say): not reported as a mapping.
      }
    }
  }
  return out;
}

/**
 * Reads the guest side out of `get element` text output, e.g.
 * `elements = { tcp . "uplink0" . 8080 : 10.200.0.2 . 80 }` → `10.200.0.2:80`.
 * (nft 1.0.6 prints `get element` as text even with JSON output on.)
 * @returns `ip:port`, or undefined when the text holds no element.
 */
export function parseElementValue(text: string): string | undefined {
  const m = /:\s*(\d{1,3}(?:\.\d{1,3}){3})\s*\.\s*(\d{1,5})\s*[,}]/.exec(text);
  return m ? `${m[1]}:${m[2]}` : undefined;
}
