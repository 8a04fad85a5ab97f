// A normalised picture of everything the library can change in a network namespace, read back through
// independent tools (`ip -j`, `nft -j`, /proc/sys) so that two snapshots compare with
// `expect(after).toEqual(before)`. Kernel-assigned identifiers that say nothing about our state
// (ifindexes, nft handles, counters, neighbour reachability timers) are dropped; lists are sorted.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { sh } from "./kernel.js";

type Json = Record<string, unknown>;

/** One link as far as our state goes. */
export interface LinkSnap {
  name: string;
  kind: string | undefined;
  flags: string[];
  mtu: number;
  group: string | number | undefined;
  alias: string | undefined;
  address: string | undefined;
}

// Carrier follows whether a process holds the TAP open, and the kernel's linkwatch reports it up to
// a second late (LOWER_UP / NO-CARRIER, operstate, a route's "linkdown"): not state we set.
const CARRIER_FLAGS = new Set(["LOWER_UP", "NO-CARRIER", "DORMANT"]);

/** What {@link kernelSnapshot} reads besides the kernel. */
export interface SnapshotOptions {
  /** A state directory (bootstrap record, loopback records): every file's path and content. */
  stateDir?: string;
  /** A HostNetwork state database: every row of every table. */
  db?: string;
  /** Database tables left out (e.g. `cursors`: next-fit cursors move on by design). */
  dbIgnore?: readonly string[];
}

/** See the module comment. */
export interface KernelSnapshot {
  links: LinkSnap[];
  addresses: Json[];
  routes: Json[];
  neighbours: Json[];
  ruleset: unknown[];
  sysctls: Record<string, string>;
  stateDir?: Record<string, string>;
  db?: Record<string, unknown[]>;
}

const byJson = (a: unknown, b: unknown): number => {
  const x = JSON.stringify(a);
  const y = JSON.stringify(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

function pick(o: Json, keys: readonly string[]): Json {
  const out: Json = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}

// One shell runs every read-back tool: a snapshot costs one process spawn from Node instead of six.
const SEP = "\n--mvnet-snapshot--\n";
const SCRIPT = [
  "ip -j -d link show",
  "ip -j addr show",
  "ip -j -4 route show table all",
  "ip -j -6 route show table all",
  "ip -j neigh show",
  "nft -j list ruleset",
].join(`; printf '${SEP.replace(/\n/g, "\\n")}'; `);

interface Raw {
  links: Json[];
  addrs: Json[];
  routes4: Json[];
  routes6: Json[];
  neigh: Json[];
  nft: Json[];
}

function readAll(): Raw {
  const parts = sh("sh", ["-c", SCRIPT]).split(SEP);
  if (parts.length !== 6) throw new Error(`snapshot: expected 6 outputs, got ${parts.length}`);
  const [l, a, r4, r6, n, f] = parts.map((p) => (p.trim() ? JSON.parse(p) : [])) as [
    Json[],
    Json[],
    Json[],
    Json[],
    Json[],
    { nftables: Json[] },
  ];
  return { links: l, addrs: a, routes4: r4, routes6: r6, neigh: n, nft: f.nftables };
}

function links(raw: Json[]): LinkSnap[] {
  return raw
    .map((l) => ({
      name: l.ifname as string,
      kind: (l.linkinfo as Json | undefined)?.info_kind as string | undefined,
      flags: ((l.flags as string[]) ?? []).filter((f) => !CARRIER_FLAGS.has(f)).sort(),
      mtu: l.mtu as number,
      group: l.group as string | number | undefined,
      alias: l.ifalias as string | undefined,
      address: l.address as string | undefined,
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

function addresses(raw: Json[]): Json[] {
  const out: Json[] = [];
  for (const l of raw) {
    for (const a of (l.addr_info as Json[]) ?? []) {
      out.push({
        dev: l.ifname,
        ...pick(a, ["family", "local", "address", "prefixlen", "scope", "label", "broadcast"]),
      });
    }
  }
  return out.sort(byJson);
}

function routes(raw4: Json[], raw6: Json[]): Json[] {
  const keys = ["dst", "gateway", "dev", "table", "protocol", "scope", "type", "prefsrc", "metric", "flags"];
  const norm = (family: number) => (r: Json) => {
    const o: Json = { family, ...pick(r, keys) };
    if (Array.isArray(o.flags)) o.flags = (o.flags as string[]).filter((f) => f !== "linkdown");
    return o;
  };
  const v4 = raw4.map(norm(4));
  const v6 = raw6.map(norm(6));
  return [...v4, ...v6].sort(byJson);
}

/**
 * Neighbour entries the library could have made: permanent ones anywhere, and any entry on a TAP.
 * Dynamic entries elsewhere come and go with traffic and timers, not with our calls.
 */
function neighbours(raw: Json[], tunNames: ReadonlySet<string>): Json[] {
  return raw
    .filter((n) => tunNames.has(n.dev as string) || ((n.state as string[]) ?? []).includes("PERMANENT"))
    .map((n) => pick(n, ["dst", "dev", "lladdr", "state"]))
    .sort(byJson);
}

/** Drops what nft numbers or counts by itself: handles, counter values, the metainfo header. */
function stripNft(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripNft);
  if (value === null || typeof value !== "object") return value;
  const out: Json = {};
  for (const [k, v] of Object.entries(value as Json)) {
    if (k === "handle") continue;
    if ((k === "packets" || k === "bytes") && typeof v === "number") continue;
    out[k] = k === "elem" && Array.isArray(v) ? [...v.map(stripNft)].sort(byJson) : stripNft(v);
  }
  return out;
}

function ruleset(raw: Json[]): unknown[] {
  return raw
    .filter((o) => !("metainfo" in o))
    .map(stripNft)
    .sort(byJson);
}

function readProc(path: string): string | undefined {
  try {
    return readFileSync(join("/proc/sys", path), "utf8").trim();
  } catch {
    return undefined;
  }
}

/** ip_forward, route_localnet on every interface, disable_ipv6 on every interface (incl. all/default). */
function sysctls(): Record<string, string> {
  const out: Record<string, string> = {};
  const fwd = readProc("net/ipv4/ip_forward");
  if (fwd !== undefined) out["net/ipv4/ip_forward"] = fwd;
  for (const [family, key] of [
    ["ipv4", "route_localnet"],
    ["ipv6", "disable_ipv6"],
  ] as const) {
    const dir = `/proc/sys/net/${family}/conf`;
    if (!existsSync(dir)) continue;
    for (const iface of readdirSync(dir).sort()) {
      const v = readProc(`net/${family}/conf/${iface}/${key}`);
      if (v !== undefined) out[`net/${family}/conf/${iface}/${key}`] = v;
    }
  }
  return out;
}

function dirContent(dir: string, prefix = "", out: Record<string, string> = {}): Record<string, string> {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = statSync(p);
    if (st.isDirectory()) {
      out[`${rel}/`] = "";
      dirContent(p, rel, out);
    } else {
      out[rel] = readFileSync(p, "utf8");
    }
  }
  return out;
}

function dbContent(path: string, ignore: readonly string[]): Record<string, unknown[]> {
  if (!existsSync(path)) return {};
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const out: Record<string, unknown[]> = {};
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all() as Array<{ name: string }>;
    for (const { name } of tables) {
      if (ignore.includes(name)) continue;
      out[name] = (db.prepare(`SELECT * FROM "${name}"`).all() as unknown[]).sort(byJson);
    }
    return out;
  } finally {
    db.close();
  }
}

/**
 * Reads the namespace's links, addresses, routes (every table, both families), neighbours of TAPs
 * (and permanent ones), the nftables ruleset, the sysctls the library touches, and optionally a
 * state directory and a state database.
 */
export function kernelSnapshot(options: SnapshotOptions = {}): KernelSnapshot {
  const raw = readAll();
  const ls = links(raw.links);
  const snap: KernelSnapshot = {
    links: ls,
    addresses: addresses(raw.addrs),
    routes: routes(raw.routes4, raw.routes6),
    neighbours: neighbours(raw.neigh, new Set(ls.filter((l) => l.kind === "tun").map((l) => l.name))),
    ruleset: ruleset(raw.nft),
    sysctls: sysctls(),
  };
  if (options.stateDir !== undefined) snap.stateDir = dirContent(options.stateDir);
  if (options.db !== undefined) snap.db = dbContent(options.db, options.dbIgnore ?? []);
  return snap;
}
