/**
 * Pure encoder/decoder of netlink messages (no I/O). Layouts follow linux/netlink.h (struct nlmsghdr,
 * struct nlattr, struct nlmsgerr) and linux/rtnetlink.h, if_addr.h, neighbour.h (the fixed headers).
 *
 * Netlink integers are in host byte order. This module writes little-endian, which is what every
 * platform Firecracker runs on uses (x86-64, aarch64); `NetlinkSocket.open` refuses big-endian hosts.
 * Addresses inside attributes (IPv4, MAC) are plain byte strings in network order.
 */
import { MvnetError, ValidationError } from "../../core/errors.js";
import { validateIPv4 } from "../../core/validate.js";
import {
  IFADDRMSG_LEN,
  IFINFOMSG_LEN,
  NDMSG_LEN,
  NLA_F_NESTED,
  NLA_HDRLEN,
  NLA_TYPE_MASK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_ALIGNTO,
  NLMSG_HDRLEN,
  NLMSGERR_ATTR_MISS_TYPE,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
  RTMSG_LEN,
} from "./constants.js";

/** Rounds a length up to the 4-byte netlink alignment (`NLMSG_ALIGN`, `NLA_ALIGN`). */
export function align(len: number): number {
  return (len + NLMSG_ALIGNTO - 1) & ~(NLMSG_ALIGNTO - 1);
}

/** A netlink message whose bytes this process owns (never a view of a reused receive buffer). */
export interface NlMsg {
  /** nlmsg_type: RTM_* or NLMSG_* value. */
  type: number;
  /** nlmsg_flags (NLM_F_*). */
  flags: number;
  /** nlmsg_seq, echoed by the kernel from the request. */
  seq: number;
  /** nlmsg_pid: the port id the message was addressed to (ours) or came from. */
  pid: number;
  /** Everything after the 16-byte header, without trailing alignment padding. */
  payload: Buffer;
}

/** Malformed bytes (from the kernel, or a test): decoding stopped. Code `ERR_NETLINK_DECODE`. */
function malformed(message: string): MvnetError {
  return new MvnetError("ERR_NETLINK_DECODE", `netlink: ${message}`);
}

// ---- encoding ----

/**
 * Encodes one message: a 16-byte nlmsghdr followed by `body` (fixed header + attributes, already
 * aligned). `nlmsg_len` counts header and body.
 */
export function encodeMessage(
  h: { type: number; flags: number; seq: number; pid?: number },
  body: Buffer,
): Buffer {
  const out = Buffer.alloc(NLMSG_HDRLEN + align(body.length));
  out.writeUInt32LE(NLMSG_HDRLEN + body.length, 0);
  out.writeUInt16LE(h.type, 4);
  out.writeUInt16LE(h.flags, 6);
  out.writeUInt32LE(h.seq >>> 0, 8);
  out.writeUInt32LE((h.pid ?? 0) >>> 0, 12);
  body.copy(out, NLMSG_HDRLEN);
  return out;
}

/** Concatenates a fixed header and encoded attributes into a message body. */
export function encodeBody(fixed: Buffer, attrs: Buffer[] = []): Buffer {
  return Buffer.concat([fixed, ...attrs]);
}

/**
 * One attribute: `nla_len` (4 + payload length, unpadded) and `nla_type`, then the payload, then
 * zero padding up to a multiple of 4 (which `nla_len` does not count).
 */
export function attr(type: number, payload: Buffer): Buffer {
  const len = NLA_HDRLEN + payload.length;
  if (len > 0xffff) throw new ValidationError("attribute", `payload of ${payload.length} bytes is too long`);
  const out = Buffer.alloc(align(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, NLA_HDRLEN);
  return out;
}

/** u8 attribute. */
export function attrU8(type: number, value: number): Buffer {
  return attr(type, Buffer.from([value & 0xff]));
}

/** u16 attribute (host order). */
export function attrU16(type: number, value: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(value);
  return attr(type, b);
}

/** u32 attribute (host order). */
export function attrU32(type: number, value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value >>> 0);
  return attr(type, b);
}

/** String attribute, NUL-terminated as `nla_put_string` does (NLA_NUL_STRING / NLA_STRING policies). */
export function attrString(type: number, value: string): Buffer {
  return attr(type, Buffer.concat([Buffer.from(value, "utf8"), Buffer.alloc(1)]));
}

/**
 * String attribute without the NUL. Needed where the kernel keeps `nla_len` bytes verbatim, e.g.
 * IFLA_IFALIAS (`dev_set_alias` copies the whole payload; an empty payload removes the alias).
 */
export function attrStringRaw(type: number, value: string): Buffer {
  return attr(type, Buffer.from(value, "utf8"));
}

/** IPv4 address attribute: 4 bytes in network order. @throws ValidationError on a malformed address. */
export function attrIPv4(type: number, ip: string): Buffer {
  return attr(type, ipv4Bytes(ip));
}

/** MAC address attribute: 6 bytes. @throws ValidationError on a malformed MAC. */
export function attrMac(type: number, mac: string): Buffer {
  return attr(type, macBytes(mac));
}

/** Nested attribute: NLA_F_NESTED set in the type, the payload being the aligned child attributes. */
export function attrNested(type: number, children: Buffer[]): Buffer {
  return attr(type | NLA_F_NESTED, Buffer.concat(children));
}

/** `a.b.c.d` → 4 bytes. @throws ValidationError (code `ERR_INVALID_ADDRESS`). */
export function ipv4Bytes(ip: string, field = "address"): Buffer {
  return Buffer.from(validateIPv4(ip, field).split(".").map(Number));
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/**
 * `aa:bb:cc:dd:ee:ff` (either case) → 6 bytes. Multicast MACs (low bit of the first octet set) and
 * all-zero are refused because the kernel rejects them as a unicast device address
 * (`is_valid_ether_addr`, include/linux/etherdevice.h).
 * @throws ValidationError (code `ERR_INVALID_MAC`).
 */
export function macBytes(mac: string, field = "mac"): Buffer {
  if (typeof mac !== "string" || !MAC_RE.test(mac)) {
    throw new ValidationError(
      field,
      `${JSON.stringify(mac)} is not a MAC such as 02:00:00:00:00:01`,
      "ERR_INVALID_MAC",
    );
  }
  const b = Buffer.from(mac.split(":").map((x) => Number.parseInt(x, 16)));
  if (((b[0] as number) & 1) === 1 || b.every((x) => x === 0)) {
    throw new ValidationError(field, `${mac} is not a unicast MAC address`, "ERR_INVALID_MAC");
  }
  return b;
}

/** struct ifinfomsg (linux/rtnetlink.h), 16 bytes. */
export interface IfInfoMsg {
  family: number;
  /** ARPHRD_* link type. */
  type: number;
  /** ifindex; 0 when the request names the link another way. */
  index: number;
  /** IFF_* flags. */
  flags: number;
  /** Which IFF_* bits `flags` changes (requests only). */
  change: number;
}

/** Encodes struct ifinfomsg; absent fields are 0. */
export function ifinfomsg(m: Partial<IfInfoMsg>): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b.writeUInt8(m.family ?? 0, 0);
  b.writeUInt16LE(m.type ?? 0, 2);
  b.writeInt32LE(m.index ?? 0, 4);
  b.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((m.change ?? 0) >>> 0, 12);
  return b;
}

/** Decodes struct ifinfomsg from the start of a payload. @throws MvnetError (code `ERR_NETLINK_DECODE`) if too short. */
export function decodeIfinfomsg(p: Buffer): IfInfoMsg {
  need(p, IFINFOMSG_LEN, "ifinfomsg");
  return {
    family: p.readUInt8(0),
    type: p.readUInt16LE(2),
    index: p.readInt32LE(4),
    flags: p.readUInt32LE(8),
    change: p.readUInt32LE(12),
  };
}

/** struct ifaddrmsg (linux/if_addr.h), 8 bytes. */
export interface IfAddrMsg {
  family: number;
  /** Prefix length, 0–32 for IPv4. */
  prefixlen: number;
  /** IFA_F_* (low 8 bits; IFA_FLAGS carries all 32). */
  flags: number;
  /** RT_SCOPE_*. */
  scope: number;
  index: number;
}

/** Encodes struct ifaddrmsg; absent fields are 0. */
export function ifaddrmsg(m: Partial<IfAddrMsg>): Buffer {
  const b = Buffer.alloc(IFADDRMSG_LEN);
  b.writeUInt8(m.family ?? 0, 0);
  b.writeUInt8(m.prefixlen ?? 0, 1);
  b.writeUInt8(m.flags ?? 0, 2);
  b.writeUInt8(m.scope ?? 0, 3);
  b.writeUInt32LE(m.index ?? 0, 4);
  return b;
}

/** Decodes struct ifaddrmsg. @throws MvnetError (code `ERR_NETLINK_DECODE`) if too short. */
export function decodeIfaddrmsg(p: Buffer): IfAddrMsg {
  need(p, IFADDRMSG_LEN, "ifaddrmsg");
  return {
    family: p.readUInt8(0),
    prefixlen: p.readUInt8(1),
    flags: p.readUInt8(2),
    scope: p.readUInt8(3),
    index: p.readUInt32LE(4),
  };
}

/** struct rtmsg (linux/rtnetlink.h), 12 bytes. */
export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  /** Table id, or RT_TABLE_COMPAT when it does not fit in 8 bits (then RTA_TABLE holds it). */
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}

/** Encodes struct rtmsg; absent fields are 0. */
export function rtmsg(m: Partial<RtMsg>): Buffer {
  const b = Buffer.alloc(RTMSG_LEN);
  b.writeUInt8(m.family ?? 0, 0);
  b.writeUInt8(m.dstLen ?? 0, 1);
  b.writeUInt8(m.srcLen ?? 0, 2);
  b.writeUInt8(m.tos ?? 0, 3);
  b.writeUInt8(m.table ?? 0, 4);
  b.writeUInt8(m.protocol ?? 0, 5);
  b.writeUInt8(m.scope ?? 0, 6);
  b.writeUInt8(m.type ?? 0, 7);
  b.writeUInt32LE((m.flags ?? 0) >>> 0, 8);
  return b;
}

/** Decodes struct rtmsg. @throws MvnetError (code `ERR_NETLINK_DECODE`) if too short. */
export function decodeRtmsg(p: Buffer): RtMsg {
  need(p, RTMSG_LEN, "rtmsg");
  return {
    family: p.readUInt8(0),
    dstLen: p.readUInt8(1),
    srcLen: p.readUInt8(2),
    tos: p.readUInt8(3),
    table: p.readUInt8(4),
    protocol: p.readUInt8(5),
    scope: p.readUInt8(6),
    type: p.readUInt8(7),
    flags: p.readUInt32LE(8),
  };
}

/** struct ndmsg (linux/neighbour.h), 12 bytes. */
export interface NdMsg {
  family: number;
  index: number;
  /** NUD_* state. */
  state: number;
  /** NTF_* flags. */
  flags: number;
  type: number;
}

/** Encodes struct ndmsg; absent fields are 0. */
export function ndmsg(m: Partial<NdMsg>): Buffer {
  const b = Buffer.alloc(NDMSG_LEN);
  b.writeUInt8(m.family ?? 0, 0);
  b.writeInt32LE(m.index ?? 0, 4);
  b.writeUInt16LE(m.state ?? 0, 8);
  b.writeUInt8(m.flags ?? 0, 10);
  b.writeUInt8(m.type ?? 0, 11);
  return b;
}

// ---- decoding ----

function need(p: Buffer, len: number, what: string): void {
  if (p.length < len) throw malformed(`${what} needs ${len} bytes, got ${p.length}`);
}

/**
 * Splits a received datagram into messages. The input is copied once, so the caller may reuse its
 * receive buffer right away; the returned payloads are views of that private copy.
 * @throws MvnetError (code `ERR_NETLINK_DECODE`) when a length field is impossible (shorter than a header or past the end).
 */
export function decodeMessages(datagram: Buffer): NlMsg[] {
  const buf = Buffer.from(datagram);
  const out: NlMsg[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      throw malformed(`message at offset ${off} claims ${len} bytes, ${buf.length - off} left`);
    }
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align(len);
  }
  return out;
}

/**
 * Attributes of a payload from `offset` on (usually the aligned size of the fixed header), keyed by
 * type with the NLA_F_NESTED / NLA_F_NET_BYTEORDER bits masked off. A type that repeats keeps its
 * last value, as the kernel's own `nla_parse` does. Values are views of `p`.
 * @param wanted when given, only these types are returned (every attribute is still checked): a
 *   link message carries ≈ 50 attributes and a caller reading six should not pay a view for each.
 * @throws MvnetError (code `ERR_NETLINK_DECODE`) on an attribute running past the end.
 */
export function decodeAttrs(p: Buffer, offset = 0, wanted?: ReadonlySet<number>): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = offset;
  while (off + NLA_HDRLEN <= p.length) {
    const len = p.readUInt16LE(off);
    const type = p.readUInt16LE(off + 2) & NLA_TYPE_MASK;
    if (len < NLA_HDRLEN || off + len > p.length) {
      throw malformed(`attribute ${type} at offset ${off} claims ${len} bytes, ${p.length - off} left`);
    }
    if (wanted === undefined || wanted.has(type)) out.set(type, p.subarray(off + NLA_HDRLEN, off + len));
    off += align(len);
  }
  return out;
}

/** u8 payload. */
export function readU8(v: Buffer): number {
  need(v, 1, "u8 attribute");
  return v.readUInt8(0);
}

/** u32 payload (host order). */
export function readU32(v: Buffer): number {
  need(v, 4, "u32 attribute");
  return v.readUInt32LE(0);
}

/** String payload up to the first NUL (kernel strings are NUL-terminated; some are not). */
export function readString(v: Buffer): string {
  const nul = v.indexOf(0);
  return v.toString("utf8", 0, nul === -1 ? v.length : nul);
}

/** 4-byte payload → `a.b.c.d`. */
export function readIPv4(v: Buffer): string {
  need(v, 4, "IPv4 attribute");
  return `${v[0]}.${v[1]}.${v[2]}.${v[3]}`;
}

/** Hardware address payload → lower-case `aa:bb:…` (any length: 6 for Ethernet). */
export function readMac(v: Buffer): string {
  return [...v].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/** A decoded NLMSG_ERROR (errno 0 = acknowledgement) or the status carried by NLMSG_DONE. */
export interface NlError {
  /** Positive errno; 0 for a success ACK. */
  errno: number;
  /** NLMSGERR_ATTR_MSG: the kernel's extended-ack text, when it sent one. */
  message?: string;
  /** NLMSGERR_ATTR_OFFS: byte offset of the offending attribute in the request, from its nlmsghdr. */
  offset?: number;
  /** NLMSGERR_ATTR_MISS_TYPE: type of a required attribute the request lacked. */
  missingType?: number;
  /** The echoed request header (NLMSG_ERROR only). */
  request?: { len: number; type: number; flags: number; seq: number; pid: number };
}

function decodeExtAck(p: Buffer, from: number, into: NlError): void {
  const tlv = decodeAttrs(p, from);
  const msg = tlv.get(NLMSGERR_ATTR_MSG);
  if (msg) into.message = readString(msg);
  const offs = tlv.get(NLMSGERR_ATTR_OFFS);
  if (offs && offs.length >= 4) into.offset = readU32(offs);
  const miss = tlv.get(NLMSGERR_ATTR_MISS_TYPE);
  if (miss && miss.length >= 4) into.missingType = readU32(miss);
}

/**
 * Decodes an NLMSG_ERROR payload (`struct nlmsgerr`: int error, then the request's nlmsghdr, then the
 * request's body unless NLM_F_CAPPED, then extended-ack TLVs if NLM_F_ACK_TLVS). See netlink_ack()
 * in net/netlink/af_netlink.c.
 * @throws MvnetError (code `ERR_NETLINK_DECODE`) if the payload is shorter than `struct nlmsgerr`.
 */
export function decodeError(msg: NlMsg): NlError {
  const p = msg.payload;
  need(p, 4 + NLMSG_HDRLEN, "nlmsgerr");
  const out: NlError = {
    errno: Math.abs(p.readInt32LE(0)),
    request: {
      len: p.readUInt32LE(4),
      type: p.readUInt16LE(8),
      flags: p.readUInt16LE(10),
      seq: p.readUInt32LE(12),
      pid: p.readUInt32LE(16),
    },
  };
  if (msg.flags & NLM_F_ACK_TLVS) {
    const echoed = msg.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align(out.request?.len ?? NLMSG_HDRLEN);
    decodeExtAck(p, 4 + echoed, out);
  }
  return out;
}

/**
 * Decodes an NLMSG_DONE payload: an int (0, or -errno when the dump failed part-way), then
 * extended-ack TLVs if NLM_F_ACK_TLVS (netlink_dump_done() in net/netlink/af_netlink.c).
 * An empty payload (very old kernels) means success.
 */
export function decodeDone(msg: NlMsg): NlError {
  const p = msg.payload;
  if (p.length < 4) return { errno: 0 };
  const out: NlError = { errno: Math.abs(p.readInt32LE(0)) };
  if (msg.flags & NLM_F_ACK_TLVS) decodeExtAck(p, 4, out);
  return out;
}
