/**
 * Connection-tracking entries over ctnetlink (NETLINK_NETFILTER, subsystem NFNL_SUBSYS_CTNETLINK):
 * list them and delete exact ones. Used to drop stale UDP entries when a host port is published to a
 * new guest: NAT is decided on a flow's first packet, so a UDP client that kept sending to the port
 * keeps its old entry (no DNAT, or DNAT to the previous guest) until it expires, 30–180 s after its
 * last packet (nf_conntrack_udp_timeout*), and never reaches the new guest.
 *
 * The kernel cannot delete by a partial tuple: IPCTNL_MSG_CT_DELETE with a tuple deletes that exact
 * entry, and its flush filter takes only mark, status, zone and family (ctnetlink_del_conntrack() and
 * ctnetlink_flush_conntrack() in net/netfilter/nf_conntrack_netlink.c). So matching entries are dumped
 * and deleted one by one, as conntrack-tools and the CNI portmap plugin do.
 *
 * Layouts: linux/netfilter/nfnetlink.h (struct nfgenmsg), nfnetlink_conntrack.h (CTA_* attributes).
 * Ports and the entry id are big-endian in these attributes.
 */
import { constants as osConstants } from "node:os";
import { KernelError, ValidationError } from "../core/errors.js";
import { IPPROTO, type Protocol, validatePort, validateProtocol } from "../core/validate.js";
import { attr, attrIPv4, attrNested, attrU8, decodeAttrs, encodeBody, readIPv4 } from "./netlink/codec.js";
import { AF_INET } from "./netlink/constants.js";
import { NetlinkSocket } from "./netlink/socket.js";

/** linux/netlink.h */
export const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_NEW = 0;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const NFNETLINK_V0 = 0;
const NFGENMSG_LEN = 4;

// enum ctattr_type
const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_ID = 12;
const CTA_ZONE = 18;
// enum ctattr_tuple
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
// enum ctattr_ip
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
// enum ctattr_l4proto
const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;

const { ENOENT } = osConstants.errno;

const msgType = (m: number) => (NFNL_SUBSYS_CTNETLINK << 8) | m;

/** One direction of a connection: addresses and ports. */
export interface ConntrackTuple {
  src: string;
  dst: string;
  /** IP protocol number (6 tcp, 17 udp, …). */
  proto: number;
  /** Absent for protocols without ports. */
  srcPort?: number;
  dstPort?: number;
}

/** A conntrack entry: the original direction (as the first packet had it) and the expected reply. */
export interface ConntrackEntry {
  orig: ConntrackTuple;
  reply: ConntrackTuple;
  /** CTA_ID, which tells this entry from a later one with the same tuple. */
  id?: number;
  /** CTA_ZONE when not 0. */
  zone?: number;
}

/** Which IPv4 entries {@link conntrackDeleteMatching} removes; every given field must match. */
export interface ConntrackFilter {
  protocol: Protocol;
  /** Destination port of the original direction (the published host port). */
  origDstPorts?: readonly number[];
  /** Destination address of the original direction. */
  origDst?: string;
  /** Source address of the reply direction (the guest a flow was translated to). */
  replySrc?: string;
}

/**
 * Opens a ctnetlink socket in the calling thread's network namespace.
 * @throws KernelError (e.g. EPROTONOSUPPORT when nfnetlink is missing).
 */
export function openConntrackSocket(): NetlinkSocket {
  return NetlinkSocket.open(NETLINK_NETFILTER);
}

function nfgenmsg(family: number): Buffer {
  const b = Buffer.alloc(NFGENMSG_LEN);
  b.writeUInt8(family, 0);
  b.writeUInt8(NFNETLINK_V0, 1);
  return b;
}

function be16(type: number, v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return attr(type, b);
}

function be32(type: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return attr(type, b);
}

function parseTuple(p: Buffer): ConntrackTuple {
  const a = decodeAttrs(p);
  const ip = decodeAttrs(a.get(CTA_TUPLE_IP) ?? Buffer.alloc(0));
  const l4 = decodeAttrs(a.get(CTA_TUPLE_PROTO) ?? Buffer.alloc(0));
  const t: ConntrackTuple = {
    src: readIPv4(ip.get(CTA_IP_V4_SRC) ?? Buffer.alloc(4)),
    dst: readIPv4(ip.get(CTA_IP_V4_DST) ?? Buffer.alloc(4)),
    proto: l4.get(CTA_PROTO_NUM)?.readUInt8(0) ?? 0,
  };
  const sp = l4.get(CTA_PROTO_SRC_PORT);
  const dp = l4.get(CTA_PROTO_DST_PORT);
  if (sp && sp.length >= 2) t.srcPort = sp.readUInt16BE(0);
  if (dp && dp.length >= 2) t.dstPort = dp.readUInt16BE(0);
  return t;
}

/** Encodes a tuple as CTA_TUPLE_ORIG / CTA_TUPLE_REPLY expects it. */
function tupleAttr(type: number, t: ConntrackTuple): Buffer {
  const l4 = [attrU8(CTA_PROTO_NUM, t.proto)];
  if (t.srcPort !== undefined) l4.push(be16(CTA_PROTO_SRC_PORT, t.srcPort));
  if (t.dstPort !== undefined) l4.push(be16(CTA_PROTO_DST_PORT, t.dstPort));
  return attrNested(type, [
    attrNested(CTA_TUPLE_IP, [attrIPv4(CTA_IP_V4_SRC, t.src), attrIPv4(CTA_IP_V4_DST, t.dst)]),
    attrNested(CTA_TUPLE_PROTO, l4),
  ]);
}

/**
 * Every IPv4 conntrack entry of the socket's network namespace (IPCTNL_MSG_CT_GET dump).
 * @throws KernelError naming the request.
 */
export async function conntrackList(nl: NetlinkSocket): Promise<ConntrackEntry[]> {
  const msgs = await nl.dump(msgType(IPCTNL_MSG_CT_GET), encodeBody(nfgenmsg(AF_INET)), {
    context: "conntrackList",
  });
  const out: ConntrackEntry[] = [];
  for (const m of msgs) {
    if (m.type !== msgType(IPCTNL_MSG_CT_NEW) || m.payload.length < NFGENMSG_LEN) continue;
    if (m.payload.readUInt8(0) !== AF_INET) continue;
    const a = decodeAttrs(m.payload, NFGENMSG_LEN);
    const orig = a.get(CTA_TUPLE_ORIG);
    const reply = a.get(CTA_TUPLE_REPLY);
    if (!orig || !reply) continue;
    const e: ConntrackEntry = { orig: parseTuple(orig), reply: parseTuple(reply) };
    const id = a.get(CTA_ID);
    if (id && id.length >= 4) e.id = id.readUInt32BE(0);
    const zone = a.get(CTA_ZONE);
    if (zone && zone.length >= 2 && zone.readUInt16BE(0) !== 0) e.zone = zone.readUInt16BE(0);
    out.push(e);
  }
  return out;
}

/**
 * Deletes exactly this entry (by its original tuple, and its id when known, so a newer entry with
 * the same tuple is left alone).
 * @returns false when the entry was already gone (ENOENT).
 * @throws KernelError otherwise.
 */
export async function conntrackDelete(nl: NetlinkSocket, e: ConntrackEntry): Promise<boolean> {
  const attrs = [tupleAttr(CTA_TUPLE_ORIG, e.orig)];
  if (e.id !== undefined) attrs.push(be32(CTA_ID, e.id));
  if (e.zone !== undefined) attrs.push(be16(CTA_ZONE, e.zone));
  try {
    await nl.request(msgType(IPCTNL_MSG_CT_DELETE), 0, encodeBody(nfgenmsg(AF_INET), attrs), {
      context: `conntrackDelete ${e.orig.src}:${e.orig.srcPort ?? ""} -> ${e.orig.dst}:${e.orig.dstPort ?? ""}`,
    });
    return true;
  } catch (err) {
    if (err instanceof KernelError && err.errno === ENOENT) return false;
    throw err;
  }
}

/** True when `e` matches every field `f` gives. */
export function conntrackMatches(e: ConntrackEntry, f: ConntrackFilter): boolean {
  if (e.orig.proto !== IPPROTO[f.protocol]) return false;
  if (f.origDstPorts && !(e.orig.dstPort !== undefined && f.origDstPorts.includes(e.orig.dstPort)))
    return false;
  if (f.origDst !== undefined && e.orig.dst !== f.origDst) return false;
  if (f.replySrc !== undefined && e.reply.src !== f.replySrc) return false;
  return true;
}

/**
 * Deletes every IPv4 entry matching `filter` (one dump, then one delete per match).
 * @returns how many entries were deleted.
 * @throws ValidationError for a bad filter (nothing sent); KernelError.
 */
export async function conntrackDeleteMatching(nl: NetlinkSocket, filter: ConntrackFilter): Promise<number> {
  const f: ConntrackFilter = { ...filter, protocol: validateProtocol(filter.protocol) };
  for (const p of f.origDstPorts ?? []) validatePort(p, "origDstPorts");
  if (!f.origDstPorts && f.origDst === undefined && f.replySrc === undefined) {
    throw new ValidationError(
      "filter",
      "give origDstPorts, origDst or replySrc (refusing to flush a whole protocol)",
    );
  }
  let n = 0;
  for (const e of await conntrackList(nl)) {
    if (conntrackMatches(e, f) && (await conntrackDelete(nl, e))) n++;
  }
  return n;
}
