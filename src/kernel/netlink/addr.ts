/**
 * IPv4 address operations over rtnetlink (IPv6 is not handled). Semantics of IFA_LOCAL and
 * IFA_ADDRESS are those of linux/if_addr.h: IFA_LOCAL is the interface's own address, IFA_ADDRESS
 * the peer on point-to-point links (and equal to IFA_LOCAL otherwise). The kernel side is
 * inet_rtm_newaddr() / inet_rtm_deladdr() / inet_dump_ifaddr() in net/ipv4/devinet.c.
 */
import { ValidationError } from "../../core/errors.js";
import { validateIPv4 } from "../../core/validate.js";
import { validateIfIndex, validatePrefix } from "./args.js";
import {
  attrIPv4,
  decodeAttrs,
  decodeIfaddrmsg,
  encodeBody,
  ifaddrmsg,
  type NlMsg,
  readIPv4,
  readString,
} from "./codec.js";
import {
  AF_INET,
  IFA_ADDRESS,
  IFA_LABEL,
  IFA_LOCAL,
  IFADDRMSG_LEN,
  NLM_F_CREATE,
  NLM_F_EXCL,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
} from "./constants.js";
import type { NetlinkSocket, NlRequest } from "./socket.js";

/** An address to add or delete. */
export interface AddrSpec {
  /** ifindex of the link. */
  index: number;
  /** The link's own address (IFA_LOCAL), dotted quad. */
  local: string;
  /** Prefix length, 0–32. With `peer`, the prefix of the peer (32 for a single guest). */
  prefix: number;
  /** Point-to-point peer (IFA_ADDRESS), e.g. the guest behind a TAP; the kernel then routes peer/prefix to this link. */
  peer?: string;
}

/** An IPv4 address as the kernel reports it (RTM_NEWADDR). */
export interface Addr {
  /** ifindex of the link. */
  index: number;
  /** Always AF_INET (2): only IPv4 is listed. */
  family: number;
  /** IFA_LOCAL: the link's own address. */
  local: string;
  /** IFA_ADDRESS: the peer on point-to-point addresses, otherwise the same as `local`. */
  address: string;
  /** Prefix length. */
  prefix: number;
  /** IFA_LABEL (usually the link name). */
  label?: string;
}

function encodeAddr(spec: AddrSpec): Buffer {
  if (typeof spec !== "object" || spec === null)
    throw new ValidationError("address", "expected { index, local, prefix, peer? }");
  const index = validateIfIndex(spec.index);
  const local = validateIPv4(spec.local, "local");
  const prefix = validatePrefix(spec.prefix);
  const peer = spec.peer === undefined ? local : validateIPv4(spec.peer, "peer");
  return encodeBody(ifaddrmsg({ family: AF_INET, prefixlen: prefix, index }), [
    attrIPv4(IFA_LOCAL, local),
    attrIPv4(IFA_ADDRESS, peer),
  ]);
}

function describe(spec: AddrSpec): string {
  const peer = spec.peer === undefined ? "" : ` peer ${spec.peer}`;
  return `${spec.local}/${spec.prefix}${peer} on ifindex ${spec.index}`;
}

/**
 * Adds an IPv4 address (RTM_NEWADDR with NLM_F_CREATE|NLM_F_EXCL, as `ip addr add`).
 * @throws ValidationError for a bad index, address or prefix (nothing sent).
 * @throws KernelError (`RTM_NEWADDR`): EEXIST "ipv4: Address already assigned" when the same
 *   local/prefix is already on the link, ENODEV for an unknown index.
 */
export async function addrAdd(nl: NetlinkSocket, spec: AddrSpec): Promise<void> {
  await nl.requestAll([addrAddRequest(spec)]);
}

/**
 * The request {@link addrAdd} sends, for {@link NetlinkSocket.requestAll}.
 * @throws ValidationError.
 */
export function addrAddRequest(spec: AddrSpec): NlRequest {
  const body = encodeAddr(spec);
  return { type: RTM_NEWADDR, flags: NLM_F_CREATE | NLM_F_EXCL, body, context: `addrAdd ${describe(spec)}` };
}

/**
 * Deletes an IPv4 address; local, prefix and peer must match the one added.
 * @throws ValidationError; KernelError (`RTM_DELADDR`): EADDRNOTAVAIL when no such address is on the
 *   link, ENODEV for an unknown index.
 */
export async function addrDel(nl: NetlinkSocket, spec: AddrSpec): Promise<void> {
  const body = encodeAddr(spec);
  await nl.request(RTM_DELADDR, 0, body, { context: `addrDel ${describe(spec)}` });
}

/**
 * Decodes one RTM_NEWADDR message of family AF_INET.
 * @throws MvnetError (`ERR_NETLINK_DECODE`) on malformed bytes.
 */
export function parseAddr(m: NlMsg): Addr {
  const h = decodeIfaddrmsg(m.payload);
  const a = decodeAttrs(m.payload, IFADDRMSG_LEN);
  const localAttr = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
  const addressAttr = a.get(IFA_ADDRESS) ?? localAttr;
  const local = localAttr ? readIPv4(localAttr) : "0.0.0.0";
  const out: Addr = {
    index: h.index,
    family: h.family,
    local,
    address: addressAttr ? readIPv4(addressAttr) : local,
    prefix: h.prefixlen,
  };
  const label = a.get(IFA_LABEL);
  if (label) out.label = readString(label);
  return out;
}

/**
 * The IPv4 addresses of one link, or of all links (an RTM_GETADDR dump; with strict checking the
 * kernel filters by ifindex itself).
 * @throws ValidationError for a bad index; KernelError (`RTM_GETADDR`).
 */
export async function addrList(nl: NetlinkSocket, index?: number): Promise<Addr[]> {
  const filter = index === undefined ? 0 : validateIfIndex(index);
  const msgs = await nl.dump(RTM_GETADDR, ifaddrmsg({ family: AF_INET, index: filter }), {
    context: index === undefined ? "addrList" : `addrList(ifindex ${index})`,
  });
  return msgs
    .filter((m) => m.type === RTM_NEWADDR)
    .map(parseAddr)
    .filter((x) => x.family === AF_INET && (filter === 0 || x.index === filter));
}
