/**
 * Our one nftables table, rendered as nft command text (pure). Every text here is one buffer for
 * `nft_run_cmd_from_buffer` / `nft -f -`, which nftables applies as one atomic transaction: all of it
 * or nothing (nft(8), "-f"; libnftables(3)).
 *
 * The table `ip <name>` has two parts:
 * - the port-mapping skeleton (maps pm_any / pm_addr / pm_iif and the NAT chains that read them),
 *   which a port mapping ensures on its own, bootstrapped or not;
 * - the bootstrap part for a guest subnet (forwarding policy, masquerade, guest → host guard).
 * Each part's chains are created with `add` (a no-op when they exist) and then flushed and refilled in
 * the same transaction, so applying a text again leaves exactly one copy of every rule, and map
 * elements (the port mappings) are never touched by either.
 *
 * Only validated values reach the text: names through validateIfName / {@link validateTableName},
 * addresses through validateIPv4 / parseCidr, ports and protocols through their validators.
 */
import { DEFAULT_SUBNET } from "../core/defaults.js";
import { ValidationError } from "../core/errors.js";
import {
  type Cidr,
  cidrContains,
  describe,
  type Protocol,
  parseCidr,
  validateArray,
  validateIPv4,
  validatePort,
  validateProtocol,
} from "../core/validate.js";
import { type AllowEntry, normalizeElements, POLICY_SETS, parseAllowEntry } from "./guest-policy.js";
import { MAP_NAMES, type Mapping, mapOf, validateMapping } from "./mapping.js";

/** Default name of our table (family `ip`). */
export const DEFAULT_TABLE = "microvm_net";

/** Default guest subnet. */
export { DEFAULT_SUBNET };

/**
 * Destinations guests may not reach by default: the RFC 1918 private ranges, RFC 3927 link-local
 * (cloud metadata services such as 169.254.169.254), RFC 6598 shared address space 100.64.0.0/10
 * (carrier-grade NAT, and some clouds' metadata and internal services, e.g. Alibaba's
 * 100.100.100.200) and RFC 1122 loopback 127.0.0.0/8 (also dropped at raw priority, see
 * renderSkeleton; listed here so the forward policy states it on its own).
 */
export const DEFAULT_BLOCKED_DESTINATIONS: readonly string[] = [
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "169.254.0.0/16",
  "100.64.0.0/10",
  "127.0.0.0/8",
];

/** Port of DNS (RFC 1035 §4.2), over UDP and TCP. */
export const DNS_PORT = 53;

/** Chains of the port-mapping skeleton. */
export const SKELETON_CHAINS = ["nat_prerouting", "nat_output", "nat_postrouting", "raw_prerouting"] as const;

/**
 * Regular chains of the bootstrap part: the verdicts for a guest's forwarded packets, for forwarded
 * packets to a guest, and for a guest's packets to the host itself (see {@link renderBootstrap}).
 */
export const GUEST_CHAINS = {
  fromGuest: "from_guest",
  toGuest: "to_guest",
  toHost: "guest_to_host",
} as const;

/** Chains of the bootstrap part (base chains, then the regular chains they jump to). */
export const BOOTSTRAP_CHAINS = [
  "guest_prerouting",
  "guest_forward",
  "guest_input",
  "guest_postrouting",
  GUEST_CHAINS.fromGuest,
  GUEST_CHAINS.toGuest,
  GUEST_CHAINS.toHost,
] as const;

/** Interface group (IFLA_GROUP) our TAPs join by default: "mv" in ASCII. */
export const DEFAULT_TAP_GROUP = 0x6d76;

const TABLE_RE = /^[A-Za-z][A-Za-z0-9_]*$/;
const TABLE_MAX = 64;

/**
 * Checks a table name: a letter, then letters, digits or `_`, at most 64 characters (nft's own limit
 * is 255; nft's scanner also reads `-`, `.` and `/`, which we refuse to keep the text unambiguous).
 * @throws ValidationError (field `table`, code `ERR_INVALID_NAME`).
 */
export function validateTableName(name: unknown): string {
  if (typeof name !== "string" || name.length > TABLE_MAX || !TABLE_RE.test(name)) {
    throw new ValidationError(
      "table",
      `${describe(name)} is not a table name (a letter, then letters, digits or "_", at most ${TABLE_MAX})`,
      "ERR_INVALID_NAME",
    );
  }
  return name;
}

/** A port on the host that guests may reach (see {@link BootstrapSpec.guestToHost}). */
export interface HostPort {
  protocol: Protocol;
  port: number;
}

/** What {@link renderBootstrap} needs; every field has a default. */
export interface BootstrapSpec {
  /** Table name. Default {@link DEFAULT_TABLE}. */
  table?: string;
  /** Guest subnet, IPv4 CIDR (host bits ignored). Default {@link DEFAULT_SUBNET}. */
  subnet?: string;
  /**
   * Destinations guests may not reach through the host (CIDRs). Default
   * {@link DEFAULT_BLOCKED_DESTINATIONS}. The subnet itself (guest ↔ guest) is always blocked,
   * except through a published port.
   */
  blockedDestinations?: readonly string[];
  /**
   * Exceptions to `blockedDestinations` for every guest: entries `<address or CIDR>[:<port>[-<port>]][/<tcp|udp>]`
   * (see {@link AllowEntry}), e.g. `192.168.1.0/24` or `169.254.169.254:80/tcp`. Default none.
   */
  allowedDestinations?: readonly AllowEntry[];
  /**
   * The DNS resolvers configured for guests (IPv4 addresses). Guests may reach them on udp/tcp 53
   * even inside a blocked range or on the host itself (a resolver that is one of the host's own
   * addresses, e.g. the TAPs' host address). Default none.
   */
  dns?: readonly string[];
  /**
   * Host services guests may open (protocol, port), on any host address. Default none: a guest's
   * new connection to the host itself is rejected (ICMP echo is allowed, for diagnosis).
   */
  guestToHost?: readonly HostPort[];
  /**
   * Interface group of our TAPs (0–2^32-1). Packets arriving on a link of this group are guest
   * packets whatever source address they claim. Default {@link DEFAULT_TAP_GROUP}.
   */
  tapGroup?: number;
}

/** `o[key]` when `o` is an object, else undefined (the validator then names the entry). */
function prop(o: unknown, key: string): unknown {
  return typeof o === "object" && o !== null ? (o as Record<string, unknown>)[key] : undefined;
}

function table(t: string): string {
  return `ip ${validateTableName(t)}`;
}

function cidrText(c: Cidr): string {
  return c.prefix === 32 ? c.network : `${c.network}/${c.prefix}`;
}

/**
 * Parses and normalises CIDRs for an anonymous interval set: nft refuses overlapping intervals, and
 * CIDRs either nest or are disjoint, so entries inside another entry are dropped.
 */
function cidrSet(values: readonly string[], field: string): string[] {
  validateArray(values, field);
  const cidrs = values.map((v, i) => parseCidr(v, `${field}[${i}]`));
  const kept = cidrs.filter(
    (c, i) =>
      !cidrs.some(
        (o, j) =>
          j !== i && o.prefix <= c.prefix && cidrContains(o, c.network) && (o.prefix < c.prefix || j < i), // of two equal entries keep the first
      ),
  );
  return kept.map(cidrText);
}

/** Key of the per-guest allow sets: guest . destination . protocol . port (see guest-policy.ts). */
const POLICY_KEY = "ipv4_addr . ipv4_addr . inet_proto . inet_service";

function setText(items: readonly string[]): string {
  return `{ ${items.join(", ")} }`;
}

/**
 * The port-mapping skeleton: three maps keyed by protocol (value `guest ip . guest port`) and the
 * chains that DNAT through them; also the six per-guest policy sets (guest-policy.ts), empty, so a
 * guest's policy can be written whether or not the host is bootstrapped (only the bootstrap part's
 * rules read them).
 *
 * - nat_prerouting (dstnat): all three maps only catch packets the host would deliver locally (`fib
 *   daddr type local`), so transit traffic to the same port elsewhere is never touched — also for a
 *   `pm_addr` key naming an address that is not the host's (it would otherwise hijack guests'
 *   traffic to that remote address); `pm_addr` then matches the destination address itself.
 * - nat_output (-100, the dstnat value; nft 1.0.6 accepts the name only in prerouting): the host
 *   reaches published ports through its own addresses, 127.0.0.1 included (loopback is local);
 *   likewise only local destinations are translated.
 * - nat_postrouting (srcnat): a DNATed packet from 127/8 gets a real source address, else the guest
 *   could not answer (the TAP also needs route_localnet, set by the caller: net/ipv4/route.c refuses a
 *   loopback source on another device without it).
 * - raw_prerouting (raw, before conntrack and NAT): 127/8 arriving on anything but lo is dropped, so
 *   loopback-published ports are never reachable from outside (CVE-2020-8558 class). Replies to the
 *   host's own 127.0.0.1 connections arrive as the guest's address and are de-NATed later, so they pass.
 *
 * @returns nft command text, one transaction; applying it again changes nothing but the rule handles.
 * @throws ValidationError for a bad table name.
 */
export function renderSkeleton(tableName: string = DEFAULT_TABLE): string {
  const t = table(tableName);
  const value = "ipv4_addr . inet_service";
  const l4 = "meta l4proto { tcp, udp }";
  const lines = [
    `add table ${t}`,
    `add map ${t} ${MAP_NAMES.any} { type inet_proto . inet_service : ${value}; }`,
    `add map ${t} ${MAP_NAMES.address} { type inet_proto . ipv4_addr . inet_service : ${value}; }`,
    `add map ${t} ${MAP_NAMES.interface} { type inet_proto . ifname . inet_service : ${value}; }`,
    `add set ${t} ${POLICY_SETS.allowExact} { type ${POLICY_KEY}; }`,
    `add set ${t} ${POLICY_SETS.allow} { type ${POLICY_KEY}; flags interval; }`,
    `add set ${t} ${POLICY_SETS.hostExact} { type ${POLICY_KEY}; }`,
    `add set ${t} ${POLICY_SETS.host} { type ${POLICY_KEY}; flags interval; }`,
    `add set ${t} ${POLICY_SETS.bound} { type iface_index; }`,
    `add set ${t} ${POLICY_SETS.mac} { type iface_index . ether_addr . ipv4_addr; }`,
    `add chain ${t} nat_prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `add chain ${t} nat_output { type nat hook output priority -100; policy accept; }`,
    `add chain ${t} nat_postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `add chain ${t} raw_prerouting { type filter hook prerouting priority raw; policy accept; }`,
    `flush chain ${t} nat_prerouting`,
    `add rule ${t} nat_prerouting ${l4} fib daddr type local dnat ip to meta l4proto . ip daddr . th dport map @${MAP_NAMES.address}`,
    `add rule ${t} nat_prerouting ${l4} fib daddr type local dnat ip to meta l4proto . iifname . th dport map @${MAP_NAMES.interface}`,
    `add rule ${t} nat_prerouting ${l4} fib daddr type local dnat ip to meta l4proto . th dport map @${MAP_NAMES.any}`,
    `flush chain ${t} nat_output`,
    `add rule ${t} nat_output ${l4} fib daddr type local dnat ip to meta l4proto . ip daddr . th dport map @${MAP_NAMES.address}`,
    `add rule ${t} nat_output ${l4} fib daddr type local dnat ip to meta l4proto . th dport map @${MAP_NAMES.any}`,
    `flush chain ${t} nat_postrouting`,
    `add rule ${t} nat_postrouting ip saddr 127.0.0.0/8 ct status dnat masquerade`,
    `flush chain ${t} raw_prerouting`,
    `add rule ${t} raw_prerouting iifname != "lo" ip daddr 127.0.0.0/8 drop`,
  ];
  return `${lines.join("\n")}\n`;
}

/**
 * The whole table for guest subnet S: the skeleton plus
 * - guest_prerouting (filter, mangle priority, before routing): anti-spoofing. A packet from one of
 *   our TAPs (interface group `tapGroup`) must pass a strict reverse-path check (its source routes
 *   back through the same TAP: RFC 3704 strict RPF, nft's `fib saddr . iif oif missing drop` idiom);
 *   with a /32 peer per TAP a guest can use only its own address. On a TAP bound in `tap_bound`, the
 *   frame must also carry the bound source MAC and guest address (`tap_mac`). ARP is not seen by an
 *   `ip` table and needs no guard here: the host's entry for each guest is a permanent neighbour
 *   entry (ARP cannot overwrite it, net/ipv4/arp.c arp_process → neigh_update refuses NUD_PERMANENT
 *   without NEIGH_UPDATE_F_ADMIN), each TAP is point-to-point to one guest, and an entry a guest
 *   plants for another address on its own TAP is never used, since the route to that address leads
 *   through another TAP; a guest can only lie to itself.
 *
 * A guest is a packet that arrives on a link of group `tapGroup` (any address: a TAP made with its
 * own CIDR or a point-to-point peer outside S is isolated all the same) or comes from S; traffic to
 * a guest leaves by a link of that group or goes to S. Both forms are kept: the subnet form covers
 * a TAP while it sits outside the group (HostNetwork.detachMany moves TAPs to a batch group before
 * deleting them), the group form every guest address outside S.
 * - guest_forward (filter): replies pass (policy accept: accepting other established traffic here
 *   changes nothing); a guest's packets jump to from_guest, packets to a guest to to_guest.
 * - from_guest: DNATed traffic to a guest passes (published ports, also guest → published port of
 *   another guest); destinations allowed for every guest (`allowedDestinations`), for one guest
 *   (set `guest_allow`, keyed on the guest's address) and the DNS resolvers on udp/tcp 53 pass;
 *   guest → guest and guest → blocked destinations are dropped; anything else passes (no uplink
 *   named, so egress keeps working when the default route moves).
 * - to_guest: new connections from elsewhere are dropped unless DNATed, so a guest is reachable from
 *   outside only through a published port, even by a neighbour that routes its address via the host.
 * - guest_input (filter) → guest_to_host: a guest reaches the host itself only for replies, ICMP
 *   echo, the `guestToHost` ports, DNS to a resolver that is a host address, and its own
 *   `guest_host` elements; any other new TCP connection gets a RST at once and anything else an
 *   ICMP port unreachable (a guest must not reach host services bound to 0.0.0.0, and must not wait
 *   for a timeout to learn it).
 * - guest_postrouting (srcnat): a guest's packet to a non-guest is masqueraded, whichever interface
 *   it leaves by; so is a guest's connection to a published port that leads back to a guest. The
 *   input device is known here for forwarded packets (net/ipv4/ip_output.c ip_output passes
 *   `skb->dev` as the hook's `in`), so `meta iifgroup` matches in postrouting.
 *
 * Hairpin (a guest reaching a published port through a host address — the TAP's host address, the
 * uplink's, or 127.0.0.1 is never one: a guest's 127/8 stays in the guest) works by default, towards
 * another guest and towards itself: nat_prerouting DNATs it (the address is local), from_guest
 * accepts it as DNATed, and guest_postrouting masquerades it to the TAP's host address — without
 * that a guest reaching its own published port would get a packet from its own address, which it
 * drops as martian. A port published on one address answers only packets to that address; the other
 * ports of the host stay refused as above.
 *
 * An `accept` here does not override a `drop` in another table or in iptables (each base chain is
 * judged on its own), so the host's own firewall must let guest traffic through as well.
 *
 * @returns nft command text, one transaction, idempotent: map and set elements (port mappings,
 *   per-guest policies) survive it.
 * @throws ValidationError for a bad table name, subnet, destination, resolver or host port (nothing
 *   rendered).
 */
export function renderBootstrap(spec: BootstrapSpec = {}): string {
  const tableName = spec.table ?? DEFAULT_TABLE;
  const t = table(tableName);
  const s = cidrText(parseCidr(spec.subnet ?? DEFAULT_SUBNET, "subnet"));
  const blocked = cidrSet(spec.blockedDestinations ?? DEFAULT_BLOCKED_DESTINATIONS, "blockedDestinations");
  const allowIn = spec.allowedDestinations ?? [];
  if (!Array.isArray(allowIn)) throw new ValidationError("allowedDestinations", "must be an array");
  const allowEls = normalizeElements(
    allowIn.flatMap((e, i) => parseAllowEntry(e, `allowedDestinations[${i}]`)),
    "allowedDestinations",
  );
  const allowed = allowEls.filter((e) => e.protocol === "any").map((e) => e.cidr);
  const allowedPorts = allowEls.filter((e) => e.protocol !== "any");
  const dnsIn = spec.dns ?? [];
  if (!Array.isArray(dnsIn)) throw new ValidationError("dns", "must be an array of IPv4 addresses");
  const dns = [...new Set(dnsIn.map((d, i) => validateIPv4(d, `dns[${i}]`)))];
  const hostPorts = validateArray(spec.guestToHost ?? [], "guestToHost").map((p: unknown, i) => ({
    protocol: validateProtocol(prop(p, "protocol"), `guestToHost[${i}].protocol`),
    port: validatePort(prop(p, "port"), `guestToHost[${i}].port`),
  }));

  const group = spec.tapGroup ?? DEFAULT_TAP_GROUP;
  if (!Number.isInteger(group) || group < 0 || group > 0xffffffff) {
    throw new ValidationError("tapGroup", `${describe(group)} is not an interface group in 0-4294967295`);
  }

  const perGuest = "ip saddr . ip daddr . meta l4proto . th dport";
  const dnsMatch =
    dns.length > 0 ? `ip daddr ${setText(dns)} meta l4proto { tcp, udp } th dport ${DNS_PORT}` : undefined;
  const fwd = `add rule ${t} ${GUEST_CHAINS.fromGuest}`;
  const toG = `add rule ${t} ${GUEST_CHAINS.toGuest}`;
  const host = `add rule ${t} ${GUEST_CHAINS.toHost}`;
  const lines = [
    renderSkeleton(tableName).trimEnd(),
    `add chain ${t} guest_prerouting { type filter hook prerouting priority mangle; policy accept; }`,
    `flush chain ${t} guest_prerouting`,
    `add rule ${t} guest_prerouting meta iifgroup ${group} fib saddr . iif oif missing drop`,
    `add rule ${t} guest_prerouting meta iifgroup ${group} iif @${POLICY_SETS.bound} iif . ether saddr . ip saddr != @${POLICY_SETS.mac} drop`,
    `add chain ${t} guest_forward { type filter hook forward priority filter; policy accept; }`,
    `add chain ${t} guest_input { type filter hook input priority filter; policy accept; }`,
    `add chain ${t} guest_postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `add chain ${t} ${GUEST_CHAINS.fromGuest}`,
    `add chain ${t} ${GUEST_CHAINS.toGuest}`,
    `add chain ${t} ${GUEST_CHAINS.toHost}`,
    // The base chains first: a regular chain can be flushed while a rule still jumps to it.
    `flush chain ${t} guest_forward`,
    `flush chain ${t} guest_input`,
    `flush chain ${t} guest_postrouting`,
    `flush chain ${t} ${GUEST_CHAINS.fromGuest}`,
    `flush chain ${t} ${GUEST_CHAINS.toGuest}`,
    `flush chain ${t} ${GUEST_CHAINS.toHost}`,
    // Policy accept: accepting other established traffic here changes nothing.
    `add rule ${t} guest_forward ct state established,related accept`,
    `add rule ${t} guest_forward meta iifgroup ${group} jump ${GUEST_CHAINS.fromGuest}`,
    `add rule ${t} guest_forward ip saddr ${s} jump ${GUEST_CHAINS.fromGuest}`,
    `add rule ${t} guest_forward meta oifgroup ${group} jump ${GUEST_CHAINS.toGuest}`,
    `add rule ${t} guest_forward ip daddr ${s} jump ${GUEST_CHAINS.toGuest}`,
    `${fwd} ct status dnat meta oifgroup ${group} accept`,
    `${fwd} ct status dnat ip daddr ${s} accept`,
  ];
  if (allowed.length > 0) {
    lines.push(`${fwd} ip daddr ${setText(allowed.map(shortCidr))} accept`);
  }
  for (const e of allowedPorts) {
    const ports = e.ports.start === e.ports.end ? `${e.ports.start}` : `${e.ports.start}-${e.ports.end}`;
    lines.push(`${fwd} ip daddr ${shortCidr(e.cidr)} ${e.protocol} dport ${ports} accept`);
  }
  if (dnsMatch) lines.push(`${fwd} ${dnsMatch} accept`);
  lines.push(
    `${fwd} ${perGuest} @${POLICY_SETS.allowExact} accept`,
    `${fwd} ${perGuest} @${POLICY_SETS.allow} accept`,
    `${fwd} meta oifgroup ${group} drop`,
    `${fwd} ip daddr ${s} drop`,
  );
  if (blocked.length > 0) lines.push(`${fwd} ip daddr ${setText(blocked)} drop`);
  lines.push(
    `${fwd} accept`,
    `${toG} ct status dnat accept`,
    `${toG} drop`,
    `add rule ${t} guest_input meta iifgroup ${group} jump ${GUEST_CHAINS.toHost}`,
    `add rule ${t} guest_input ip saddr ${s} jump ${GUEST_CHAINS.toHost}`,
    `${host} ct state established,related accept`,
    `${host} icmp type echo-request accept`,
  );
  for (const proto of ["tcp", "udp"] as const) {
    const ports = [...new Set(hostPorts.filter((p) => p.protocol === proto).map((p) => p.port))];
    if (ports.length > 0) lines.push(`${host} ${proto} dport ${setText(ports.map(String))} accept`);
  }
  if (dnsMatch) lines.push(`${host} ${dnsMatch} accept`);
  lines.push(
    `${host} ${perGuest} @${POLICY_SETS.hostExact} accept`,
    `${host} ${perGuest} @${POLICY_SETS.host} accept`,
    `${host} meta l4proto tcp reject with tcp reset`,
    `${host} reject`,
    `add rule ${t} guest_postrouting ip saddr ${s} ip daddr != ${s} masquerade`,
    `add rule ${t} guest_postrouting meta iifgroup ${group} meta oifgroup != ${group} ip daddr != ${s} masquerade`,
    `add rule ${t} guest_postrouting ip saddr ${s} ct status dnat masquerade`,
    `add rule ${t} guest_postrouting meta iifgroup ${group} ct status dnat masquerade`,
  );
  return `${lines.join("\n")}\n`;
}

/** `a.b.c.d/32` → `a.b.c.d`, as nft prints a single address. */
function shortCidr(c: string): string {
  return c.endsWith("/32") ? c.slice(0, -3) : c;
}

/**
 * Deletes the whole table (rules and port mappings) in one transaction. The leading `add table`
 * makes it succeed when the table is absent, without a list-then-delete race.
 * @throws ValidationError for a bad table name.
 */
export function renderTeardown(tableName: string = DEFAULT_TABLE): string {
  const t = table(tableName);
  return `add table ${t}\ndelete table ${t}\n`;
}

function keyText(m: Mapping): string {
  switch (m.host.kind) {
    case "any":
      return `${m.protocol} . ${m.hostPort}`;
    case "address":
      return `${m.protocol} . ${m.host.ip} . ${m.hostPort}`;
    case "interface":
      // validateIfName allows only [A-Za-z0-9_.-], so the quotes cannot be escaped from.
      return `${m.protocol} . "${m.host.name}" . ${m.hostPort}`;
  }
}

function elementText(m: Mapping): string {
  return `{ ${keyText(m)} : ${m.guestIp} . ${m.guestPort} }`;
}

/**
 * `create element`: adds the mapping, failing with "File exists" when its key (protocol, host side,
 * host port) is already in the map, whatever guest it leads to (NLM_F_EXCL; nft(8) "create").
 * @throws ValidationError for a bad table name or mapping.
 */
export function renderCreateElement(tableName: string, mapping: Mapping): string {
  const m = validateMapping(mapping);
  return `create element ${table(tableName)} ${mapOf(m.host)} ${elementText(m)}\n`;
}

/**
 * `add element`: adds the mapping; a no-op when exactly this element exists, "File exists" when its key
 * leads to another guest (the kernel compares the data of an existing element,
 * net/netfilter/nf_tables_api.c nft_add_set_elem).
 * @throws ValidationError for a bad table name or mapping.
 */
export function renderAddElement(tableName: string, mapping: Mapping): string {
  const m = validateMapping(mapping);
  return `add element ${table(tableName)} ${mapOf(m.host)} ${elementText(m)}\n`;
}

/**
 * Succeeds — changing nothing — only when the mapping's key is absent: the `create` fails with "File
 * exists" for any existing element of that key, which aborts the transaction.
 * @throws ValidationError for a bad table name or mapping.
 */
export function renderProbeAbsent(tableName: string, mapping: Mapping): string {
  const m = validateMapping(mapping);
  const t = table(tableName);
  const map = mapOf(m.host);
  return `create element ${t} ${map} ${elementText(m)}\ndelete element ${t} ${map} { ${keyText(m)} }\n`;
}

/**
 * Removes the mapping only when its key leads to exactly this guest, atomically: the `add` is a no-op
 * for an identical element and fails with "File exists" when the key leads elsewhere (the kernel
 * compares the data of an existing element, net/netfilter/nf_tables_api.c nft_add_set_elem), which
 * aborts the whole transaction; for an absent key the element is added and deleted in one step.
 * @throws ValidationError for a bad table name or mapping.
 */
export function renderRemoveElement(tableName: string, mapping: Mapping): string {
  const m = validateMapping(mapping);
  const t = table(tableName);
  const map = mapOf(m.host);
  return `add element ${t} ${map} ${elementText(m)}\ndelete element ${t} ${map} { ${keyText(m)} }\n`;
}

/**
 * `get element` for the mapping's key; nft prints the element (text) or fails with "No such file or
 * directory" when the key or the map is absent. nft 1.0.6 loads the whole map to answer it after
 * any change, so it costs O(mappings).
 * @throws ValidationError for a bad table name or mapping.
 */
export function renderGetElement(tableName: string, mapping: Mapping): string {
  const m = validateMapping(mapping);
  return `get element ${table(tableName)} ${mapOf(m.host)} { ${keyText(m)} }\n`;
}

/**
 * `list table` (to be run with JSON output): the maps with their elements, and the chains.
 * @throws ValidationError for a bad table name.
 */
export function renderListTable(tableName: string = DEFAULT_TABLE): string {
  return `list table ${table(tableName)}\n`;
}
