import { describe, expect, it } from "vitest";
import {
  ARP_REPLY,
  ARP_REQUEST,
  arpReplyFrame,
  arpRequestFrame,
  buildIpv4,
  ETHERTYPE_ARP,
  IPPROTO_UDP,
  internetChecksum,
  parseArp,
  parseEthernet,
  parseIpv4,
  parseTcp,
  parseUdp,
  stripVnetHdr,
  summarizeIpv4,
  TCP_FLAGS,
  tcpFlagNames,
  tcpFrame,
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
