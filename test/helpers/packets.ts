// Pure frame builders and parsers for tests that read and write a TAP: Ethernet II, ARP (RFC 826),
// IPv4 (RFC 791), ICMP echo (RFC 792), UDP (RFC 768), TCP (RFC 9293), the internet checksum
// (RFC 1071), IPv6 (RFC 8200) with ICMPv6 (RFC 4443), neighbour discovery messages (RFC 4861) and
// EUI-64 addresses (RFC 4291), and the virtio_net_hdr prefix a TAP opened with IFF_VNET_HDR puts
// before every frame (include/uapi/linux/virtio_net.h). No I/O here.

/** `sizeof(struct virtio_net_hdr)`: the TAP's default vnet header size (TUNSETVNETHDRSZ is never called). */
export const VNET_HDR_LEN = 10;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const BROADCAST_MAC = "ff:ff:ff:ff:ff:ff";

/** TCP header flag bits (byte 13). */
export const TCP_FLAGS = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20 } as const;

/** `aa:bb:cc:dd:ee:ff` → 6 bytes. */
export function macToBytes(mac: string): Buffer {
  const parts = mac.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new Error(`not a MAC address: ${mac}`);
  }
  return Buffer.from(parts.map((p) => Number.parseInt(p, 16)));
}

/** 6 bytes → `aa:bb:cc:dd:ee:ff` (lower case). */
export function macFromBytes(b: Buffer): string {
  return [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/** `10.200.0.1` → 4 bytes. */
export function ipToBytes(ip: string): Buffer {
  const parts = ip.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  return Buffer.from(parts);
}

/** 4 bytes → dotted quad. */
export function ipFromBytes(b: Buffer): string {
  return [...b.subarray(0, 4)].join(".");
}

/** RFC 1071 internet checksum of `buf` (ones' complement of the ones' complement sum of 16-bit words). */
export function internetChecksum(...parts: Buffer[]): number {
  let sum = 0;
  const all = Buffer.concat(parts);
  for (let i = 0; i + 1 < all.length; i += 2) sum += all.readUInt16BE(i);
  if (all.length % 2 === 1) sum += (all[all.length - 1] as number) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

// ---------------------------------------------------------------- virtio_net_hdr

/** Prefixes `frame` with a virtio_net_hdr: 10 zero bytes (no checksum offload, no GSO) unless given. */
export function withVnetHdr(frame: Buffer, hdr: Buffer = Buffer.alloc(VNET_HDR_LEN)): Buffer {
  if (hdr.length !== VNET_HDR_LEN) throw new Error(`a virtio_net_hdr is ${VNET_HDR_LEN} bytes`);
  return Buffer.concat([hdr, frame]);
}

/** Splits what a TAP read returned into its virtio_net_hdr and the Ethernet frame (a copy). */
export function stripVnetHdr(buf: Buffer): { hdr: Buffer; frame: Buffer } {
  if (buf.length < VNET_HDR_LEN) throw new Error("shorter than a virtio_net_hdr");
  return {
    hdr: Buffer.from(buf.subarray(0, VNET_HDR_LEN)),
    frame: Buffer.from(buf.subarray(VNET_HDR_LEN)),
  };
}

// ---------------------------------------------------------------- Ethernet

export interface EthernetFrame {
  dst: string;
  src: string;
  etherType: number;
  payload: Buffer;
}

/** Ethernet II frame (no FCS: the TAP neither adds nor expects one). */
export function buildEthernet(f: EthernetFrame): Buffer {
  const h = Buffer.alloc(14);
  macToBytes(f.dst).copy(h, 0);
  macToBytes(f.src).copy(h, 6);
  h.writeUInt16BE(f.etherType, 12);
  return Buffer.concat([h, f.payload]);
}

/** Parses an Ethernet II header; `payload` is a view into `buf`. */
export function parseEthernet(buf: Buffer): EthernetFrame {
  if (buf.length < 14) throw new Error("shorter than an Ethernet header");
  return {
    dst: macFromBytes(buf.subarray(0, 6)),
    src: macFromBytes(buf.subarray(6, 12)),
    etherType: buf.readUInt16BE(12),
    payload: buf.subarray(14),
  };
}

// ---------------------------------------------------------------- ARP

export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;

export interface ArpPacket {
  op: number;
  senderMac: string;
  senderIp: string;
  targetMac: string;
  targetIp: string;
}

/** ARP over Ethernet for IPv4: 28 bytes (htype 1, ptype 0x0800, hlen 6, plen 4). */
export function buildArp(p: ArpPacket): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0);
  b.writeUInt16BE(ETHERTYPE_IPV4, 2);
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(p.op, 6);
  macToBytes(p.senderMac).copy(b, 8);
  ipToBytes(p.senderIp).copy(b, 14);
  macToBytes(p.targetMac).copy(b, 18);
  ipToBytes(p.targetIp).copy(b, 24);
  return b;
}

/** Parses Ethernet/IPv4 ARP. @throws for another hardware or protocol type. */
export function parseArp(b: Buffer): ArpPacket {
  if (b.length < 28 || b.readUInt16BE(0) !== 1 || b.readUInt16BE(2) !== ETHERTYPE_IPV4) {
    throw new Error("not an Ethernet/IPv4 ARP packet");
  }
  return {
    op: b.readUInt16BE(6),
    senderMac: macFromBytes(b.subarray(8, 14)),
    senderIp: ipFromBytes(b.subarray(14, 18)),
    targetMac: macFromBytes(b.subarray(18, 24)),
    targetIp: ipFromBytes(b.subarray(24, 28)),
  };
}

/** The whole Ethernet frame answering ARP `request` with `mac` (unicast back to the asker). */
export function arpReplyFrame(request: ArpPacket, mac: string): Buffer {
  return buildEthernet({
    dst: request.senderMac,
    src: mac,
    etherType: ETHERTYPE_ARP,
    payload: buildArp({
      op: ARP_REPLY,
      senderMac: mac,
      senderIp: request.targetIp,
      targetMac: request.senderMac,
      targetIp: request.senderIp,
    }),
  });
}

/** A broadcast ARP request frame: who has `targetIp`? tell `senderIp`. */
export function arpRequestFrame(senderMac: string, senderIp: string, targetIp: string): Buffer {
  return buildEthernet({
    dst: BROADCAST_MAC,
    src: senderMac,
    etherType: ETHERTYPE_ARP,
    payload: buildArp({
      op: ARP_REQUEST,
      senderMac,
      senderIp,
      targetMac: "00:00:00:00:00:00",
      targetIp,
    }),
  });
}

// ---------------------------------------------------------------- IPv4

export interface Ipv4Build {
  src: string;
  dst: string;
  protocol: number;
  payload: Buffer;
  ttl?: number;
  id?: number;
  /** Set the DF bit (default true, as Linux does for most traffic). */
  dontFragment?: boolean;
}

export interface Ipv4Packet {
  src: string;
  dst: string;
  protocol: number;
  ttl: number;
  id: number;
  headerLength: number;
  totalLength: number;
  /** True when the header checksum verifies. */
  checksumOk: boolean;
  /** The payload, cut at totalLength (Ethernet padding removed); a view into the input. */
  payload: Buffer;
}

/** IPv4 packet with a 20-byte header (no options) and its header checksum. */
export function buildIpv4(p: Ipv4Build): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + p.payload.length, 2);
  h.writeUInt16BE(p.id ?? 0, 4);
  h.writeUInt16BE((p.dontFragment ?? true) ? 0x4000 : 0, 6);
  h[8] = p.ttl ?? 64;
  h[9] = p.protocol;
  ipToBytes(p.src).copy(h, 12);
  ipToBytes(p.dst).copy(h, 16);
  h.writeUInt16BE(internetChecksum(h), 10);
  return Buffer.concat([h, p.payload]);
}

/** Parses an IPv4 header. @throws when it is not version 4 or is truncated. */
export function parseIpv4(b: Buffer): Ipv4Packet {
  if (b.length < 20 || (b[0] as number) >> 4 !== 4) throw new Error("not an IPv4 packet");
  const headerLength = ((b[0] as number) & 0x0f) * 4;
  const totalLength = b.readUInt16BE(2);
  if (headerLength < 20 || totalLength < headerLength || totalLength > b.length) {
    throw new Error("truncated IPv4 packet");
  }
  return {
    src: ipFromBytes(b.subarray(12, 16)),
    dst: ipFromBytes(b.subarray(16, 20)),
    protocol: b[9] as number,
    ttl: b[8] as number,
    id: b.readUInt16BE(4),
    headerLength,
    totalLength,
    checksumOk: internetChecksum(b.subarray(0, headerLength)) === 0,
    payload: b.subarray(headerLength, totalLength),
  };
}

function pseudoHeader(src: string, dst: string, protocol: number, length: number): Buffer {
  const p = Buffer.alloc(12);
  ipToBytes(src).copy(p, 0);
  ipToBytes(dst).copy(p, 4);
  p[9] = protocol;
  p.writeUInt16BE(length, 10);
  return p;
}

/** Checksum of a UDP or TCP segment over the IPv4 pseudo-header; 0 when the stored checksum is right. */
export function transportChecksum(src: string, dst: string, protocol: number, segment: Buffer): number {
  return internetChecksum(pseudoHeader(src, dst, protocol, segment.length), segment);
}

// ---------------------------------------------------------------- UDP

export interface UdpBuild {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload: Buffer;
  /** Compute the checksum (default true); false leaves 0, "no checksum" for UDP over IPv4. */
  checksum?: boolean;
}

export interface UdpDatagram {
  sport: number;
  dport: number;
  length: number;
  checksum: number;
  payload: Buffer;
}

/** UDP header + payload (the IPv4 addresses are needed for the checksum's pseudo-header). */
export function buildUdp(u: UdpBuild): Buffer {
  const seg = Buffer.alloc(8 + u.payload.length);
  seg.writeUInt16BE(u.sport, 0);
  seg.writeUInt16BE(u.dport, 2);
  seg.writeUInt16BE(seg.length, 4);
  u.payload.copy(seg, 8);
  if (u.checksum ?? true) {
    const c = transportChecksum(u.src, u.dst, IPPROTO_UDP, seg);
    seg.writeUInt16BE(c === 0 ? 0xffff : c, 6); // RFC 768: a computed 0 is sent as all ones
  }
  return seg;
}

/** Parses a UDP header; `payload` is cut at the UDP length. */
export function parseUdp(b: Buffer): UdpDatagram {
  if (b.length < 8) throw new Error("shorter than a UDP header");
  const length = b.readUInt16BE(4);
  if (length < 8 || length > b.length) throw new Error("truncated UDP datagram");
  return {
    sport: b.readUInt16BE(0),
    dport: b.readUInt16BE(2),
    length,
    checksum: b.readUInt16BE(6),
    payload: b.subarray(8, length),
  };
}

// ---------------------------------------------------------------- TCP

export interface TcpBuild {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  /** Bit mask of {@link TCP_FLAGS}; default SYN. */
  flags?: number;
  window?: number;
  payload?: Buffer;
}

export interface TcpSegment {
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  dataOffset: number;
  payload: Buffer;
}

/** TCP segment with a 20-byte header (no options) and its checksum. */
export function buildTcp(t: TcpBuild): Buffer {
  const payload = t.payload ?? Buffer.alloc(0);
  const seg = Buffer.alloc(20 + payload.length);
  seg.writeUInt16BE(t.sport, 0);
  seg.writeUInt16BE(t.dport, 2);
  seg.writeUInt32BE((t.seq ?? 0) >>> 0, 4);
  seg.writeUInt32BE((t.ack ?? 0) >>> 0, 8);
  seg[12] = 5 << 4;
  seg[13] = t.flags ?? TCP_FLAGS.SYN;
  seg.writeUInt16BE(t.window ?? 64240, 14);
  payload.copy(seg, 20);
  seg.writeUInt16BE(transportChecksum(t.src, t.dst, IPPROTO_TCP, seg), 16);
  return seg;
}

/** Parses a TCP header (options skipped). */
export function parseTcp(b: Buffer): TcpSegment {
  if (b.length < 20) throw new Error("shorter than a TCP header");
  const dataOffset = ((b[12] as number) >> 4) * 4;
  if (dataOffset < 20 || dataOffset > b.length) throw new Error("bad TCP data offset");
  return {
    sport: b.readUInt16BE(0),
    dport: b.readUInt16BE(2),
    seq: b.readUInt32BE(4),
    ack: b.readUInt32BE(8),
    flags: (b[13] as number) & 0x3f,
    window: b.readUInt16BE(14),
    dataOffset,
    payload: b.subarray(dataOffset),
  };
}

/** Flag bits → names in header order, e.g. 0x12 → ["SYN", "ACK"]. */
export function tcpFlagNames(flags: number): string[] {
  return (Object.entries(TCP_FLAGS) as Array<[string, number]>)
    .filter(([, bit]) => (flags & bit) !== 0)
    .map(([name]) => name);
}

// ---------------------------------------------------------------- whole frames

/** What a test wants to know about one IPv4 frame (the fake guest's report line). */
export interface Ipv4Summary {
  srcMac: string;
  dstMac: string;
  src: string;
  dst: string;
  /** "tcp" | "udp" | "icmp" | the protocol number as text. */
  proto: string;
  ttl: number;
  sport?: number;
  dport?: number;
  /** TCP flag names, e.g. ["SYN"]. */
  flags?: string[];
  /** UDP/TCP payload as hex. */
  payload?: string;
  /** IPv4 header and (when present) UDP/TCP checksums verify. */
  checksumOk: boolean;
}

/** Summarises an Ethernet frame carrying IPv4, or returns undefined for anything else. */
export function summarizeIpv4(frame: Buffer): Ipv4Summary | undefined {
  const eth = parseEthernet(frame);
  if (eth.etherType !== ETHERTYPE_IPV4) return undefined;
  const ip = parseIpv4(eth.payload);
  const base = { srcMac: eth.src, dstMac: eth.dst, src: ip.src, dst: ip.dst, ttl: ip.ttl };
  if (ip.protocol === IPPROTO_UDP) {
    const u = parseUdp(ip.payload);
    const l4ok = u.checksum === 0 || transportChecksum(ip.src, ip.dst, IPPROTO_UDP, ip.payload) === 0;
    return {
      ...base,
      proto: "udp",
      sport: u.sport,
      dport: u.dport,
      payload: u.payload.toString("hex"),
      checksumOk: ip.checksumOk && l4ok,
    };
  }
  if (ip.protocol === IPPROTO_TCP) {
    const t = parseTcp(ip.payload);
    const l4ok = transportChecksum(ip.src, ip.dst, IPPROTO_TCP, ip.payload) === 0;
    return {
      ...base,
      proto: "tcp",
      sport: t.sport,
      dport: t.dport,
      flags: tcpFlagNames(t.flags),
      payload: t.payload.toString("hex"),
      checksumOk: ip.checksumOk && l4ok,
    };
  }
  const proto = ip.protocol === IPPROTO_ICMP ? "icmp" : String(ip.protocol);
  return { ...base, proto, checksumOk: ip.checksumOk };
}

/** Ethernet + IPv4 around a transport `payload` of `protocol`. */
function ipv4Frame(
  f: { srcMac: string; dstMac: string; src: string; dst: string },
  protocol: number,
  payload: Buffer,
): Buffer {
  return buildEthernet({
    dst: f.dstMac,
    src: f.srcMac,
    etherType: ETHERTYPE_IPV4,
    payload: buildIpv4({ src: f.src, dst: f.dst, protocol, payload }),
  });
}

/** Ethernet + IPv4 + UDP in one frame. */
export function udpFrame(f: {
  srcMac: string;
  dstMac: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload: Buffer;
  checksum?: boolean;
}): Buffer {
  return ipv4Frame(f, IPPROTO_UDP, buildUdp({ ...f, checksum: f.checksum ?? true }));
}

/** Ethernet + IPv4 + TCP in one frame (default: a SYN). */
export function tcpFrame(f: { srcMac: string; dstMac: string } & TcpBuild): Buffer {
  return ipv4Frame(f, IPPROTO_TCP, buildTcp(f));
}

// ---------------------------------------------------------------- ICMP (IPv4)

export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO_REQUEST = 8;

/** An ICMP echo request or reply (RFC 792): type, code 0, checksum over the message, id, seq, data. */
export function buildIcmpEcho(e: { type?: number; id: number; seq: number; data?: Buffer }): Buffer {
  const data = e.data ?? Buffer.alloc(0);
  const m = Buffer.alloc(8 + data.length);
  m[0] = e.type ?? ICMP_ECHO_REQUEST;
  m.writeUInt16BE(e.id, 4);
  m.writeUInt16BE(e.seq, 6);
  data.copy(m, 8);
  m.writeUInt16BE(internetChecksum(m), 2);
  return m;
}

/** Ethernet + IPv4 + ICMP echo request (a guest's ping). */
export function icmpEchoFrame(f: {
  srcMac: string;
  dstMac: string;
  src: string;
  dst: string;
  id: number;
  seq: number;
  data?: Buffer;
}): Buffer {
  return ipv4Frame(f, IPPROTO_ICMP, buildIcmpEcho(f));
}

// ---------------------------------------------------------------- IPv6

export const IPPROTO_ICMPV6 = 58;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
export const ICMPV6_ROUTER_SOLICITATION = 133;
export const ICMPV6_ROUTER_ADVERTISEMENT = 134;
export const ICMPV6_NEIGHBOR_SOLICITATION = 135;
export const ICMPV6_NEIGHBOR_ADVERTISEMENT = 136;
/** All-nodes link-local multicast (RFC 4291 §2.7.1). */
export const ALL_NODES = "ff02::1";

/** IPv6 text (any RFC 4291 §2.2 form without an embedded IPv4 part or zone) → 16 bytes. */
export function ipv6ToBytes(ip: string): Buffer {
  const halves = ip.split("::");
  const hex = /^[0-9a-fA-F]{1,4}$/;
  const groups = (s: string) => (s === "" ? [] : s.split(":"));
  if (halves.length > 2) throw new Error(`not an IPv6 address: ${ip}`);
  const head = groups(halves[0] as string);
  const tail = halves.length === 2 ? groups(halves[1] as string) : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const all = [...head, ...Array<string>(Math.max(fill, 0)).fill("0"), ...tail];
  if (all.length !== 8 || (halves.length === 2 && fill < 1) || !all.every((g) => hex.test(g))) {
    throw new Error(`not an IPv6 address: ${ip}`);
  }
  const b = Buffer.alloc(16);
  for (const [i, g] of all.entries()) b.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  return b;
}

/** 16 bytes → the RFC 5952 text form (lower case, longest run of two or more zero groups as `::`). */
export function ipv6FromBytes(b: Buffer): string {
  const g = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2));
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  const text = g.map((x) => x.toString(16));
  if (best.at < 0) return text.join(":");
  return `${text.slice(0, best.at).join(":")}::${text.slice(best.at + best.len).join(":")}`;
}

/**
 * The modified EUI-64 interface identifier of a MAC (RFC 4291 Appendix A: insert ff:fe in the middle,
 * invert the universal/local bit) under `prefix` (a /64 given as its first address, default `fe80::`):
 * the address the kernel's default `addr_gen_mode` (eui64) gives an interface with that MAC.
 */
export function eui64Address(mac: string, prefix = "fe80::"): string {
  const m = macToBytes(mac);
  const a = ipv6ToBytes(prefix);
  a[8] = (m[0] as number) ^ 0x02;
  m.copy(a, 9, 1, 3);
  a[11] = 0xff;
  a[12] = 0xfe;
  m.copy(a, 13, 3, 6);
  return ipv6FromBytes(a);
}

/** Ethernet destination of an IPv6 multicast address: 33:33 and its last four bytes (RFC 2464 §7). */
export function ipv6MulticastMac(ip: string): string {
  return macFromBytes(Buffer.concat([Buffer.from([0x33, 0x33]), ipv6ToBytes(ip).subarray(12)]));
}

/** Solicited-node multicast address of `ip`: ff02::1:ff00:0/104 and its last 24 bits (RFC 4291 §2.7.1). */
export function solicitedNode(ip: string): string {
  const b = ipv6ToBytes("ff02::1:ff00:0");
  ipv6ToBytes(ip).copy(b, 13, 13);
  return ipv6FromBytes(b);
}

export interface Ipv6Build {
  src: string;
  dst: string;
  nextHeader: number;
  payload: Buffer;
  /** Default 64; neighbour discovery needs 255 (RFC 4861 §6.1.2, §7.1). */
  hopLimit?: number;
  trafficClass?: number;
  /** 20 bits. */
  flowLabel?: number;
}

export interface Ipv6Packet {
  src: string;
  dst: string;
  nextHeader: number;
  hopLimit: number;
  flowLabel: number;
  payloadLength: number;
  /** Cut at the payload length (Ethernet padding removed); a view into the input. */
  payload: Buffer;
}

/** IPv6 packet: the 40-byte fixed header (RFC 8200 §3), no extension headers. */
export function buildIpv6(p: Ipv6Build): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32BE(((6 << 28) | ((p.trafficClass ?? 0) << 20) | ((p.flowLabel ?? 0) & 0xfffff)) >>> 0, 0);
  h.writeUInt16BE(p.payload.length, 4);
  h[6] = p.nextHeader;
  h[7] = p.hopLimit ?? 64;
  ipv6ToBytes(p.src).copy(h, 8);
  ipv6ToBytes(p.dst).copy(h, 24);
  return Buffer.concat([h, p.payload]);
}

/** Parses the fixed IPv6 header. @throws when not version 6 or truncated. */
export function parseIpv6(b: Buffer): Ipv6Packet {
  if (b.length < 40 || (b[0] as number) >> 4 !== 6) throw new Error("not an IPv6 packet");
  const payloadLength = b.readUInt16BE(4);
  if (40 + payloadLength > b.length) throw new Error("truncated IPv6 packet");
  return {
    src: ipv6FromBytes(b.subarray(8, 24)),
    dst: ipv6FromBytes(b.subarray(24, 40)),
    nextHeader: b[6] as number,
    hopLimit: b[7] as number,
    flowLabel: b.readUInt32BE(0) & 0xfffff,
    payloadLength,
    payload: b.subarray(40, 40 + payloadLength),
  };
}

/**
 * Internet checksum of an upper-layer message over the IPv6 pseudo-header (RFC 8200 §8.1: source,
 * destination, 32-bit upper-layer length, three zero bytes, next header). Used by ICMPv6 (RFC 4443
 * §2.3), UDP and TCP. 0 when the message's stored checksum is right.
 */
export function ipv6Checksum(src: string, dst: string, nextHeader: number, message: Buffer): number {
  const p = Buffer.alloc(40);
  ipv6ToBytes(src).copy(p, 0);
  ipv6ToBytes(dst).copy(p, 16);
  p.writeUInt32BE(message.length, 32);
  p[39] = nextHeader;
  return internetChecksum(p, message);
}

/** ICMPv6 message (RFC 4443 §2.1): type, code, checksum, then `body`. */
export function buildIcmpv6(m: {
  src: string;
  dst: string;
  type: number;
  code?: number;
  body: Buffer;
}): Buffer {
  const msg = Buffer.alloc(4 + m.body.length);
  msg[0] = m.type;
  msg[1] = m.code ?? 0;
  m.body.copy(msg, 4);
  msg.writeUInt16BE(ipv6Checksum(m.src, m.dst, IPPROTO_ICMPV6, msg), 2);
  return msg;
}

/** Echo request/reply body (RFC 4443 §4.1): identifier, sequence number, data. */
export function icmpv6EchoBody(id: number, seq: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(4 + data.length);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(seq, 2);
  data.copy(b, 4);
  return b;
}

/** A prefix in a Prefix Information option (RFC 4861 §4.6.2). */
export interface RaPrefix {
  /** First address of the prefix, e.g. `2001:db8:1::`. */
  prefix: string;
  length: number;
  /** L flag: the prefix is on-link. Default true. */
  onLink?: boolean;
  /** A flag: hosts may form addresses in it by SLAAC (RFC 4862). Default true. */
  autonomous?: boolean;
  /** Seconds. Defaults 86400 and 14400. */
  validLifetime?: number;
  preferredLifetime?: number;
}

/** A route in a Route Information option (RFC 4191 §2.3); prefix length at most 64 here. */
export interface RaRoute {
  prefix: string;
  length: number;
  /** Seconds. Default 1800. */
  lifetime?: number;
}

/**
 * Router Advertisement body (RFC 4861 §4.2): cur hop limit, M/O flags 0, router lifetime (seconds; >0
 * makes the sender a default router), reachable time and retrans timer 0, then a Source Link-Layer
 * Address option (type 1), Prefix Information options (type 3) and Route Information options
 * (type 24, RFC 4191) with medium preference. Wrap with {@link buildIcmpv6} type 134, sent from a
 * link-local address with hop limit 255 (RFC 4861 §6.1.2).
 */
export function routerAdvertisementBody(ra: {
  routerLifetime?: number;
  curHopLimit?: number;
  sourceMac?: string;
  prefixes?: RaPrefix[];
  routes?: RaRoute[];
}): Buffer {
  const head = Buffer.alloc(12);
  head[0] = ra.curHopLimit ?? 64;
  head.writeUInt16BE(ra.routerLifetime ?? 1800, 2);
  const opts: Buffer[] = [];
  if (ra.sourceMac) opts.push(Buffer.concat([Buffer.from([1, 1]), macToBytes(ra.sourceMac)]));
  for (const p of ra.prefixes ?? []) {
    const o = Buffer.alloc(32);
    o[0] = 3;
    o[1] = 4;
    o[2] = p.length;
    o[3] = ((p.onLink ?? true) ? 0x80 : 0) | ((p.autonomous ?? true) ? 0x40 : 0);
    o.writeUInt32BE(p.validLifetime ?? 86400, 4);
    o.writeUInt32BE(p.preferredLifetime ?? 14400, 8);
    ipv6ToBytes(p.prefix).copy(o, 16);
    opts.push(o);
  }
  for (const r of ra.routes ?? []) {
    if (r.length > 64) throw new Error("route information longer than /64 is not built here");
    const o = Buffer.alloc(r.length === 0 ? 8 : 16);
    o[0] = 24;
    o[1] = o.length / 8;
    o[2] = r.length;
    o.writeUInt32BE(r.lifetime ?? 1800, 4);
    if (r.length > 0) ipv6ToBytes(r.prefix).copy(o, 8, 0, 8);
    opts.push(o);
  }
  return Buffer.concat([head, ...opts]);
}

/**
 * Neighbor Advertisement body (RFC 4861 §4.4): R/S/O flags, the target address and a Target
 * Link-Layer Address option (type 2) with `mac`. Wrap with {@link buildIcmpv6} type 136, hop limit 255.
 */
export function neighborAdvertisementBody(target: string, mac: string, solicited = true): Buffer {
  const b = Buffer.alloc(28);
  b[0] = (solicited ? 0x40 : 0) | 0x20; // S, O
  ipv6ToBytes(target).copy(b, 4);
  b[20] = 2;
  b[21] = 1;
  macToBytes(mac).copy(b, 22);
  return b;
}

/** UDP over IPv6 (RFC 8200 §8.1: the checksum is mandatory). */
export function buildUdp6(u: UdpBuild): Buffer {
  const seg = Buffer.alloc(8 + u.payload.length);
  seg.writeUInt16BE(u.sport, 0);
  seg.writeUInt16BE(u.dport, 2);
  seg.writeUInt16BE(seg.length, 4);
  u.payload.copy(seg, 8);
  const c = ipv6Checksum(u.src, u.dst, IPPROTO_UDP, seg);
  seg.writeUInt16BE(c === 0 ? 0xffff : c, 6);
  return seg;
}

/** Ethernet + IPv6 around a `payload` of `nextHeader`. */
function ipv6Frame(
  f: { srcMac: string; dstMac: string; src: string; dst: string; hopLimit?: number; flowLabel?: number },
  nextHeader: number,
  payload: Buffer,
): Buffer {
  return buildEthernet({
    dst: f.dstMac,
    src: f.srcMac,
    etherType: ETHERTYPE_IPV6,
    payload: buildIpv6({
      src: f.src,
      dst: f.dst,
      nextHeader,
      hopLimit: f.hopLimit,
      flowLabel: f.flowLabel,
      payload,
    }),
  });
}

/** Ethernet + IPv6 + ICMPv6 in one frame (hop limit 255 unless given: right for ND and harmless for echo). */
export function icmpv6Frame(f: {
  srcMac: string;
  dstMac: string;
  src: string;
  dst: string;
  type: number;
  code?: number;
  body: Buffer;
  hopLimit?: number;
  flowLabel?: number;
}): Buffer {
  return ipv6Frame({ ...f, hopLimit: f.hopLimit ?? 255 }, IPPROTO_ICMPV6, buildIcmpv6(f));
}

/** Ethernet + IPv6 + UDP in one frame. */
export function udp6Frame(f: {
  srcMac: string;
  dstMac: string;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload: Buffer;
  hopLimit?: number;
}): Buffer {
  return ipv6Frame(f, IPPROTO_UDP, buildUdp6(f));
}

/** What a test wants to know about one IPv6 frame. */
export interface Ipv6Summary {
  srcMac: string;
  dstMac: string;
  src: string;
  dst: string;
  nextHeader: number;
  hopLimit: number;
  /** ICMPv6 type and code, when the next header is ICMPv6. */
  icmpType?: number;
  icmpCode?: number;
  /** Target address of a neighbor solicitation or advertisement. */
  ndTarget?: string;
  sport?: number;
  dport?: number;
  /** The ICMPv6 or UDP checksum verifies (true for other next headers). */
  checksumOk: boolean;
}

/** Summarises an Ethernet frame carrying IPv6, or returns undefined for anything else. */
export function summarizeIpv6(frame: Buffer): Ipv6Summary | undefined {
  const eth = parseEthernet(frame);
  if (eth.etherType !== ETHERTYPE_IPV6) return undefined;
  const ip = parseIpv6(eth.payload);
  const base = {
    srcMac: eth.src,
    dstMac: eth.dst,
    src: ip.src,
    dst: ip.dst,
    nextHeader: ip.nextHeader,
    hopLimit: ip.hopLimit,
  };
  const ok = (proto: number) => ipv6Checksum(ip.src, ip.dst, proto, ip.payload) === 0;
  if (ip.nextHeader === IPPROTO_ICMPV6 && ip.payload.length >= 4) {
    const type = ip.payload[0] as number;
    const nd = type === ICMPV6_NEIGHBOR_SOLICITATION || type === ICMPV6_NEIGHBOR_ADVERTISEMENT;
    return {
      ...base,
      icmpType: type,
      icmpCode: ip.payload[1] as number,
      ...(nd && ip.payload.length >= 24 ? { ndTarget: ipv6FromBytes(ip.payload.subarray(8, 24)) } : {}),
      checksumOk: ok(IPPROTO_ICMPV6),
    };
  }
  if (ip.nextHeader === IPPROTO_UDP && ip.payload.length >= 8) {
    const u = parseUdp(ip.payload);
    return { ...base, sport: u.sport, dport: u.dport, checksumOk: ok(IPPROTO_UDP) };
  }
  return { ...base, checksumOk: true };
}
