/**
 * What a VM's record (store/host-state.ts) stands for in the kernel: its port mappings, its per-guest
 * policy, the keys its mappings and port holds are compared by.
 */
import { buildPolicy, type GuestPolicySpec } from "../firewall/guest-policy.js";
import type { HostMatch, HostPort, Mapping } from "../firewall/index.js";
import { coversLoopback } from "../firewall/mapping.js";
import type { PortRecord, VmRecord } from "../store/host-state.js";
import { ANY_HOST } from "./publish.js";

/** Key of a held port socket in a VM's holds: protocol, host address and host port. */
export function holdKey(p: { protocol: string; hostIp: string; hostPort: number }): string {
  return `${p.protocol} ${p.hostIp} ${p.hostPort}`;
}

/** Which host addresses a recorded port is published on, as a mapping (firewall/) matches them. */
function hostMatchOf(p: PortRecord): HostMatch {
  return p.hostIp === ANY_HOST ? { kind: "any" } : { kind: "address", ip: p.hostIp };
}

/** The port mapping (firewall/) of a recorded port of the guest at `guestIp`. */
export function toMapping(guestIp: string, p: PortRecord): Mapping {
  return {
    protocol: p.protocol,
    host: hostMatchOf(p),
    hostPort: p.hostPort,
    guestIp,
    guestPort: p.guestPort,
  };
}

/** A mapping as text that identifies it, for comparing recorded and present mappings. */
export function mappingKey(m: Mapping): string {
  const host = m.host.kind === "any" ? "*" : m.host.kind === "address" ? m.host.ip : `%${m.host.name}`;
  return `${m.protocol} ${host} ${m.hostPort} ${m.guestIp} ${m.guestPort}`;
}

/**
 * The per-guest policy of a VM: its `allow` and `hostPorts` (from its stored request), its resolvers,
 * and — when its TAP's index is known — the binding of its MAC to that TAP.
 */
export function policyOf(rec: VmRecord, tapIndex: number | undefined): GuestPolicySpec {
  let stored: { allow?: string[]; hostPorts?: HostPort[] } = {};
  try {
    stored = JSON.parse(rec.request) as typeof stored;
  } catch {
    // A request that is not JSON (never written by us): no allow-list.
  }
  return buildPolicy(rec.guestIp, {
    allow: stored.allow ?? [],
    hostPorts: stored.hostPorts ?? [],
    dns: rec.dns,
    ...(tapIndex !== undefined ? { bind: { tap: tapIndex, mac: rec.guestMac } } : {}),
  });
}

/**
 * True when the host reaches the port through 127.0.0.1, which needs route_localnet on the TAP
 * (the rule of firewall/mapping.ts coversLoopback).
 */
export function portCoversLoopback(p: PortRecord): boolean {
  return coversLoopback(hostMatchOf(p));
}
