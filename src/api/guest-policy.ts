/**
 * Per-guest firewall policy: what one guest may reach beyond the host-wide rules of bootstrap
 * (destinations, host services, its resolvers), and which source MAC its TAP accepts. Each guest's
 * policy is a few elements of our table's sets (firewall/guest-policy.ts), so a change costs the
 * same whatever the number of guests, and replacing a policy is one atomic transaction.
 */
import { ValidationError } from "../core/errors.js";
import { validateIfName, validateIPv4 } from "../core/validate.js";
import {
  type AllowEntry,
  buildPolicy,
  elementToEntry,
  type GuestPolicySpec,
  isEmptyPolicy,
  POLICY_SETS,
  parsePolicies,
  renderListPolicies,
  renderPolicyAdd,
  renderPolicyRemove,
  validateIfIndex,
} from "../firewall/guest-policy.js";
import { ensureSkeleton, type HostPort, type NftApplier, nftErrno } from "../firewall/index.js";
import { linkGet, routeGet } from "../kernel/netlink/index.js";
import { defaultNftnlSocket, NFPROTO_IPV4, type NftnlSocket, setElemGet } from "../kernel/nftnl/index.js";
import { context, type NetworkOptions } from "./context.js";
import { isOurTap } from "./tap.js";

export type { AllowEntry } from "../firewall/guest-policy.js";

/** What one guest may do beyond the host-wide rules. Every field is optional. */
export interface GuestPolicy {
  /**
   * Destinations the guest may reach through the host, even inside the blocked ranges:
   * `<address or CIDR>[:<port>[-<port>]][/<tcp|udp>]`, e.g. `169.254.169.254:80/tcp`,
   * `10.0.0.0/8`, `192.168.1.10:5432/tcp` (a port without a protocol: tcp and udp).
   */
  allow?: readonly AllowEntry[];
  /** Services of the host itself the guest may open, on any host address. */
  hostPorts?: readonly HostPort[];
  /** The guest's resolvers: udp/tcp 53 to each is allowed, through the host or on the host. */
  dns?: readonly string[];
  /** Source MAC the guest's TAP accepts (both `mac` and `tap`, or neither). */
  mac?: string;
  /** The guest's TAP (name); it must exist. */
  tap?: string;
}

/** A guest's policy as read back from the kernel. */
export interface GuestPolicyState {
  guestIp: string;
  /** Destination entries (resolvers included, as `<ip>:53/tcp` and `<ip>:53/udp`). */
  allow: string[];
  /** Host-side entries: `0.0.0.0/0:<port>/<proto>` for a host port on any address. */
  hostAccess: string[];
  /** The bound MAC and TAP (a name, or an index when the TAP is gone). */
  mac?: string;
  tap?: string | number;
}

async function resolveBinding(
  guestIp: string,
  policy: GuestPolicy,
  options: NetworkOptions,
): Promise<{ tap: number; mac: string } | undefined> {
  if ((policy.mac === undefined) !== (policy.tap === undefined)) {
    throw new ValidationError(policy.mac === undefined ? "mac" : "tap", "give both mac and tap, or neither");
  }
  if (policy.tap === undefined) return undefined;
  const name = validateIfName(policy.tap, "tap");
  const nl = context(options).netlink;
  const link = await linkGet(nl, name);
  if (!link) throw new ValidationError("tap", `no interface named ${name}`, "ERR_NOT_FOUND");
  // Binding a guest's MAC to a device that is not its TAP would drop nothing on its real TAP.
  if (!isOurTap(link)) throw new ValidationError("tap", `${name} is not a TAP made by microvm-net`);
  const via = await routeGet(nl, guestIp).catch(() => undefined);
  if (via?.oif !== link.index) {
    throw new ValidationError("tap", `${guestIp} is not reached through ${name}`);
  }
  return { tap: link.index, mac: policy.mac as string };
}

/**
 * The JSON listing of each policy set (a set that is missing — no table, or a table made before the
 * sets existed — lists as nothing).
 */
export async function listPolicySets(nft: NftApplier, table: string): Promise<string[]> {
  const out: string[] = [];
  for (const cmd of renderListPolicies(table)) {
    try {
      out.push(await nft.run(cmd, { json: true }));
    } catch (e) {
      if (nftErrno(e) !== "ENOENT") throw e;
    }
  }
  return out;
}

async function readPolicy(
  nft: NftApplier,
  table: string,
  guestIp: string,
): Promise<GuestPolicySpec | undefined> {
  return parsePolicies(await listPolicySets(nft, table)).get(guestIp);
}

/**
 * Sets (or replaces) the policy of guest `guestIp`: the old elements go and the new ones come in one
 * nftables transaction, so no packet ever sees a mix or a gap. Works with or without bootstrap (the
 * rules that read the sets come with bootstrap). Without `mac`/`tap` the guest's current MAC binding
 * stays as it is (HostNetwork binds every VM it attaches).
 * @throws ValidationError for a bad address, entry, port, resolver, MAC, or a `tap` that does not
 *   exist, is not ours or does not route the guest (nothing touched); FirewallError when nftables
 *   refuses (nothing changed).
 */
export async function setGuestPolicy(
  guestIp: string,
  policy: GuestPolicy,
  options: NetworkOptions = {},
): Promise<void> {
  const ip = validateIPv4(guestIp, "guestIp");
  if (typeof policy !== "object" || policy === null) throw new ValidationError("policy", "must be an object");
  const ctx = context(options);
  // Validate everything before the first kernel call (the TAP lookup is read-only).
  buildPolicy(ip, { allow: policy.allow, hostPorts: policy.hostPorts, dns: policy.dns });
  if (policy.mac !== undefined) buildPolicy(ip, { bind: { tap: 1, mac: policy.mac } });
  const bind = await resolveBinding(ip, policy, options);
  const spec = buildPolicy(ip, {
    allow: policy.allow,
    hostPorts: policy.hostPorts,
    dns: policy.dns,
    ...(bind ? { bind } : {}),
  });
  const nft = await ctx.nft();
  await ensureSkeleton(nft, ctx.table);
  const old = await readPolicy(nft, ctx.table, ip);
  // Without mac/tap the guest keeps the binding it has (HostNetwork made it at attach): a policy
  // change must not silently turn its anti-spoofing off.
  if (!bind && old?.bind) spec.bind = old.bind;
  const text = (old ? renderPolicyRemove(ctx.table, old) : "") + renderPolicyAdd(ctx.table, spec);
  if (text !== "") await nft.run(text);
}

/**
 * Removes every element of guest `guestIp`'s policy (one transaction), its MAC binding included
 * (HostNetwork's reconcile binds its VMs again).
 * @returns true when there was something to remove.
 * @throws ValidationError for a bad address; FirewallError.
 */
export async function clearGuestPolicy(guestIp: string, options: NetworkOptions = {}): Promise<boolean> {
  const ip = validateIPv4(guestIp, "guestIp");
  const ctx = context(options);
  const nft = await ctx.nft();
  const old = await readPolicy(nft, ctx.table, ip);
  if (!old || isEmptyPolicy(old)) return false;
  await nft.run(renderPolicyRemove(ctx.table, old));
  return true;
}

/**
 * Reads guest `guestIp`'s policy back from the kernel.
 * @returns undefined when the guest has no element (or there is no table).
 * @throws ValidationError for a bad address; FirewallError.
 */
export async function getGuestPolicy(
  guestIp: string,
  options: NetworkOptions = {},
): Promise<GuestPolicyState | undefined> {
  const ip = validateIPv4(guestIp, "guestIp");
  const ctx = context(options);
  const p = await readPolicy(await ctx.nft(), ctx.table, ip);
  if (!p || isEmptyPolicy(p)) return undefined;
  const out: GuestPolicyState = {
    guestIp: ip,
    allow: p.allow.map(elementToEntry),
    hostAccess: p.host.map(elementToEntry),
  };
  if (p.bind) {
    out.mac = p.bind.mac;
    out.tap = p.bind.tap;
  }
  return out;
}

/**
 * Whether TAP `index` has a MAC binding: one NFT_MSG_GETSETELEM on `tap_bound` over our nf_tables
 * netlink socket (no cache fetch, so deleteTap pays ~50 µs, not a listing of every policy set).
 * True when that socket is unavailable, so the caller falls back to {@link unbindTap}'s listing.
 * @throws KernelError for a refusal other than "no such table, set or element".
 */
export function tapHasBinding(index: number, options: NetworkOptions = {}): boolean {
  const ctx = context(options);
  let sock: NftnlSocket;
  try {
    sock = defaultNftnlSocket();
  } catch {
    return true;
  }
  const set = { family: NFPROTO_IPV4, table: ctx.table, set: POLICY_SETS.bound };
  return setElemGet(sock, set, [{ type: "iface_index", value: index }]) !== undefined;
}

/**
 * Removes the MAC bindings of one TAP (its `tap_bound` and `tap_mac` elements), whichever guest they
 * name, in one transaction: for deleteTap to call before the link goes. Bindings are keyed by
 * interface index, which the kernel never hands out again, so a binding left behind never applies
 * to a new TAP of the same name; this only keeps the sets from growing.
 * @param tap the TAP's name (while it exists) or its interface index.
 * @returns how many bindings were removed (0 when there were none, or no table).
 * @throws ValidationError for a bad name or index; FirewallError.
 */
export async function unbindTap(tap: string | number, options: NetworkOptions = {}): Promise<number> {
  const key = typeof tap === "string" ? validateIfName(tap, "tap") : validateIfIndex(tap, "tap");
  const ctx = context(options);
  // nft lists an index as the interface's name while it exists, as a number once it is gone.
  const link = await linkGet(ctx.netlink, key);
  const keys = new Set<string | number>([key, ...(link ? [link.name, link.index] : [])]);
  const nft = await ctx.nft();
  const all = parsePolicies(await listPolicySets(nft, ctx.table));
  let text = "";
  let n = 0;
  for (const p of all.values()) {
    const binds = [...(p.bind ? [p.bind] : []), ...(p.extraBinds ?? [])].filter((b) => keys.has(b.tap));
    for (const b of binds) {
      text += renderPolicyRemove(ctx.table, { guestIp: p.guestIp, allow: [], host: [], bind: b });
      n++;
    }
  }
  if (text !== "") await nft.run(text);
  return n;
}
