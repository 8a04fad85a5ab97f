import { describe, expect, it } from "vitest";
import {
  ALL_NODES,
  ARP_REPLY,
  ARP_REQUEST,
  arpReplyFrame,
  arpRequestFrame,
  buildIcmpEcho,
  buildIpv4,
  ETHERTYPE_ARP,
  eui64Address,
  ICMP_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_ROUTER_ADVERTISEMENT,
  IPPROTO_ICMPV6,
  IPPROTO_UDP,
  icmpEchoFrame,
  icmpv6EchoBody,
  icmpv6Frame,
  internetChecksum,
  ipv6FromBytes,
  ipv6MulticastMac,
  ipv6ToBytes,
  neighborAdvertisementBody,
  parseArp,
  parseEthernet,
  parseIpv4,
  parseIpv6,
  parseTcp,
  parseUdp,
  routerAdvertisementBody,
  solicitedNode,
  stripVnetHdr,
  summarizeIpv4,
  summarizeIpv6,
  TCP_FLAGS,
  tcpFlagNames,
  tcpFrame,
  udp6Frame,
  udpFrame,
  VNET_HDR_LEN,
  withVnetHdr,
} from "../helpers/packets.js";

const guestMac = "02:00:0a:c8:00:02";
const hostMac = "02:00:0a:c8:00:01";

// Reference frames: built once, then checked independently with `tcpdump -nn -vv -e -r` on a pcap
// holding them ("udp sum ok", "cksum 0xb593 (correct)", no "bad cksum" on the IPv4 headers).
const UDP_HEX =
  "02000ac8000102000ac80002080045000021000040004011253a0ac800020ac800019c400035000d09fa68656c6c6f";
const SYN_HEX =
  "02000ac8000102000ac80002080045000028000040004006dc090ac80002a9fea9fe9c41005001020304000000005002faf0b5930000";
const ARP_REQ_HEX = "ffffffffffff02000ac800010806000108000604000102000ac800010ac800010000000000000ac80002";

describe("internet checksum", () => {
  it("matches the classic IPv4 header example (checksum 0xb861)", () => {
    const h = Buffer.from("450000730000400040110000c0a80001c0a800c7", "hex");
    expect(internetChecksum(h)).toBe(0xb861);
    h.writeUInt16BE(0xb861, 10);
    expect(internetChecksum(h)).toBe(0);
  });
  it("pads an odd byte with zero on the right", () => {
    expect(internetChecksum(Buffer.from([0x01]))).toBe(~0x0100 & 0xffff);
  });
});

describe("UDP frame", () => {
  const frame = udpFrame({
    srcMac: guestMac,
    dstMac: hostMac,
    src: "10.200.0.2",
    dst: "10.200.0.1",
    sport: 40000,
    dport: 53,
    payload: Buffer.from("hello"),
  });
  it("builds the reference bytes", () => expect(frame.toString("hex")).toBe(UDP_HEX));
  it("parses back", () => {
    const ip = parseIpv4(parseEthernet(frame).payload);
    expect(ip).toMatchObject({ src: "10.200.0.2", dst: "10.200.0.1", protocol: IPPROTO_UDP, ttl: 64 });
    expect(ip.checksumOk).toBe(true);
    const u = parseUdp(ip.payload);
    expect(u).toMatchObject({ sport: 40000, dport: 53, length: 13, checksum: 0x09fa });
    expect(u.payload.toString()).toBe("hello");
  });
  it("leaves the checksum 0 when asked", () => {
    const f = udpFrame({
      srcMac: guestMac,
      dstMac: hostMac,
      src: "10.200.0.2",
      dst: "10.200.0.1",
      sport: 40000,
      dport: 53,
      payload: Buffer.from("hello"),
      checksum: false,
    });
    expect(f.readUInt16BE(14 + 20 + 6)).toBe(0);
    expect(summarizeIpv4(f)?.checksumOk).toBe(true);
  });
  it("summarises, and flags a corrupted payload", () => {
    expect(summarizeIpv4(Buffer.from(UDP_HEX, "hex"))).toEqual({
      srcMac: guestMac,
      dstMac: hostMac,
      src: "10.200.0.2",
      dst: "10.200.0.1",
      proto: "udp",
      ttl: 64,
      sport: 40000,
      dport: 53,
      payload: Buffer.from("hello").toString("hex"),
      checksumOk: true,
    });
    const bad = Buffer.from(UDP_HEX, "hex");
    const last = bad.length - 1;
    bad.writeUInt8(bad.readUInt8(last) ^ 1, last);
    expect(summarizeIpv4(bad)?.checksumOk).toBe(false);
  });
  it("ignores Ethernet padding after the IPv4 total length", () => {
    const padded = Buffer.concat([Buffer.from(UDP_HEX, "hex"), Buffer.alloc(13)]);
    expect(summarizeIpv4(padded)?.payload).toBe(Buffer.from("hello").toString("hex"));
  });
});

describe("TCP SYN", () => {
  it("builds the reference bytes and parses back", () => {
    const f = tcpFrame({
      srcMac: guestMac,
      dstMac: hostMac,
      src: "10.200.0.2",
      dst: "169.254.169.254",
      sport: 40001,
      dport: 80,
      seq: 0x01020304,
    });
    expect(f.toString("hex")).toBe(SYN_HEX);
    const t = parseTcp(parseIpv4(parseEthernet(f).payload).payload);
    expect(t).toMatchObject({
      sport: 40001,
      dport: 80,
      seq: 0x01020304,
      flags: TCP_FLAGS.SYN,
      dataOffset: 20,
    });
    expect(summarizeIpv4(f)).toMatchObject({ proto: "tcp", flags: ["SYN"], checksumOk: true });
  });
  it("names flags", () => {
    expect(tcpFlagNames(TCP_FLAGS.SYN | TCP_FLAGS.ACK)).toEqual(["SYN", "ACK"]);
    expect(tcpFlagNames(TCP_FLAGS.RST | TCP_FLAGS.ACK)).toEqual(["RST", "ACK"]);
  });
  it("skips TCP options (data offset 24)", () => {
    const seg = Buffer.alloc(28);
    seg.writeUInt16BE(1, 0);
    seg.writeUInt16BE(2, 2);
    seg[12] = 6 << 4;
    seg[13] = TCP_FLAGS.SYN;
    seg.write("abcd", 24);
    expect(parseTcp(seg).payload.toString()).toBe("abcd");
  });
});

describe("ARP", () => {
  it("builds the reference request and parses it", () => {
    const f = arpRequestFrame(hostMac, "10.200.0.1", "10.200.0.2");
    expect(f.toString("hex")).toBe(ARP_REQ_HEX);
    const eth = parseEthernet(f);
    expect(eth).toMatchObject({ dst: "ff:ff:ff:ff:ff:ff", src: hostMac, etherType: ETHERTYPE_ARP });
    expect(parseArp(eth.payload)).toEqual({
      op: ARP_REQUEST,
      senderMac: hostMac,
      senderIp: "10.200.0.1",
      targetMac: "00:00:00:00:00:00",
      targetIp: "10.200.0.2",
    });
  });
  it("answers a request unicast, swapping sender and target", () => {
    const req = parseArp(parseEthernet(Buffer.from(ARP_REQ_HEX, "hex")).payload);
    const reply = arpReplyFrame(req, guestMac);
    expect(reply.toString("hex")).toBe(
      `${hostMac.replaceAll(":", "")}${guestMac.replaceAll(":", "")}0806` +
        `0001080006040002${guestMac.replaceAll(":", "")}0ac80002${hostMac.replaceAll(":", "")}0ac80001`,
    );
    expect(parseArp(parseEthernet(reply).payload)).toMatchObject({ op: ARP_REPLY, senderIp: "10.200.0.2" });
  });
});

describe("virtio_net_hdr", () => {
  it("prefixes 10 zero bytes and strips them", () => {
    const frame = Buffer.from(ARP_REQ_HEX, "hex");
    const wire = withVnetHdr(frame);
    expect(wire.length).toBe(VNET_HDR_LEN + frame.length);
    expect(wire.subarray(0, 10).equals(Buffer.alloc(10))).toBe(true);
    expect(stripVnetHdr(wire).frame.equals(frame)).toBe(true);
  });
});

describe("parsers reject garbage", () => {
  it.each([
    ["ethernet", () => parseEthernet(Buffer.alloc(13))],
    ["ipv6 as ipv4", () => parseIpv4(Buffer.from(`60${"00".repeat(39)}`, "hex"))],
    [
      "ipv4 total length past the end",
      () =>
        parseIpv4(
          buildIpv4({ src: "1.1.1.1", dst: "2.2.2.2", protocol: 17, payload: Buffer.alloc(8) }).subarray(
            0,
            24,
          ),
        ),
    ],
    ["udp length past the end", () => parseUdp(Buffer.from("0001000200ff0000", "hex"))],
    ["arp for another protocol", () => parseArp(Buffer.alloc(28))],
  ])("%s", (_name, fn) => expect(fn).toThrow());
});

// Frames the kernel itself made and checksummed (captured with `tcpdump -xx` on a veth in a private
// netns): an ICMP echo request from a ping socket, and an ICMPv6 echo request and Router
// Advertisement from a raw ICMPv6 socket (the kernel fills in ICMPv6 checksums, RFC 3542 §3.1).
// v0 02:00:00:00:00:aa had the link-local fe80::ff:fe00:aa, which the kernel derived itself.
const KERNEL_PING4_HEX =
  "0200000000bb0200000000aa080045000027f57640004001314a0a0900010a090003080025d7424200016d6963726f766d2d6e6574";
const KERNEL_ECHO6_HEX =
  "3333000000010200000000aa86dd600b51e600133afffe80000000000000000000fffe0000aaff02000000000000000000000000000180" +
  "00e068123400016d6963726f766d2d6e6574";
const KERNEL_RA_HEX =
  "3333000000010200000000aa86dd600a691600483afffe80000000000000000000fffe0000aaff02000000000000000000000000000186" +
  "00b8fe40000708000000000000000001010200000000aa030440c000015180000038400000000020010db8000100000000000000000000" +
  "180230000000070820010db800990000";

describe("ICMP echo (IPv4)", () => {
  it("rebuilds the kernel's ping byte for byte (checksum 0x25d7)", () => {
    const f = icmpEchoFrame({
      srcMac: "02:00:00:00:00:aa",
      dstMac: "02:00:00:00:00:bb",
      src: "10.9.0.1",
      dst: "10.9.0.3",
      id: 0x4242,
      seq: 1,
      data: Buffer.from("microvm-net"),
    });
    // The IPv4 identification was the kernel's choice (0xf576): with it, the header checksum too
    // must come out as the kernel's.
    f.writeUInt16BE(0xf576, 14 + 4);
    f.writeUInt16BE(0, 14 + 10);
    f.writeUInt16BE(internetChecksum(f.subarray(14, 34)), 14 + 10);
    expect(f.toString("hex")).toBe(KERNEL_PING4_HEX);
    expect(buildIcmpEcho({ type: ICMP_ECHO_REPLY, id: 1, seq: 1 })[0]).toBe(ICMP_ECHO_REPLY);
  });
});

describe("IPv6 addresses", () => {
  it.each([
    ["::", "00".repeat(16)],
    ["::1", `${"00".repeat(15)}01`],
    ["fe80::", `fe80${"00".repeat(14)}`],
    ["2001:db8::1:0:0:1", "20010db8000000000001000000000001"],
    ["2001:db8:0:1:1:1:1:1", "20010db8000000010001000100010001"],
    ["ff02::1:ff00:aa", "ff0200000000000000000001ff0000aa"],
  ])("%s ↔ %s (RFC 5952 text)", (text, hex) => {
    expect(ipv6ToBytes(text).toString("hex")).toBe(hex);
    expect(ipv6FromBytes(Buffer.from(hex, "hex"))).toBe(text);
  });
  it("reads uncompressed and upper-case forms", () => {
    expect(ipv6FromBytes(ipv6ToBytes("2001:0DB8:0000:0000:0000:0000:0000:0001"))).toBe("2001:db8::1");
  });
  it.each(["1::2::3", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "12345::", "g::", "1:2:3:4::5:6:7:8"])(
    "rejects %s",
    (bad) => expect(() => ipv6ToBytes(bad)).toThrow(),
  );
  it("EUI-64 (RFC 4291 App. A) gives the link-local the kernel gave 02:00:00:00:00:aa", () => {
    expect(eui64Address("02:00:00:00:00:aa")).toBe("fe80::ff:fe00:aa");
    // The universal/local bit is inverted, not set: a universal MAC gets 02 in the identifier.
    expect(eui64Address("00:1b:21:0a:0b:0c", "2001:db8:1::")).toBe("2001:db8:1:0:21b:21ff:fe0a:b0c");
  });
  it("multicast MAC (RFC 2464 §7) and solicited-node address (RFC 4291 §2.7.1)", () => {
    expect(ipv6MulticastMac(ALL_NODES)).toBe("33:33:00:00:00:01");
    expect(solicitedNode("2001:db8:1:0:21b:21ff:fe0a:b0c")).toBe("ff02::1:ff0a:b0c");
    expect(ipv6MulticastMac(solicitedNode("fe80::ff:fe00:aa"))).toBe("33:33:ff:00:00:aa");
  });
});

describe("ICMPv6 over the IPv6 pseudo-header", () => {
  const mac = "02:00:00:00:00:aa";
  const src = eui64Address(mac);
  it("rebuilds the kernel's echo request byte for byte (checksum 0xe068)", () => {
    const f = icmpv6Frame({
      srcMac: mac,
      dstMac: ipv6MulticastMac(ALL_NODES),
      src,
      dst: ALL_NODES,
      type: ICMPV6_ECHO_REQUEST,
      body: icmpv6EchoBody(0x1234, 1, Buffer.from("microvm-net")),
      flowLabel: 0xb51e6,
    });
    expect(f.toString("hex")).toBe(KERNEL_ECHO6_HEX);
    expect(summarizeIpv6(f)).toEqual({
      srcMac: mac,
      dstMac: "33:33:00:00:00:01",
      src: "fe80::ff:fe00:aa",
      dst: ALL_NODES,
      nextHeader: IPPROTO_ICMPV6,
      hopLimit: 255,
      icmpType: ICMPV6_ECHO_REQUEST,
      icmpCode: 0,
      checksumOk: true,
    });
  });
  it("rebuilds the kernel's Router Advertisement byte for byte (checksum 0xb8fe)", () => {
    const f = icmpv6Frame({
      srcMac: mac,
      dstMac: ipv6MulticastMac(ALL_NODES),
      src,
      dst: ALL_NODES,
      type: ICMPV6_ROUTER_ADVERTISEMENT,
      body: routerAdvertisementBody({
        routerLifetime: 1800,
        sourceMac: mac,
        prefixes: [{ prefix: "2001:db8:1::", length: 64 }],
        routes: [{ prefix: "2001:db8:99::", length: 48 }],
      }),
      flowLabel: 0xa6916,
    });
    expect(f.toString("hex")).toBe(KERNEL_RA_HEX);
  });
  it("a flipped bit anywhere in the addresses or message fails the checksum", () => {
    const good = Buffer.from(KERNEL_ECHO6_HEX, "hex");
    for (const at of [14 + 8, 14 + 39, 14 + 40 + 5, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at] = (bad[at] as number) ^ 0x10;
      expect(summarizeIpv6(bad)?.checksumOk).toBe(false);
    }
  });
  it("a neighbor advertisement carries S|O, the target and its link-layer option", () => {
    const body = neighborAdvertisementBody("fe80::1", mac);
    expect(body.toString("hex")).toBe(`60000000fe80${"00".repeat(12)}00010201${mac.replaceAll(":", "")}`);
    const f = icmpv6Frame({
      srcMac: mac,
      dstMac: "02:00:00:00:00:bb",
      src: "fe80::1",
      dst: "fe80::2",
      type: ICMPV6_NEIGHBOR_ADVERTISEMENT,
      body,
    });
    expect(summarizeIpv6(f)).toMatchObject({ ndTarget: "fe80::1", checksumOk: true, hopLimit: 255 });
  });
  it("UDP over IPv6 has a verified checksum and parses back", () => {
    const f = udp6Frame({
      srcMac: mac,
      dstMac: "02:00:00:00:00:bb",
      src: "2001:db8:1::2",
      dst: "2001:db8:2::1",
      sport: 40000,
      dport: 9999,
      payload: Buffer.from("leak?"),
    });
    expect(summarizeIpv6(f)).toMatchObject({
      nextHeader: IPPROTO_UDP,
      sport: 40000,
      dport: 9999,
      checksumOk: true,
    });
    expect(parseIpv6(parseEthernet(f).payload)).toMatchObject({ payloadLength: 13, hopLimit: 64 });
  });
  it("rejects an IPv4 packet and a truncated IPv6 one", () => {
    expect(() =>
      parseIpv6(buildIpv4({ src: "1.1.1.1", dst: "2.2.2.2", protocol: 17, payload: Buffer.alloc(40) })),
    ).toThrow();
    expect(() =>
      parseIpv6(parseEthernet(Buffer.from(KERNEL_ECHO6_HEX, "hex")).payload.subarray(0, 50)),
    ).toThrow();
    expect(summarizeIpv6(Buffer.from(KERNEL_PING4_HEX, "hex"))).toBeUndefined();
  });
});
