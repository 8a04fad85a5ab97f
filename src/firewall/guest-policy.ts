/**
 * Per-guest policy as elements of six named sets of our table (pure rendering and parsing). A
 * guest's policy is a handful of elements keyed by its address, and a packet pays one set lookup per
 * rule however many guests have a policy.
 *
 * - `guest_allow_exact` (`guest . destination . protocol . port`, a hash) and `guest_allow` (the
 *   same with a destination CIDR and a port range, `flags interval`): destinations this guest may
 *   reach through the host, even inside the blocked ranges (read in guest_forward).
 * - `guest_host_exact` / `guest_host` (same shapes; destination = a host address, or 0.0.0.0/0 for
 *   "any of the host's"): services of the host itself this guest may open (read in guest_input).
 *   One address, one protocol and one port — a resolver, a metadata port — go to the hash sets, whose
 *   insert cost stays flat (measured: 0.15 ms a transaction at 10 000 guests); the rest to the
 *   interval sets (nft_set_pipapo), whose insert rebuilds its lookup tables and grows with the set
 *   (measured: 0.3 ms at 0, ~1 ms at 10 000 guests of two elements each).
 * - `tap_bound` (`iface_index`) and `tap_mac` (`iface_index . ether_addr . ipv4_addr`): a frame
 *   arriving on a bound TAP passes only with the bound source MAC and guest address (read in
 *   guest_prerouting). Keyed by interface index, not name: the kernel never hands an index out again
 *   in a namespace (dev_index_reserve, net/core/dev.c, counts up), so an element left behind by a
 *   deleted TAP can never match a new TAP that takes its name.
 *
 * "Any protocol, any port" is the interval `0-255 . 0-65535`: for ICMP and other protocols
 * `th dport` reads two bytes of their header, which the full port interval matches whatever they are.
 * Elements of one guest must not overlap (the kernel refuses with EEXIST, nft_pipapo_insert), so
 * {@link normalizeElements} drops entries another entry covers and refuses partial overlaps.
 */
import { ValidationError } from "../core/errors.js";
import {
  type Cidr,
  IPPROTO,
  intToIPv4,
  ipv4ToInt,
  type Protocol,
  parseCidr,
  prefixMask,
  validateIfName,
  validateIPv4,
  validateMac,
  validatePort,
  validateProtocol,
} from "../core/validate.js";
import {
  type ElemChange,
  type ElemField,
  NFPROTO_IPV4,
  type SetElem,
  type SetRef,
} from "../kernel/nftnl/index.js";
// ruleset.ts imports this module too; only functions cross, called after both are loaded.
import { validateTableName } from "./ruleset.js";

/** Names of the per-guest sets (see the module comment). */
export const POLICY_SETS = {
  allowExact: "guest_allow_exact",
  allow: "guest_allow",
  hostExact: "guest_host_exact",
  host: "guest_host",
  bound: "tap_bound",
  mac: "tap_mac",
} as const;

/** An inclusive port range, 0–65535 (0 only as the start of "all ports"). */
export interface PortSpan {
  start: number;
  end: number;
}

/** All ports: what an entry without a port means. */
export const ALL_PORTS: PortSpan = { start: 0, end: 65535 };

/**
 * One normalised policy element for one guest: a destination CIDR, a protocol (`any` = every IP
 * protocol, then always with {@link ALL_PORTS}) and a port range.
 */
export interface PolicyElement {
  /** `a.b.c.d/n` with host bits cleared. */
  cidr: string;
  protocol: Protocol | "any";
  ports: PortSpan;
}

/**
 * An allow-list entry as a caller writes it: text `<address or CIDR>[:<port>[-<port>]][/<tcp|udp>]`,
 * e.g. `169.254.169.254`, `169.254.169.254:80/tcp`, `10.0.0.0/8:53/udp`, `192.0.2.0/24:8000-8010`
 * (a port without a protocol means tcp and udp; a protocol without a port means all its ports) —
 * or the same as an object.
 */
export type AllowEntry = string | { cidr: string; protocol?: string; port?: number | PortSpan };

const ENTRY_RE =
  /^(\d{1,3}(?:\.\d{1,3}){3})(?:\/(\d{1,2}))?(?::(\d{1,5})(?:-(\d{1,5}))?)?(?:\/([A-Za-z]+))?$/;

function cidrText(c: Cidr): string {
  return `${c.network}/${c.prefix}`;
}

function span(v: unknown, field: string): PortSpan {
  if (typeof v === "number") {
    const p = validatePort(v, field);
    return { start: p, end: p };
  }
  if (typeof v !== "object" || v === null) throw new ValidationError(field, "must be a port or {start, end}");
  const r = v as Record<string, unknown>;
  const start = validatePort(r.start, `${field}.start`);
  const end = validatePort(r.end, `${field}.end`);
  if (end < start) throw new ValidationError(field, `range ${start}-${end} is empty`, "ERR_INVALID_PORT");
  return { start, end };
}

/**
 * Parses one allow-list entry into its elements (one, or two for a port without a protocol).
 * @throws ValidationError naming `field` (bad address, prefix, port, range or protocol).
 */
export function parseAllowEntry(entry: unknown, field = "allow"): PolicyElement[] {
  let cidr: Cidr;
  let protocol: Protocol | undefined;
  let ports: PortSpan | undefined;
  if (typeof entry === "string") {
    const m = ENTRY_RE.exec(entry);
    if (!m) {
      throw new ValidationError(
        field,
        `${JSON.stringify(entry)} is not <address or CIDR>[:<port>[-<port>]][/<tcp|udp>]`,
      );
    }
    const ip = validateIPv4(m[1], field);
    cidr = parseCidr(`${ip}/${m[2] ?? "32"}`, field);
    if (m[3] !== undefined) {
      ports = span(m[4] === undefined ? Number(m[3]) : { start: Number(m[3]), end: Number(m[4]) }, field);
    }
    if (m[5] !== undefined) protocol = validateProtocol(m[5], field);
  } else if (typeof entry === "object" && entry !== null && !Array.isArray(entry)) {
    const r = entry as Record<string, unknown>;
    const raw = typeof r.cidr === "string" && !r.cidr.includes("/") ? `${r.cidr}/32` : r.cidr;
    cidr = parseCidr(raw, `${field}.cidr`);
    if (r.protocol !== undefined) protocol = validateProtocol(r.protocol, `${field}.protocol`);
    if (r.port !== undefined) ports = span(r.port, `${field}.port`);
  } else {
    throw new ValidationError(field, "must be an entry text or {cidr, protocol?, port?}");
  }
  const c = cidrText(cidr);
  if (protocol) return [{ cidr: c, protocol, ports: ports ?? ALL_PORTS }];
  if (ports) {
    return [
      { cidr: c, protocol: "tcp", ports },
      { cidr: c, protocol: "udp", ports },
    ];
  }
  return [{ cidr: c, protocol: "any", ports: ALL_PORTS }];
}

/** The text form of an element, as {@link parseAllowEntry} reads it back (`10.0.0.0/8:53/udp`). */
export function elementToEntry(e: PolicyElement): string {
  const addr = e.cidr.endsWith("/32") ? e.cidr.slice(0, -3) : e.cidr;
  if (e.protocol === "any") return addr;
  const all = e.ports.start === ALL_PORTS.start && e.ports.end === ALL_PORTS.end;
  const port = all
    ? ""
    : e.ports.start === e.ports.end
      ? `:${e.ports.start}`
      : `:${e.ports.start}-${e.ports.end}`;
  return `${addr}${port}/${e.protocol}`;
}

function range(c: string): [number, number] {
  const [net, len] = c.split("/");
  const lo = ipv4ToInt(net as string);
  return [lo, lo + (2 ** (32 - Number(len)) - 1)];
}

function within(a: [number, number], b: [number, number]): boolean {
  return a[0] >= b[0] && a[1] <= b[1];
}

function apart(a: [number, number], b: [number, number]): boolean {
  return a[1] < b[0] || b[1] < a[0];
}

function protoSpan(p: PolicyElement["protocol"]): [number, number] {
  return p === "any" ? [0, 255] : p === "tcp" ? [6, 6] : [17, 17];
}

/** True when `a` covers every packet `b` covers. */
function covers(a: PolicyElement, b: PolicyElement): boolean {
  return (
    within(range(b.cidr), range(a.cidr)) &&
    within(protoSpan(b.protocol), protoSpan(a.protocol)) &&
    within([b.ports.start, b.ports.end], [a.ports.start, a.ports.end])
  );
}

function disjoint(a: PolicyElement, b: PolicyElement): boolean {
  return (
    apart(range(a.cidr), range(b.cidr)) ||
    apart(protoSpan(a.protocol), protoSpan(b.protocol)) ||
    apart([a.ports.start, a.ports.end], [b.ports.start, b.ports.end])
  );
}

/**
 * Drops elements another element covers (keeping the first of equal ones) and refuses partial
 * overlaps, which the kernel would refuse (EEXIST) in an interval set.
 * @throws ValidationError (field `field`) naming the two overlapping entries.
 */
export function normalizeElements(els: readonly PolicyElement[], field = "allow"): PolicyElement[] {
  const kept: PolicyElement[] = [];
  els.forEach((e, i) => {
    const dominated = els.some((o, j) => j !== i && covers(o, e) && (!covers(e, o) || j < i));
    if (!dominated) kept.push(e);
  });
  for (let i = 0; i < kept.length; i++) {
    for (let j = i + 1; j < kept.length; j++) {
      const a = kept[i] as PolicyElement;
      const b = kept[j] as PolicyElement;
      if (!disjoint(a, b)) {
        throw new ValidationError(
          field,
          `entries ${elementToEntry(a)} and ${elementToEntry(b)} overlap without one holding the other`,
        );
      }
    }
  }
  return kept;
}

/** A TAP binding: frames on this TAP must come from `mac` and the guest's address. */
export interface TapBinding {
  /** Interface index (preferred: immune to name reuse) or, as nft lists it, a name. */
  tap: number | string;
  /** Lower-case `aa:bb:cc:dd:ee:ff`. */
  mac: string;
}

/** One guest's policy, normalised: what {@link renderPolicyAdd} turns into set elements. */
export interface GuestPolicySpec {
  guestIp: string;
  /** Destinations through the host (guest_allow). */
  allow: PolicyElement[];
  /** Services of the host itself (guest_host); `0.0.0.0/0` = on any host address. */
  host: PolicyElement[];
  bind?: TapBinding;
  /**
   * Further bindings of the same guest found in the kernel (a TAP made again has a new index, and
   * the old element stays until removed). Rendered like `bind`.
   */
  extraBinds?: TapBinding[];
}

/** Interface index 1–2^31-1. @throws ValidationError. */
export function validateIfIndex(value: unknown, field = "tap"): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 0x7fffffff) {
    throw new ValidationError(field, `${String(value)} is not an interface index`);
  }
  return value;
}

/** One address, one protocol, one port: an element of a hash set. */
function isExact(e: PolicyElement): boolean {
  return e.cidr.endsWith("/32") && e.protocol !== "any" && e.ports.start === e.ports.end;
}

function elemText(guestIp: string, e: PolicyElement): string {
  if (isExact(e)) return `${guestIp} . ${e.cidr.slice(0, -3)} . ${e.protocol} . ${e.ports.start}`;
  const proto = e.protocol === "any" ? "0-255" : e.protocol;
  const ports = e.ports.start === e.ports.end ? `${e.ports.start}` : `${e.ports.start}-${e.ports.end}`;
  return `${guestIp} . ${e.cidr} . ${proto} . ${ports}`;
}

/**
 * `list set` for each of the six sets, one command per run (JSON output): nft 1.0.6 fails a buffer
 * holding more than one `list` command with ENOENT. What {@link parsePolicies} reads.
 * @throws ValidationError for a bad table name.
 */
export function renderListPolicies(tableName: string): string[] {
  const t = `ip ${validateTableName(tableName)}`;
  return Object.values(POLICY_SETS).map((s) => `list set ${t} ${s}\n`);
}

function tapText(tap: number | string): string {
  // Names come from nft's own listing or validateIfName ([A-Za-z0-9_.-]); quoting keeps them names.
  return typeof tap === "number" ? String(tap) : `"${tap}"`;
}

/** The `set { elements }` pairs of a policy, for the add and remove renderers. */
function elementsOf(p: GuestPolicySpec): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const e of p.allow)
    out.push([isExact(e) ? POLICY_SETS.allowExact : POLICY_SETS.allow, elemText(p.guestIp, e)]);
  for (const e of p.host)
    out.push([isExact(e) ? POLICY_SETS.hostExact : POLICY_SETS.host, elemText(p.guestIp, e)]);
  for (const b of [...(p.bind ? [p.bind] : []), ...(p.extraBinds ?? [])]) {
    out.push([POLICY_SETS.bound, tapText(b.tap)]);
    out.push([POLICY_SETS.mac, `${tapText(b.tap)} . ${b.mac} . ${p.guestIp}`]);
  }
  return out;
}

function group(pairs: ReadonlyArray<[string, string]>): Map<string, string[]> {
  const by = new Map<string, string[]>();
  for (const [set, el] of pairs) {
    const list = by.get(set) ?? [];
    list.push(el);
    by.set(set, list);
  }
  return by;
}

/**
 * `add element` lines for every element of the policy (adding an identical element is a no-op).
 * @param tableName our table (family ip).
 * @returns nft text, empty when the policy has no elements.
 * @throws ValidationError for a bad table name.
 */
export function renderPolicyAdd(tableName: string, p: GuestPolicySpec): string {
  const table = `ip ${validateTableName(tableName)}`;
  let text = "";
  for (const [set, els] of group(elementsOf(p)))
    text += `add element ${table} ${set} { ${els.join(", ")} }\n`;
  return text;
}

/**
 * Removes every element of the policy whether or not it is there: `add` (a no-op when present) then
 * `delete`, so an element already gone does not abort the transaction (nft_del_setelem fails with
 * ENOENT otherwise).
 * @returns nft text, empty when the policy has no elements.
 * @throws ValidationError for a bad table name.
 */
export function renderPolicyRemove(tableName: string, p: GuestPolicySpec): string {
  const table = `ip ${validateTableName(tableName)}`;
  let text = "";
  for (const [set, els] of group(elementsOf(p))) {
    const list = els.join(", ");
    text += `add element ${table} ${set} { ${list} }\ndelete element ${table} ${set} { ${list} }\n`;
  }
  return text;
}

type Json = unknown;

function rec(v: Json): Record<string, Json> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, Json>) : undefined;
}

function jsonCidr(v: Json): string | undefined {
  if (typeof v === "string") return `${v}/32`;
  const p = rec(rec(v)?.prefix);
  if (p && typeof p.addr === "string" && typeof p.len === "number") return `${p.addr}/${p.len}`;
  const r = rec(v)?.range;
  if (Array.isArray(r) && typeof r[0] === "string" && typeof r[1] === "string") {
    // A range nft could not print as a prefix: only ever ours when it is one.
    const lo = ipv4ToInt(r[0]);
    const size = ipv4ToInt(r[1]) - lo + 1;
    const len = 32 - Math.log2(size);
    if (Number.isInteger(len) && (lo & prefixMask(len)) >>> 0 === lo) return `${r[0]}/${len}`;
  }
  return undefined;
}

function jsonSpan(v: Json): [number, number] | undefined {
  if (typeof v === "number") return [v, v];
  const r = rec(v)?.range;
  if (Array.isArray(r) && typeof r[0] === "number" && typeof r[1] === "number") return [r[0], r[1]];
  return undefined;
}

function jsonProto(v: Json): PolicyElement["protocol"] | undefined {
  if (v === "tcp" || v === 6) return "tcp";
  if (v === "udp" || v === 17) return "udp";
  const s = jsonSpan(v);
  return s && s[0] === 0 && s[1] === 255 ? "any" : undefined;
}

/**
 * Every guest's policy read from `nft -j list table` output (libnftables-json(5)), keyed by guest
 * address. The binding comes from `tap_mac` (its `tap_bound` element has the same interface);
 * elements that do not parse as ours are skipped.
 */
export function parsePolicies(json: string | readonly string[]): Map<string, GuestPolicySpec> {
  const items = (typeof json === "string" ? [json] : json).flatMap((j) => {
    const doc = rec(JSON.parse(j));
    return Array.isArray(doc?.nftables) ? doc.nftables : [];
  });
  const out = new Map<string, GuestPolicySpec>();
  const get = (ip: string): GuestPolicySpec => {
    let p = out.get(ip);
    if (!p) {
      p = { guestIp: ip, allow: [], host: [] };
      out.set(ip, p);
    }
    return p;
  };
  for (const item of items) {
    const set = rec(rec(item)?.set);
    if (!set || !Array.isArray(set.elem)) continue;
    for (const raw of set.elem) {
      // Elements with attributes come wrapped as {"elem": {"val": …}}; ours have none.
      const el = rec(raw)?.elem ? rec(rec(raw)?.elem)?.val : raw;
      const parts = rec(el)?.concat;
      if (!Array.isArray(parts)) continue;
      if (set.name === POLICY_SETS.mac) {
        const [tap, mac, ip] = parts;
        if (
          (typeof tap === "string" || typeof tap === "number") &&
          typeof mac === "string" &&
          typeof ip === "string"
        ) {
          const g = get(ip);
          if (!g.bind) g.bind = { tap, mac };
          else g.extraBinds = [...(g.extraBinds ?? []), { tap, mac }];
        }
        continue;
      }
      const forward = set.name === POLICY_SETS.allow || set.name === POLICY_SETS.allowExact;
      if (!forward && set.name !== POLICY_SETS.host && set.name !== POLICY_SETS.hostExact) continue;
      const [ip, dst, proto, port] = parts;
      const cidr = jsonCidr(dst);
      const protocol = jsonProto(proto);
      const ports = jsonSpan(port);
      if (typeof ip !== "string" || !cidr || !protocol || !ports) continue;
      const e: PolicyElement = { cidr, protocol, ports: { start: ports[0], end: ports[1] } };
      (forward ? get(ip).allow : get(ip).host).push(e);
    }
  }
  return out;
}

/** What a guest is allowed, as a caller gives it (see {@link buildPolicy}). */
export interface PolicyInput {
  /** Destinations through the host (see {@link AllowEntry}). */
  allow?: readonly AllowEntry[];
  /** Host services on any host address: `{ protocol, port }`. */
  hostPorts?: ReadonlyArray<{ protocol: string; port: number }>;
  /** The guest's resolvers: udp/tcp 53 to each, through the host or on the host itself. */
  dns?: readonly string[];
  /** Source MAC binding on the guest's TAP. */
  bind?: TapBinding;
}

/**
 * Validates and normalises one guest's policy. DNS resolvers become `resolver/32` on udp and tcp 53
 * in both sets (the same address is either forwarded or local, never both); elements another one
 * covers are dropped.
 * @throws ValidationError naming the bad field (`guestIp`, `allow[i]`, `hostPorts[i]…`, `dns[i]`,
 *   `mac`, `tap`) or two overlapping entries.
 */
export function buildPolicy(guestIp: string, p: PolicyInput = {}): GuestPolicySpec {
  const ip = validateIPv4(guestIp, "guestIp");
  if (typeof p !== "object" || p === null) throw new ValidationError("policy", "must be an object");
  const list = <T>(v: readonly T[] | undefined, field: string): readonly T[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v)) throw new ValidationError(field, "must be an array");
    return v;
  };
  const dns = list(p.dns, "dns").map((d, i) => validateIPv4(d, `dns[${i}]`));
  const dnsEls = dns.flatMap((d): PolicyElement[] => [
    { cidr: `${d}/32`, protocol: "tcp", ports: { start: 53, end: 53 } },
    { cidr: `${d}/32`, protocol: "udp", ports: { start: 53, end: 53 } },
  ]);
  const allow = list(p.allow, "allow").flatMap((e, i) => parseAllowEntry(e, `allow[${i}]`));
  const host = list(p.hostPorts, "hostPorts").map((h, i): PolicyElement => {
    if (typeof h !== "object" || h === null)
      throw new ValidationError(`hostPorts[${i}]`, "must be {protocol, port}");
    const port = validatePort(h.port, `hostPorts[${i}].port`);
    return {
      cidr: "0.0.0.0/0",
      protocol: validateProtocol(h.protocol, `hostPorts[${i}].protocol`),
      ports: { start: port, end: port },
    };
  });
  const spec: GuestPolicySpec = {
    guestIp: ip,
    allow: normalizeElements([...allow, ...dnsEls], "allow"),
    host: normalizeElements([...host, ...dnsEls], "hostPorts"),
  };
  if (p.bind !== undefined) {
    if (typeof p.bind !== "object" || p.bind === null)
      throw new ValidationError("bind", "must be {tap, mac}");
    const tap = p.bind.tap;
    spec.bind = {
      tap: typeof tap === "string" ? validateIfName(tap, "tap") : validateIfIndex(tap, "tap"),
      mac: validateMac(p.bind.mac),
    };
  }
  return spec;
}

/** True when the policy has no element at all. */
export function isEmptyPolicy(p: GuestPolicySpec): boolean {
  return p.allow.length === 0 && p.host.length === 0 && p.bind === undefined;
}

/**
 * The policy's elements as `set: element` texts, for comparing a wanted policy with one read back
 * (`tapIndex` turns a listed TAP name into its index; a name it does not know stays a name).
 */
export function policyElementKeys(
  p: GuestPolicySpec,
  tapIndex?: (name: string) => number | undefined,
): Set<string> {
  const norm = (b: TapBinding): TapBinding =>
    typeof b.tap === "string" && tapIndex?.(b.tap) !== undefined
      ? { ...b, tap: tapIndex(b.tap) as number }
      : b;
  const q: GuestPolicySpec = { ...p };
  if (p.bind) q.bind = norm(p.bind);
  if (p.extraBinds) q.extraBinds = p.extraBinds.map(norm);
  return new Set(elementsOf(q).map(([s, e]) => `${s}: ${e}`));
}

/** Which set an element of a policy goes to, and the element as our netlink client encodes it. */
export interface PolicySetElem {
  set: string;
  elem: SetElem;
}

/** `[guest, destination, protocol, port]` at one end of an element's ranges (`lo` start, else end). */
function policyKey(guestIp: string, e: PolicyElement, lo: boolean): ElemField[] {
  const [a, b] = range(e.cidr);
  const [p, q] = protoSpan(e.protocol);
  return [
    { type: "ipv4_addr", value: guestIp },
    { type: "ipv4_addr", value: intToIPv4(lo ? a : b) },
    { type: "inet_proto", value: lo ? p : q },
    { type: "inet_service", value: lo ? e.ports.start : e.ports.end },
  ];
}

/**
 * The policy's elements as nf_tables set elements, the same ones {@link renderPolicyAdd} writes as
 * text: exact entries as plain keys of the hash sets; the others with the start of each range as
 * the key and its end as `keyEnd` (what nft sends for a concatenation with `flags interval`: a
 * prefix becomes its first and last address, `0-255` the protocol range); a binding as the TAP's
 * index (`iface_index`, host byte order) alone and with MAC and guest address.
 * @returns the elements, or undefined when a binding names its TAP by name (only nft can resolve it).
 */
export function policySetElems(p: GuestPolicySpec): PolicySetElem[] | undefined {
  const out: PolicySetElem[] = [];
  const push = (exactSet: string, rangeSet: string, e: PolicyElement) => {
    if (isExact(e)) {
      const key: ElemField[] = [
        { type: "ipv4_addr", value: p.guestIp },
        { type: "ipv4_addr", value: e.cidr.slice(0, -3) },
        { type: "inet_proto", value: IPPROTO[e.protocol as Protocol] },
        { type: "inet_service", value: e.ports.start },
      ];
      out.push({ set: exactSet, elem: { key } });
    } else {
      out.push({
        set: rangeSet,
        elem: { key: policyKey(p.guestIp, e, true), keyEnd: policyKey(p.guestIp, e, false) },
      });
    }
  };
  for (const e of p.allow) push(POLICY_SETS.allowExact, POLICY_SETS.allow, e);
  for (const e of p.host) push(POLICY_SETS.hostExact, POLICY_SETS.host, e);
  for (const b of [...(p.bind ? [p.bind] : []), ...(p.extraBinds ?? [])]) {
    if (typeof b.tap !== "number") return undefined;
    const tap: ElemField = { type: "iface_index", value: b.tap };
    out.push({ set: POLICY_SETS.bound, elem: { key: [tap] } });
    out.push({
      set: POLICY_SETS.mac,
      elem: {
        key: [tap, { type: "ether_addr", value: b.mac }, { type: "ipv4_addr", value: p.guestIp }],
      },
    });
  }
  return out;
}

/**
 * The element changes equivalent to {@link renderPolicyAdd} (`add`) or {@link renderPolicyRemove}
 * (`add` then `delete` of each element, so one already gone is no error), for our netlink client.
 * @param tableName our table (family ip).
 * @returns the changes (empty when the policy has no elements), or undefined when
 *   {@link policySetElems} cannot encode the policy (then use the text renderers).
 * @throws ValidationError for a bad table name.
 */
export function policyElemChanges(
  tableName: string,
  p: GuestPolicySpec,
  op: "add" | "remove",
): ElemChange[] | undefined {
  const table = validateTableName(tableName);
  const els = policySetElems(p);
  if (!els) return undefined;
  const by = new Map<string, SetElem[]>();
  for (const { set, elem } of els) {
    const list = by.get(set) ?? [];
    list.push(elem);
    by.set(set, list);
  }
  const out: ElemChange[] = [];
  for (const [name, elems] of by) {
    const set: SetRef = { family: NFPROTO_IPV4, table, set: name };
    out.push({ op: "add", set, elems });
    if (op === "remove") out.push({ op: "delete", set, elems });
  }
  return out;
}
