// The codec against byte layouts written out by hand from the kernel's UAPI structs (linux/netlink.h,
// rtnetlink.h, if_addr.h, if_link.h). The two NLMSG_ERROR layouts are byte for byte what a 6.18
// kernel answered to the RTM_NEWADDR below (only nlmsg_pid, the port id, differs from run to run).
import { describe, expect, it } from "vitest";
import { parseAddr } from "../../src/kernel/netlink/addr.js";
import {
  align,
  attr,
  attrIPv4,
  attrMac,
  attrNested,
  attrString,
  attrStringRaw,
  attrU8,
  attrU16,
  attrU32,
  decodeAttrs,
  decodeDone,
  decodeError,
  decodeIfinfomsg,
  decodeMessages,
  encodeBody,
  encodeMessage,
  ifaddrmsg,
  ifinfomsg,
  ndmsg,
  readIPv4,
  readMac,
  readString,
  readU32,
  rtmsg,
} from "../../src/kernel/netlink/codec.js";
import * as C from "../../src/kernel/netlink/constants.js";
import { parseLink } from "../../src/kernel/netlink/link.js";
import { parseRoute } from "../../src/kernel/netlink/route.js";

/** Hex with spaces/newlines allowed, for readable layouts. */
const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

// RTM_NEWADDR, REQUEST|ACK|EXCL|CREATE, seq 1: 10.0.0.1 peer 10.0.0.2/32 on ifindex 5.
const NEWADDR = hex(`
  28000000 1400 0506 01000000 00000000
  02 20 00 00 05000000
  0800 0200 0a000001
  0800 0100 0a000002`);

const EEXIST_TEXT = "ipv4: Address already assigned";
// "ipv4: Address already assigned\0" is 31 bytes: nla_len 35 (0x23), padded to 36.
const EXTACK_MSG_TLV = `2300 0100 ${Buffer.from(`${EEXIST_TEXT}\0\0`).toString("hex")}`;

describe("encoding", () => {
  it("encodes RTM_NEWADDR with IFA_LOCAL and IFA_ADDRESS exactly as struct ifaddrmsg + rtattrs", () => {
    const body = encodeBody(ifaddrmsg({ family: C.AF_INET, prefixlen: 32, index: 5 }), [
      attrIPv4(C.IFA_LOCAL, "10.0.0.1"),
      attrIPv4(C.IFA_ADDRESS, "10.0.0.2"),
    ]);
    const flags = C.NLM_F_REQUEST | C.NLM_F_ACK | C.NLM_F_CREATE | C.NLM_F_EXCL;
    expect(flags).toBe(0x605);
    expect(encodeMessage({ type: C.RTM_NEWADDR, flags, seq: 1 }, body).toString("hex")).toBe(
      NEWADDR.toString("hex"),
    );
  });

  it("counts the NUL of a string in nla_len and pads the attribute to 4 bytes", () => {
    // IFLA_IFNAME "lo": len 4+3 = 7, one byte of padding.
    expect(attrString(C.IFLA_IFNAME, "lo").toString("hex")).toBe("07000300" + "6c6f0000");
    // "eth0": len 4+5 = 9, three bytes of padding.
    expect(attrString(C.IFLA_IFNAME, "eth0").toString("hex")).toBe("09000300" + "65746830" + "00000000");
    // A raw string (IFLA_IFALIAS) has no NUL: "abcd" fills the payload exactly.
    expect(attrStringRaw(C.IFLA_IFALIAS, "abcd").toString("hex")).toBe("08001400" + "61626364");
    expect(attrStringRaw(C.IFLA_IFALIAS, "").toString("hex")).toBe("04001400");
  });

  it("encodes integers in host (little-endian) order and addresses in network order", () => {
    expect(attrU8(C.IFLA_OPERSTATE, 6).toString("hex")).toBe("05001000" + "06000000");
    expect(attrU16(7, 0x1234).toString("hex")).toBe("06000700" + "34120000");
    expect(attrU32(C.IFLA_MTU, 1500).toString("hex")).toBe("08000400" + "dc050000");
    expect(attrU32(C.IFLA_GROUP, 0xfffffffe).toString("hex")).toBe("08001b00" + "feffffff");
    expect(attrIPv4(C.RTA_DST, "192.0.2.1").toString("hex")).toBe("08000100" + "c0000201");
    // 6-byte MAC: len 10, two bytes of padding.
    expect(attrMac(C.IFLA_ADDRESS, "02:AB:cd:00:00:01").toString("hex")).toBe(
      "0a000100" + "02abcd000001" + "0000",
    );
  });

  it("nests attributes with NLA_F_NESTED, the outer length covering the padded children", () => {
    const nested = attrNested(C.IFLA_LINKINFO, [attrString(C.IFLA_INFO_KIND, "veth")]);
    // inner: len 9 ("veth\0"), padded to 12; outer: 4 + 12 = 16, type 18 | 0x8000.
    expect(nested.toString("hex")).toBe("10001280" + "09000100" + "76657468" + "00000000");
  });

  it("lays out the fixed headers as the kernel structs", () => {
    expect(ifinfomsg({ family: 0, index: 7, flags: C.IFF_UP, change: C.IFF_UP }).toString("hex")).toBe(
      "00000000" + "07000000" + "01000000" + "01000000",
    );
    expect(rtmsg({ family: C.AF_INET, dstLen: 32, table: 254, type: 1 }).toString("hex")).toBe(
      "02200000" + "fe000001" + "00000000",
    );
    expect(ndmsg({ family: C.AF_INET, index: 3, state: C.NUD_PERMANENT }).toString("hex")).toBe(
      "02000000" + "03000000" + "8000" + "00" + "00",
    );
    expect(ifaddrmsg({}).length).toBe(C.IFADDRMSG_LEN);
  });

  it("refuses bad addresses before building anything", () => {
    expect(() => attrIPv4(C.IFA_LOCAL, "10.0.0")).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ADDRESS" }),
    );
    for (const mac of ["02:00:00:00:00", "zz:00:00:00:00:01", "01:00:5e:00:00:01", "00:00:00:00:00:00"]) {
      expect(() => attrMac(C.IFLA_ADDRESS, mac), mac).toThrow(
        expect.objectContaining({ code: "ERR_INVALID_MAC" }),
      );
    }
    expect(() => attr(1, Buffer.alloc(0x10000))).toThrow(/too long/);
  });

  it("aligns to 4", () => {
    expect([0, 1, 2, 3, 4, 5, 35, 36].map(align)).toEqual([0, 4, 4, 4, 4, 8, 36, 36]);
  });
});

describe("decoding", () => {
  it("decodes NLMSG_ERROR EEXIST with a capped echo and the ext-ack text", () => {
    const datagram = hex(`
      48000000 0200 0003 01000000 ec169af1
      efffffff
      28000000 1400 0506 01000000 00000000
      ${EXTACK_MSG_TLV}`);
    const [m, ...rest] = decodeMessages(datagram);
    expect(rest).toEqual([]);
    expect(m?.type).toBe(C.NLMSG_ERROR);
    expect(m?.flags).toBe(C.NLM_F_CAPPED | C.NLM_F_ACK_TLVS);
    const e = decodeError(m as NonNullable<typeof m>);
    expect(e).toEqual({
      errno: 17,
      message: EEXIST_TEXT,
      request: { len: 40, type: C.RTM_NEWADDR, flags: 0x605, seq: 1, pid: 0 },
    });
  });

  it("skips the whole echoed request when it is not capped (no NETLINK_CAP_ACK)", () => {
    const datagram = hex(`
      60000000 0200 0002 01000000 9ef83d9f
      efffffff
      ${NEWADDR.toString("hex")}
      ${EXTACK_MSG_TLV}`);
    const [m] = decodeMessages(datagram);
    expect(decodeError(m as NonNullable<typeof m>).message).toBe(EEXIST_TEXT);
  });

  it("decodes the offending-attribute offset and ignores TLVs when NLM_F_ACK_TLVS is absent", () => {
    // EINVAL with "bad mtu" and NLMSGERR_ATTR_OFFS = 32, capped.
    const tlvs = `0c00 0100 ${Buffer.from("bad mtu\0").toString("hex")} 0800 0200 20000000`;
    const withTlvs = hex(
      `38000000 0200 0003 09000000 00000000 eaffffff 20000000 1000 0500 09000000 00000000 ${tlvs}`,
    );
    const [m] = decodeMessages(withTlvs);
    expect(decodeError(m as NonNullable<typeof m>)).toMatchObject({
      errno: 22,
      message: "bad mtu",
      offset: 32,
    });
    const noFlag = Buffer.from(withTlvs);
    noFlag.writeUInt16LE(C.NLM_F_CAPPED, 6);
    const [n] = decodeMessages(noFlag);
    const e = decodeError(n as NonNullable<typeof n>);
    expect(e.errno).toBe(22);
    expect(e.message).toBeUndefined();
    expect(e.offset).toBeUndefined();
  });

  it("decodes a plain ACK as errno 0", () => {
    const ack = hex("24000000 0200 0001 01000000 332c0000 00000000 28000000 1400 0506 01000000 00000000");
    const [m] = decodeMessages(ack);
    expect(decodeError(m as NonNullable<typeof m>).errno).toBe(0);
  });

  it("splits a multipart dump and reads NLMSG_DONE's status", () => {
    // Two RTM_NEWLINK parts (NLM_F_MULTI), each an ifinfomsg + IFLA_IFNAME, then NLMSG_DONE with 0.
    const part = (index: number, name: string) => {
      const body = encodeBody(ifinfomsg({ index, flags: C.IFF_UP }), [attrString(C.IFLA_IFNAME, name)]);
      return encodeMessage({ type: C.RTM_NEWLINK, flags: C.NLM_F_MULTI, seq: 9, pid: 77 }, body);
    };
    const done = hex("14000000 0300 0200 09000000 4d000000 00000000");
    const msgs = decodeMessages(Buffer.concat([part(1, "lo"), part(2, "veth-a"), done]));
    expect(msgs.map((m) => [m.type, m.seq, m.pid])).toEqual([
      [C.RTM_NEWLINK, 9, 77],
      [C.RTM_NEWLINK, 9, 77],
      [C.NLMSG_DONE, 9, 77],
    ]);
    expect(msgs.slice(0, 2).map((m) => parseLink(m).name)).toEqual(["lo", "veth-a"]);
    expect(decodeDone(msgs[2] as NonNullable<(typeof msgs)[2]>)).toEqual({ errno: 0 });

    // A dump that failed part-way: -ENOENT plus ext-ack text in NLMSG_DONE.
    const text = Buffer.from("ipv4: FIB table does not exist\0\0").toString("hex");
    const failed = hex(`38000000 0300 0202 09000000 4d000000 feffffff 2300 0100 ${text}`);
    const [d] = decodeMessages(failed);
    expect(decodeDone(d as NonNullable<typeof d>)).toEqual({
      errno: 2,
      message: "ipv4: FIB table does not exist",
    });
  });

  it("copies the datagram, so reusing the receive buffer cannot change decoded messages", () => {
    const rbuf = Buffer.from(NEWADDR);
    const [m] = decodeMessages(rbuf);
    rbuf.fill(0xff);
    expect(decodeAttrs((m as NonNullable<typeof m>).payload, C.IFADDRMSG_LEN).get(C.IFA_LOCAL)).toEqual(
      hex("0a000001"),
    );
  });

  it("walks attributes by their padded length and masks the nested flag", () => {
    const payload = Buffer.concat([
      attrString(C.IFLA_IFNAME, "eth0"),
      attrU8(C.IFLA_OPERSTATE, 2),
      attrNested(C.IFLA_LINKINFO, [attrString(C.IFLA_INFO_KIND, "tun")]),
      attrU32(C.IFLA_MTU, 9000),
    ]);
    const a = decodeAttrs(payload);
    expect([...a.keys()]).toEqual([C.IFLA_IFNAME, C.IFLA_OPERSTATE, C.IFLA_LINKINFO, C.IFLA_MTU]);
    expect(readString(a.get(C.IFLA_IFNAME) as Buffer)).toBe("eth0");
    expect(readU32(a.get(C.IFLA_MTU) as Buffer)).toBe(9000);
    expect(readString(decodeAttrs(a.get(C.IFLA_LINKINFO) as Buffer).get(C.IFLA_INFO_KIND) as Buffer)).toBe(
      "tun",
    );
  });

  it("rejects lengths that run past the end", () => {
    const short = Buffer.from(NEWADDR);
    short.writeUInt32LE(44, 0);
    expect(() => decodeMessages(short)).toThrow(expect.objectContaining({ code: "ERR_NETLINK_DECODE" }));
    const tiny = Buffer.from(NEWADDR);
    tiny.writeUInt32LE(8, 0);
    expect(() => decodeMessages(tiny)).toThrow(/claims 8 bytes/);
    expect(() => decodeAttrs(hex("0c000100 0a000001"))).toThrow(
      expect.objectContaining({ code: "ERR_NETLINK_DECODE" }),
    );
    expect(() => decodeIfinfomsg(Buffer.alloc(8))).toThrow(/ifinfomsg needs 16 bytes/);
  });

  it("formats addresses", () => {
    expect(readIPv4(hex("c633640a"))).toBe("198.51.100.10");
    expect(readMac(hex("02abcd00ff01"))).toBe("02:ab:cd:00:ff:01");
    expect(readString(Buffer.from("no-nul"))).toBe("no-nul");
  });
});

describe("typed records", () => {
  it("reads a link: name, flags, MTU, MAC, group, alias, kind, operstate", () => {
    const body = encodeBody(
      ifinfomsg({ index: 12, type: 1, flags: C.IFF_UP | C.IFF_BROADCAST | C.IFF_LOWER_UP }),
      [
        attrString(C.IFLA_IFNAME, "tap0"),
        attrU32(C.IFLA_MTU, 1500),
        attrMac(C.IFLA_ADDRESS, "02:fc:00:00:00:05"),
        attrU32(C.IFLA_GROUP, 4242),
        attrString(C.IFLA_IFALIAS, "vm-7"),
        attrNested(C.IFLA_LINKINFO, [attrString(C.IFLA_INFO_KIND, "tun")]),
        attrU8(C.IFLA_OPERSTATE, 6),
      ],
    );
    const [m] = decodeMessages(encodeMessage({ type: C.RTM_NEWLINK, flags: 0, seq: 1 }, body));
    expect(parseLink(m as NonNullable<typeof m>)).toEqual({
      index: 12,
      name: "tap0",
      flags: C.IFF_UP | C.IFF_BROADCAST | C.IFF_LOWER_UP,
      up: true,
      mtu: 1500,
      mac: "02:fc:00:00:00:05",
      group: 4242,
      alias: "vm-7",
      kind: "tun",
      operState: "UP",
    });
  });

  it("reads a point-to-point address: local from IFA_LOCAL, peer from IFA_ADDRESS", () => {
    const [m] = decodeMessages(Buffer.concat([NEWADDR.subarray(0, 40)]));
    expect(parseAddr(m as NonNullable<typeof m>)).toEqual({
      index: 5,
      family: C.AF_INET,
      local: "10.0.0.1",
      address: "10.0.0.2",
      prefix: 32,
    });
  });

  it("reads a route, preferring RTA_TABLE over the 8-bit rtm_table", () => {
    const body = encodeBody(
      rtmsg({ family: C.AF_INET, table: 252, protocol: 3, scope: 0, type: C.RTN_UNICAST }),
      [
        attrU32(C.RTA_TABLE, 1000),
        attrIPv4(C.RTA_GATEWAY, "192.0.2.1"),
        attrU32(C.RTA_OIF, 2),
        attrU32(C.RTA_PRIORITY, 5),
      ],
    );
    const [m] = decodeMessages(encodeMessage({ type: C.RTM_NEWROUTE, flags: C.NLM_F_MULTI, seq: 3 }, body));
    expect(parseRoute(m as NonNullable<typeof m>)).toEqual({
      dst: "0.0.0.0",
      prefix: 0,
      gateway: "192.0.2.1",
      oif: 2,
      metric: 5,
      table: 1000,
      protocol: "boot",
      scope: "global",
      type: "unicast",
    });
  });
});
