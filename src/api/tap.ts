/**
 * TAP devices for microVMs: created by ioctl on /dev/net/tun, configured through rtnetlink, marked as
 * ours (interface alias and group) so that nothing we do ever touches a device we did not make.
 */
import { KernelError, NotOursError, ValidationError } from "../core/errors.js";
import {
  parseCidr,
  validateId,
  validateIfName,
  validateIPv4,
  validateMac,
  validateTapMtu,
} from "../core/validate.js";
import { linkBrief } from "../kernel/netlink/ifreq.js";
import {
  addrAddRequest,
  type Link,
  linkDel,
  linkGet,
  linkList,
  linkSetRequest,
  neighAddRequest,
} from "../kernel/netlink/index.js";
import { ifaceSysctlPath, sysctlSet } from "../kernel/sysctl.js";
import { tapClose, tapCreateOpen, tapPersist } from "../kernel/tun.js";
import { type Context, context, type NetworkOptions, optionsOf, TAP_ALIAS } from "./context.js";
import { tapHasBinding, unbindTap } from "./guest-policy.js";
import { hasLoopbackMapping } from "./loopback.js";

/** Per-TAP options. */
export interface TapOptions extends NetworkOptions {
  /**
   * MTU in bytes, 68 (IPv4 minimum, RFC 791) – 65521 (tun's `max_mtu = MAX_MTU - hard_header_len`,
   * drivers/net/tun.c: 65535 − 14). Default: the kernel's (1500).
   */
  mtu?: number;
  /** Owner uid of the TAP (the VMM's uid). Default: unset (root or CAP_NET_ADMIN only can open it). */
  uid?: number;
  /** Owner gid of the TAP. */
  gid?: number;
  /**
   * The TAP's alias (IFLA_IFALIAS), which marks it as ours: `microvm-net` (the default) or
   * `microvm-net:<anything>` (HostNetwork's per-VM mark), at most 255 bytes. Set in the same request
   * as the group and IFF_UP, so the TAP is never up without it.
   */
  alias?: string;
  /**
   * Set `route_localnet` on the TAP (needed when the host reaches the guest through 127.0.0.1, see
   * loopback.ts), in the same request as the alias. Default: on when a mapping covering 127.0.0.1
   * was published to the guest (the point-to-point peer); giving it skips that lookup.
   */
  routeLocalnet?: boolean;
  /**
   * Point-to-point TAPs only: the guest's MAC (unicast, `aa:bb:cc:dd:ee:ff`). A permanent neighbour
   * entry guestIp → guestMac is added in the same netlink datagram as the address, so the host never
   * ARPs for the guest (the first packet to it is not held back by a resolution).
   */
  guestMac?: string;
}

/** What we report about one of our TAPs. */
export interface TapInfo {
  name: string;
  index: number;
  mtu: number;
  mac: string;
  up: boolean;
  group: number;
}

function validateAlias(alias: unknown): string {
  if (alias === undefined) return TAP_ALIAS;
  if (
    typeof alias !== "string" ||
    (alias !== TAP_ALIAS && !alias.startsWith(`${TAP_ALIAS}:`)) ||
    alias.includes("\0") ||
    Buffer.byteLength(alias) > 255
  ) {
    throw new ValidationError(
      "alias",
      `must be "${TAP_ALIAS}" or "${TAP_ALIAS}:<name>", at most 255 bytes without NUL`,
    );
  }
  return alias;
}

function validateTapOptions(opts: TapOptions): void {
  validateMtu(opts.mtu);
  validateAlias(opts.alias);
  if (opts.routeLocalnet !== undefined && typeof opts.routeLocalnet !== "boolean")
    throw new ValidationError("routeLocalnet", "must be true or false");
  if (opts.guestMac !== undefined) validateMac(opts.guestMac, "guestMac");
}

/** The TAP's MTU, 68–65521 (see validateTapMtu); undefined keeps the kernel's default. */
function validateMtu(mtu: unknown): number | undefined {
  return mtu === undefined ? undefined : validateTapMtu(mtu, "mtu");
}

/** True when the link is a TAP made by this library. */
export function isOurTap(link: Link, group?: number): boolean {
  // HostNetwork marks its TAPs `microvm-net:<vmId>` (src/host/names.ts).
  const ours = link.alias === TAP_ALIAS || link.alias?.startsWith(`${TAP_ALIAS}:`) === true;
  return link.kind === "tun" && ours && (group === undefined || link.group === group);
}

/**
 * An address one end of a TAP can have: unicast, not 0.0.0.0, not loopback (127/8), not multicast or
 * reserved (224/3), not limited broadcast.
 * @throws ValidationError (code `ERR_INVALID_ADDRESS`).
 */
function validateHostAddress(value: unknown, field: string): string {
  const ip = validateIPv4(value, field);
  const first = Number(ip.split(".")[0]);
  if (ip === "0.0.0.0" || first === 127 || first >= 224) {
    throw new ValidationError(field, `${ip} is not a unicast host address`, "ERR_INVALID_ADDRESS");
  }
  return ip;
}

interface Address {
  local: string;
  prefix: number;
  peer?: string;
}

/**
 * The shared body of createTap / createPointToPointTap: TAP by ioctl, then rtnetlink. Any failure
 * after the TAP exists deletes it again, so the call is all-or-nothing.
 *
 * Per TAP: open, TUNSETIFF, TUNSETOWNER, TUNSETGROUP (the device), three netdevice ioctls (ifindex,
 * MAC, MTU: no RTM_GETLINK), one /proc/sys write (disable_ipv6), RTM_NEWLINK, RTM_NEWADDR (and
 * RTM_NEWNEIGH with `guestMac`) in one datagram (answered inside its `send`, read without a loop
 * turn), TUNSETPERSIST, close.
 * docs/performance.md has what each costs.
 */
async function makeTap(ctx: Context, name: string, addr: Address, opts: TapOptions): Promise<TapInfo> {
  const alias = validateAlias(opts.alias);
  // Until tapPersist, the TAP lives only as long as this descriptor: any failure — or the process
  // being killed — before that removes it, so nothing half-made (or unmarked) is ever left.
  const fd = tapCreateOpen({ name, uid: opts.uid, gid: opts.gid });
  try {
    const link = linkBrief(ctx.netlink, name);
    // No IPv6 until it is filtered like IPv4: no link-local address, no router advertisements.
    // Written before the link goes up, so no address is ever configured. Only /proc/sys can do it:
    // rtnetlink's IFLA_AF_SPEC takes no IPv6 devconf (inet6_set_link_af() in net/ipv6/addrconf.c),
    // and addr_gen_mode "none" alone would still let IPv6 packets in.
    try {
      sysctlSet(ifaceSysctlPath("ipv6", name, "disable_ipv6"), "1");
    } catch (e) {
      if (!(e instanceof KernelError && e.errno === 2)) throw e; // ENOENT: IPv6 is not built in
    }
    const localnet = opts.routeLocalnet ?? (addr.peer !== undefined && hasLoopbackMapping(ctx, addr.peer));
    const index = link.index;
    const requests = [
      linkSetRequest(index, {
        alias,
        group: ctx.group,
        mtu: opts.mtu,
        up: true,
        routeLocalnet: localnet || undefined,
      }),
      addrAddRequest({ index, local: addr.local, prefix: addr.prefix, peer: addr.peer }),
    ];
    if (opts.guestMac !== undefined && addr.peer !== undefined)
      requests.push(neighAddRequest({ index, ip: addr.peer, mac: opts.guestMac, permanent: true }));
    // One datagram, answered inside its send(); if any request fails, closing the descriptor below
    // removes the TAP again, with whatever the others did to it.
    await ctx.netlink.requestAll(requests);
    tapPersist(fd, name);
    return {
      name,
      index: link.index,
      mtu: opts.mtu ?? link.mtu,
      mac: link.mac ?? "",
      up: true,
      group: ctx.group,
    };
  } finally {
    tapClose(fd);
  }
}

/**
 * Creates a persistent TAP (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, single queue, as Firecracker opens it),
 * gives it the address `cidr` (e.g. `10.200.0.1/24`) and brings it up.
 * @param name interface name, 1–15 bytes of `[A-Za-z0-9_.-]`, not `all` or `default` (reserved by
 *   /proc/sys/net/*\/conf).
 * @param given options; `null` or omitted = defaults.
 * @throws ValidationError before anything is touched (e.g. an MTU outside 68–65521);
 *   AlreadyExistsError when the name exists (the existing device is left untouched); KernelError (e.g. EPERM without CAP_NET_ADMIN).
 */
export async function createTap(name: string, cidr: string, given: TapOptions | null = {}): Promise<TapInfo> {
  const options = optionsOf(given);
  validateIfName(name);
  const c = parseCidr(cidr);
  validateHostAddress(c.address, "cidr");
  if (c.prefix > 30 && c.prefix !== 32)
    throw new ValidationError("cidr", `a /${c.prefix} leaves no room for a guest`);
  validateTapOptions(options);
  if (options.guestMac !== undefined)
    throw new ValidationError(
      "guestMac",
      "only a point-to-point TAP (createPointToPointTap) has a single guest",
    );
  if (options.uid !== undefined) validateId(options.uid, "uid");
  if (options.gid !== undefined) validateId(options.gid, "gid");
  return makeTap(context(options), name, { local: c.address, prefix: c.prefix }, options);
}

/**
 * Creates a TAP with a point-to-point pair: the host side gets `hostIp/32` with `guestIp` as its peer,
 * so the kernel routes exactly that guest through this TAP. Owned by `uid`/`gid` so that an
 * unprivileged VMM (Firecracker's jailer uid) can open it.
 * @throws ValidationError, AlreadyExistsError, KernelError — see {@link createTap}.
 */
export async function createPointToPointTap(
  name: string,
  hostIp: string,
  guestIp: string,
  uid: number,
  gid: number,
  given: TapOptions | null = {},
): Promise<TapInfo> {
  const options = optionsOf(given);
  validateIfName(name);
  const local = validateHostAddress(hostIp, "hostIp");
  const peer = validateHostAddress(guestIp, "guestIp");
  if (local === peer) throw new ValidationError("guestIp", "must differ from hostIp");
  validateId(uid, "uid");
  validateId(gid, "gid");
  validateTapOptions(options);
  return makeTap(context(options), name, { local, prefix: 32, peer }, { ...options, uid, gid });
}

/**
 * Deletes one of our TAPs, and its source-MAC binding if it has one (setGuestPolicy). A name that does
 * not exist is success (the goal is reached).
 * @throws ValidationError for a bad name; NotOursError when the device exists but was not made by
 *   this library (e.g. `eth0`), which is then left alone; KernelError for any other failure (EPERM
 *   without CAP_NET_ADMIN is never mistaken for "already gone").
 */
export async function deleteTap(name: string, given: NetworkOptions | null = {}): Promise<void> {
  const options = optionsOf(given);
  validateIfName(name);
  const ctx = context(options);
  const link = await linkGet(ctx.netlink, name);
  if (!link) return;
  if (!isOurTap(link))
    throw new NotOursError(`${name} is not a TAP made by microvm-net; refusing to delete it`);
  // Its MAC binding goes with it, so nothing of the TAP stays in our sets.
  if (tapHasBinding(link.index, options)) await unbindTap(link.index, options);
  try {
    await linkDel(ctx.netlink, link.index);
  } catch (e) {
    if (e instanceof KernelError && e.errno === 19) return; // ENODEV: deleted meanwhile
    throw e;
  }
}

/** Lists the TAPs made by this library in the current network namespace. */
export async function listTaps(options: NetworkOptions | null = {}): Promise<TapInfo[]> {
  const ctx = context(options);
  const links = await linkList(ctx.netlink);
  return links
    .filter((l) => isOurTap(l))
    .map((l) => ({ name: l.name, index: l.index, mtu: l.mtu, mac: l.mac ?? "", up: l.up, group: l.group }));
}
