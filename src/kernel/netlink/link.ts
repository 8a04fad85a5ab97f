/**
 * Link operations over rtnetlink, one function per kernel operation (vishvananda/netlink style).
 * Requests follow what `ip link` sends (iproute2 ip/iplink.c) and what rtnl_newlink(),
 * rtnl_dellink() and rtnl_getlink() in net/core/rtnetlink.c accept.
 */
import { constants as osConstants } from "node:os";
import { KernelError, ValidationError } from "../../core/errors.js";
import { validateIfName } from "../../core/validate.js";
import { validateIfIndex, validateU32 } from "./args.js";
import {
  attrMac,
  attrNested,
  attrString,
  attrStringRaw,
  attrU32,
  decodeAttrs,
  decodeIfinfomsg,
  encodeBody,
  ifinfomsg,
  type NlMsg,
  readMac,
  readString,
  readU8,
  readU32,
} from "./codec.js";
import {
  AF_INET,
  AF_UNSPEC,
  IFALIAS_MAX_BYTES,
  IFF_UP,
  IFINFOMSG_LEN,
  IFLA_ADDRESS,
  IFLA_EXT_MASK,
  IFLA_GROUP,
  IFLA_IFALIAS,
  IFLA_IFNAME,
  IFLA_INFO_KIND,
  IFLA_LINKINFO,
  IFLA_MTU,
  IFLA_OPERSTATE,
  OPER_STATES,
  RTEXT_FILTER_SKIP_STATS,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
} from "./constants.js";
import type { NetlinkSocket, NlRequest } from "./socket.js";

const { ENODEV } = osConstants.errno;

/** linux/if_link.h: IFLA_AF_SPEC, and inside its AF_INET entry, IFLA_INET_CONF. */
const IFLA_AF_SPEC = 26;
const IFLA_INET_CONF = 1;
/** linux/ip.h: the 1-based index of `route_localnet` in IFLA_INET_CONF. */
const IPV4_DEVCONF_ROUTE_LOCALNET = 26;

/** A network interface as the kernel reports it (RTM_NEWLINK). */
export interface Link {
  /** ifindex. */
  index: number;
  /** IFLA_IFNAME. */
  name: string;
  /** IFF_* flags (linux/if.h). */
  flags: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** IFLA_MTU, bytes. */
  mtu: number;
  /** IFLA_ADDRESS as lower-case `aa:bb:cc:dd:ee:ff`; absent for links without a hardware address. */
  mac?: string;
  /** IFLA_GROUP; 0 is the default group. */
  group: number;
  /** IFLA_IFALIAS, when one is set. */
  alias?: string;
  /** IFLA_LINKINFO/IFLA_INFO_KIND: `veth`, `bridge`, `tun` (also for TAPs); absent for `lo` and physical NICs. */
  kind?: string;
  /** IFLA_OPERSTATE as `ip` spells it: `UP`, `DOWN`, `UNKNOWN`, `LOWERLAYERDOWN`, … */
  operState: string;
}

/**
 * Decodes one RTM_NEWLINK message.
 * @throws MvnetError (`ERR_NETLINK_DECODE`) on malformed bytes.
 */
export function parseLink(m: NlMsg): Link {
  const h = decodeIfinfomsg(m.payload);
  const a = decodeAttrs(m.payload, IFINFOMSG_LEN, LINK_ATTRS);
  const link: Link = {
    index: h.index,
    name: readString(a.get(IFLA_IFNAME) ?? Buffer.alloc(0)),
    flags: h.flags,
    up: (h.flags & IFF_UP) !== 0,
    mtu: a.has(IFLA_MTU) ? readU32(a.get(IFLA_MTU) as Buffer) : 0,
    group: a.has(IFLA_GROUP) ? readU32(a.get(IFLA_GROUP) as Buffer) : 0,
    operState: "UNKNOWN",
  };
  const mac = a.get(IFLA_ADDRESS);
  if (mac && mac.length > 0) link.mac = readMac(mac);
  const alias = a.get(IFLA_IFALIAS);
  if (alias && alias.length > 0) link.alias = readString(alias);
  const info = a.get(IFLA_LINKINFO);
  const kind = info ? decodeAttrs(info).get(IFLA_INFO_KIND) : undefined;
  if (kind) link.kind = readString(kind);
  const oper = a.get(IFLA_OPERSTATE);
  if (oper) {
    const v = readU8(oper);
    link.operState = OPER_STATES[v] ?? String(v);
  }
  return link;
}

/** The attributes {@link parseLink} reads. */
const LINK_ATTRS: ReadonlySet<number> = new Set([
  IFLA_IFNAME,
  IFLA_MTU,
  IFLA_GROUP,
  IFLA_ADDRESS,
  IFLA_IFALIAS,
  IFLA_LINKINFO,
  IFLA_OPERSTATE,
]);

// Statistics are a large part of every link message and nobody here reads them.
const skipStats = () => attrU32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);

function isErrno(err: unknown, errno: number): boolean {
  return err instanceof KernelError && err.errno === errno;
}

/**
 * Looks one link up by name (RTM_GETLINK with IFLA_IFNAME) or by ifindex.
 * @returns the link, or undefined when no such link exists (ENODEV).
 * @throws ValidationError for a malformed name or index; KernelError (`RTM_GETLINK`) otherwise.
 */
export async function linkGet(nl: NetlinkSocket, nameOrIndex: string | number): Promise<Link | undefined> {
  const byName = typeof nameOrIndex === "string";
  const body = byName
    ? encodeBody(ifinfomsg({ family: AF_UNSPEC }), [
        attrString(IFLA_IFNAME, validateIfName(nameOrIndex)),
        skipStats(),
      ])
    : encodeBody(ifinfomsg({ family: AF_UNSPEC, index: validateIfIndex(nameOrIndex) }), [skipStats()]);
  let msgs: NlMsg[];
  try {
    msgs = await nl.request(RTM_GETLINK, 0, body, { context: `linkGet(${JSON.stringify(nameOrIndex)})` });
  } catch (err) {
    if (isErrno(err, ENODEV)) return undefined;
    throw err;
  }
  const m = msgs.find((x) => x.type === RTM_NEWLINK);
  return m ? parseLink(m) : undefined;
}

/**
 * Every link of the socket's network namespace (an RTM_GETLINK dump), in ifindex order.
 * @throws KernelError (`RTM_GETLINK`).
 */
export async function linkList(nl: NetlinkSocket): Promise<Link[]> {
  const msgs = await nl.dump(RTM_GETLINK, encodeBody(ifinfomsg({ family: AF_UNSPEC }), [skipStats()]), {
    context: "linkList",
  });
  // Decoded between loop turns: ≈ 5 µs a link, and a host may have thousands.
  const out: Link[] = [];
  for (const m of msgs) {
    if (m.type !== RTM_NEWLINK) continue;
    out.push(parseLink(m));
    if (out.length % 16 === 0) await nl.yieldIfSpent();
  }
  return out;
}

/**
 * RTM_NEWLINK without NLM_F_CREATE: changes an existing link (fails with ENODEV otherwise). `flags`
 * are the ifi_flags to set among those selected by `change` (ifi_change), e.g. IFF_UP.
 * @throws ValidationError for a bad index.
 */
function changeRequest(index: number, attrs: Buffer[], context: string, flags = 0, change = 0): NlRequest {
  const body = encodeBody(
    ifinfomsg({ family: AF_UNSPEC, index: validateIfIndex(index), flags, change }),
    attrs,
  );
  return { type: RTM_NEWLINK, flags: 0, body, context };
}

/** Sends {@link changeRequest}. */
async function changeLink(
  nl: NetlinkSocket,
  index: number,
  attrs: Buffer[],
  context: string,
  flags = 0,
  change = 0,
): Promise<void> {
  await nl.requestAll([changeRequest(index, attrs, context, flags, change)]);
}

/** Changes {@link linkSet} can make in one request. Absent fields are left as they are. */
export interface LinkChanges {
  /** IFLA_IFALIAS, at most 255 bytes, no NUL; `""` removes it. */
  alias?: string;
  /** IFLA_GROUP, 0–2^32-1. */
  group?: number;
  /** IFLA_MTU in bytes. */
  mtu?: number;
  /** IFF_UP on (true) or off (false). */
  up?: boolean;
  /**
   * The link's IPv4 `route_localnet` (net.ipv4.conf.<link>.route_localnet) on or off, carried in the
   * same request as IFLA_AF_SPEC → AF_INET → IFLA_INET_CONF (inet_set_link_af() in
   * net/ipv4/devinet.c), instead of a write to /proc/sys. Only IPv4 devconf can be set this way:
   * IPv6's (disable_ipv6, accept_ra) cannot (inet6_set_link_af() takes only the token and
   * addr_gen_mode).
   */
  routeLocalnet?: boolean;
}

/**
 * Several changes to one link in a single RTM_NEWLINK (as `ip link set dev X alias A group G mtu M
 * up` sends one message): one round trip instead of one per attribute. do_setlink() in
 * net/core/rtnetlink.c applies them in order (IFLA_AF_SPEC after the flags; it is validated before
 * anything changes) and stops at the first it refuses, so a failed call
 * can leave earlier attributes changed; callers that need all-or-nothing undo by deleting the link.
 * @throws ValidationError (before anything is sent); KernelError (`RTM_NEWLINK`).
 */
export async function linkSet(nl: NetlinkSocket, index: number, changes: LinkChanges): Promise<void> {
  await nl.requestAll([linkSetRequest(index, changes)]);
}

/**
 * The request {@link linkSet} sends, for {@link NetlinkSocket.requestAll}.
 * @throws ValidationError.
 */
export function linkSetRequest(index: number, changes: LinkChanges): NlRequest {
  const attrs: Buffer[] = [];
  if (changes.alias !== undefined) attrs.push(attrStringRaw(IFLA_IFALIAS, validateAlias(changes.alias)));
  if (changes.group !== undefined) attrs.push(attrU32(IFLA_GROUP, validateU32(changes.group, "group")));
  if (changes.mtu !== undefined)
    attrs.push(attrU32(IFLA_MTU, validateU32(changes.mtu, "mtu", 1, 0x7fffffff)));
  if (changes.routeLocalnet !== undefined) {
    if (typeof changes.routeLocalnet !== "boolean")
      throw new ValidationError("routeLocalnet", "must be true or false");
    const conf = attrNested(IFLA_INET_CONF, [
      attrU32(IPV4_DEVCONF_ROUTE_LOCALNET, changes.routeLocalnet ? 1 : 0),
    ]);
    attrs.push(attrNested(IFLA_AF_SPEC, [attrNested(AF_INET, [conf])]));
  }
  const change = changes.up === undefined ? 0 : IFF_UP;
  return changeRequest(index, attrs, `linkSet(ifindex ${index})`, changes.up ? IFF_UP : 0, change);
}

function validateAlias(alias: string): string {
  if (typeof alias !== "string" || alias.includes("\0") || Buffer.byteLength(alias) > IFALIAS_MAX_BYTES) {
    throw new ValidationError("alias", `must be a string of at most ${IFALIAS_MAX_BYTES} bytes without NUL`);
  }
  return alias;
}

/**
 * Sets IFF_UP (`ip link set up`).
 * @throws ValidationError; KernelError (`RTM_NEWLINK`, ENODEV for an unknown index).
 */
export async function linkSetUp(nl: NetlinkSocket, index: number): Promise<void> {
  return changeLink(nl, index, [], `linkSetUp(ifindex ${index})`, IFF_UP, IFF_UP);
}

/**
 * Clears IFF_UP (`ip link set down`).
 * @throws ValidationError; KernelError (`RTM_NEWLINK`, ENODEV for an unknown index).
 */
export async function linkSetDown(nl: NetlinkSocket, index: number): Promise<void> {
  return changeLink(nl, index, [], `linkSetDown(ifindex ${index})`, 0, IFF_UP);
}

/**
 * Sets the MTU in bytes (IFLA_MTU). The kernel checks the device's own bounds and says so, e.g.
 * EINVAL "mtu less than device minimum" (dev_validate_mtu() in net/core/dev.c).
 * @throws ValidationError when `mtu` is not an integer in 1–2^31-1; KernelError (`RTM_NEWLINK`).
 */
export async function linkSetMtu(nl: NetlinkSocket, index: number, mtu: number): Promise<void> {
  const v = validateU32(mtu, "mtu", 1, 0x7fffffff);
  return changeLink(nl, index, [attrU32(IFLA_MTU, v)], `linkSetMtu(ifindex ${index}, ${mtu})`);
}

/**
 * Sets the hardware address (IFLA_ADDRESS), `aa:bb:cc:dd:ee:ff`, unicast and not all-zero.
 * @throws ValidationError (`ERR_INVALID_MAC`); KernelError (`RTM_NEWLINK`).
 */
export async function linkSetMac(nl: NetlinkSocket, index: number, mac: string): Promise<void> {
  return changeLink(nl, index, [attrMac(IFLA_ADDRESS, mac)], `linkSetMac(ifindex ${index}, ${mac})`);
}

/**
 * Puts the link in interface group `group` (IFLA_GROUP, 0–2^32-1; 0 is the default group), so
 * {@link linkDelGroup} can remove a batch in one request.
 * @throws ValidationError; KernelError (`RTM_NEWLINK`).
 */
export async function linkSetGroup(nl: NetlinkSocket, index: number, group: number): Promise<void> {
  const g = validateU32(group, "group");
  return changeLink(nl, index, [attrU32(IFLA_GROUP, g)], `linkSetGroup(ifindex ${index}, ${group})`);
}

/**
 * Sets the link's alias (IFLA_IFALIAS, at most 255 bytes of UTF-8, no NUL); `""` removes it. Sent
 * without a NUL because dev_set_alias() (net/core/dev.c) stores the payload's full length.
 * @throws ValidationError (`alias`); KernelError (`RTM_NEWLINK`).
 */
export async function linkSetAlias(nl: NetlinkSocket, index: number, alias: string): Promise<void> {
  return changeLink(
    nl,
    index,
    [attrStringRaw(IFLA_IFALIAS, validateAlias(alias))],
    `linkSetAlias(ifindex ${index})`,
  );
}

/**
 * Deletes one link (RTM_DELLINK); for a veth this removes the pair. Sent off the event loop: the
 * kernel waits ~16 ms for an RCU grace period before it answers.
 * @throws ValidationError; KernelError (`RTM_DELLINK`, ENODEV for an unknown index, EOPNOTSUPP for
 *   links that cannot be deleted such as `lo`).
 */
export async function linkDel(nl: NetlinkSocket, index: number): Promise<void> {
  const body = encodeBody(ifinfomsg({ family: AF_UNSPEC, index: validateIfIndex(index) }));
  await nl.request(RTM_DELLINK, 0, body, { slow: true, context: `linkDel(ifindex ${index})` });
}

/**
 * Deletes every link in interface group `group` in one request (RTM_DELLINK with ifindex 0 and
 * IFLA_GROUP, rtnl_group_dellink() in net/core/rtnetlink.c): one RCU wait for the whole batch
 * instead of one per link. It removes every link in that group, whoever made it: use a group
 * number nothing else uses. Sent off the event loop.
 * @param group 1–2^32-1 (0 is every link's default group; the kernel refuses it with EPERM).
 * @returns true when links were deleted, false when the group was empty (the kernel's ENODEV).
 * @throws ValidationError; KernelError (`RTM_DELLINK`, e.g. EOPNOTSUPP when a member cannot be
 *   deleted, in which case nothing is).
 */
export async function linkDelGroup(nl: NetlinkSocket, group: number): Promise<boolean> {
  const g = validateU32(group, "group", 1);
  const body = encodeBody(ifinfomsg({ family: AF_UNSPEC, index: 0 }), [attrU32(IFLA_GROUP, g)]);
  try {
    await nl.request(RTM_DELLINK, 0, body, { slow: true, context: `linkDelGroup(${group})` });
    return true;
  } catch (err) {
    if (isErrno(err, ENODEV)) return false;
    throw err;
  }
}
