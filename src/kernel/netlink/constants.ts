/**
 * Numbers of the rtnetlink ABI this client uses. Values are fixed by the kernel's UAPI headers and
 * never change; each group names the header it comes from. test/unit/netlink-codec.test.ts checks
 * the byte layouts built from them.
 */

// ---- sockets: <bits/socket.h>, <asm-generic/socket.h>, linux/netlink.h ----

/** Address family of netlink sockets (`AF_NETLINK`). */
export const AF_NETLINK = 16;
/** `AF_UNSPEC`: all families (link dumps). */
export const AF_UNSPEC = 0;
/** `AF_INET`: IPv4. */
export const AF_INET = 2;
/** `SOCK_RAW`, the datagram-like type netlink uses. */
export const SOCK_RAW = 3;
/** `SOCK_NONBLOCK` (= O_NONBLOCK on x86-64 and arm64). */
export const SOCK_NONBLOCK = 0o4000;
/** `SOCK_CLOEXEC` (= O_CLOEXEC). */
export const SOCK_CLOEXEC = 0o2000000;
/** Netlink protocol of the routing family (linux/netlink.h `NETLINK_ROUTE`). */
export const NETLINK_ROUTE = 0;
/** `SOL_SOCKET`. */
export const SOL_SOCKET = 1;
/** `SO_RCVBUF`: receive buffer size, capped by net.core.rmem_max. */
export const SO_RCVBUF = 8;
/** `SO_RCVBUFFORCE`: like SO_RCVBUF but ignores rmem_max; needs CAP_NET_ADMIN. */
export const SO_RCVBUFFORCE = 33;
/** `SOL_NETLINK` (<bits/socket.h>). */
export const SOL_NETLINK = 270;
/** `MSG_TRUNC` (recv flag): return the real datagram length even when the buffer was shorter. */
export const MSG_TRUNC = 0x20;

/** linux/netlink.h: echo only the request header (16 bytes) in error messages. */
export const NETLINK_CAP_ACK = 10;
/** linux/netlink.h: let the kernel attach extended-ack TLVs (error text, offending offset). */
export const NETLINK_EXT_ACK = 11;
/** linux/netlink.h: validate GET/dump headers strictly, which also enables kernel-side dump filters. */
export const NETLINK_GET_STRICT_CHK = 12;

// ---- struct nlmsghdr (linux/netlink.h) ----

/** sizeof(struct nlmsghdr): len u32, type u16, flags u16, seq u32, pid u32. */
export const NLMSG_HDRLEN = 16;
/** Alignment of messages and attributes (`NLMSG_ALIGNTO`, `NLA_ALIGNTO`). */
export const NLMSG_ALIGNTO = 4;
/** sizeof(struct nlattr) / struct rtattr: len u16, type u16. */
export const NLA_HDRLEN = 4;
/** Attribute type bit: payload is nested attributes. */
export const NLA_F_NESTED = 1 << 15;
/** Attribute type bit: payload is in network byte order. */
export const NLA_F_NET_BYTEORDER = 1 << 14;
/** Mask giving the attribute type without the two flag bits above. */
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

/** Control message: nothing. */
export const NLMSG_NOOP = 0x1;
/** Control message: error or (errno 0) acknowledgement, `struct nlmsgerr`. */
export const NLMSG_ERROR = 0x2;
/** Control message: end of a multipart dump; payload is an int (0 or -errno). */
export const NLMSG_DONE = 0x3;
/** Control message: data lost. */
export const NLMSG_OVERRUN = 0x4;

/** nlmsg_flags (linux/netlink.h). */
export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
/** Set by the kernel on dump parts when the dumped table changed under it: the dump is inconsistent. */
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP_FILTERED = 0x20;
/** GET modifiers. */
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_ATOMIC = 0x400;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
/** NEW modifiers. */
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
/** ACK flags: the echoed request was cut to its header (NETLINK_CAP_ACK, or any success ACK). */
export const NLM_F_CAPPED = 0x100;
/** ACK flags: extended-ack TLVs follow the echoed request. */
export const NLM_F_ACK_TLVS = 0x200;

/** enum nlmsgerr_attrs (linux/netlink.h): TLVs after the echoed request in NLMSG_ERROR / NLMSG_DONE. */
export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;
export const NLMSGERR_ATTR_COOKIE = 3;
export const NLMSGERR_ATTR_POLICY = 4;
export const NLMSGERR_ATTR_MISS_TYPE = 5;
export const NLMSGERR_ATTR_MISS_NEST = 6;

// ---- message types (linux/rtnetlink.h) ----

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

const messageTypeNames: Record<number, string> = {
  [NLMSG_NOOP]: "NLMSG_NOOP",
  [NLMSG_ERROR]: "NLMSG_ERROR",
  [NLMSG_DONE]: "NLMSG_DONE",
  [NLMSG_OVERRUN]: "NLMSG_OVERRUN",
  [RTM_NEWLINK]: "RTM_NEWLINK",
  [RTM_DELLINK]: "RTM_DELLINK",
  [RTM_GETLINK]: "RTM_GETLINK",
  [RTM_SETLINK]: "RTM_SETLINK",
  [RTM_NEWADDR]: "RTM_NEWADDR",
  [RTM_DELADDR]: "RTM_DELADDR",
  [RTM_GETADDR]: "RTM_GETADDR",
  [RTM_NEWROUTE]: "RTM_NEWROUTE",
  [RTM_DELROUTE]: "RTM_DELROUTE",
  [RTM_GETROUTE]: "RTM_GETROUTE",
  [RTM_NEWNEIGH]: "RTM_NEWNEIGH",
  [RTM_DELNEIGH]: "RTM_DELNEIGH",
  [RTM_GETNEIGH]: "RTM_GETNEIGH",
};

/** Name of a message type (`20` → `RTM_NEWADDR`), or `NLMSG(<n>)` for one this client does not know. */
export function messageTypeName(type: number): string {
  return messageTypeNames[type] ?? `NLMSG(${type})`;
}

/** Sizes of the fixed headers that follow nlmsghdr (all already 4-byte aligned). */
export const IFINFOMSG_LEN = 16;
export const IFADDRMSG_LEN = 8;
export const RTMSG_LEN = 12;
export const NDMSG_LEN = 12;

// ---- links: linux/if_link.h, linux/if.h ----

export const IFLA_ADDRESS = 1;
export const IFLA_BROADCAST = 2;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_MASTER = 10;
export const IFLA_TXQLEN = 13;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_IFALIAS = 20;
export const IFLA_GROUP = 27;
export const IFLA_EXT_MASK = 29;
export const IFLA_MIN_MTU = 50;
export const IFLA_MAX_MTU = 51;
export const IFLA_ALT_IFNAME = 53;

/** Nested inside IFLA_LINKINFO. */
export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;

/** IFLA_EXT_MASK bit (linux/rtnetlink.h): leave IFLA_STATS/IFLA_STATS64 out of link replies. */
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;

/** ifi_flags bits (linux/if.h `enum net_device_flags`). */
export const IFF_UP = 1 << 0;
export const IFF_BROADCAST = 1 << 1;
export const IFF_LOOPBACK = 1 << 3;
export const IFF_POINTOPOINT = 1 << 4;
export const IFF_RUNNING = 1 << 6;
export const IFF_NOARP = 1 << 7;
export const IFF_MULTICAST = 1 << 12;
export const IFF_LOWER_UP = 1 << 16;

/** Longest alias the kernel stores: IFALIASZ (256, linux/if.h) minus the terminating NUL. */
export const IFALIAS_MAX_BYTES = 255;

/** RFC 2863 operational states, indexed by IF_OPER_* (linux/if_link.h), spelt as `ip` prints them. */
export const OPER_STATES = ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"];

// ---- addresses: linux/if_addr.h ----

export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_LABEL = 3;
export const IFA_BROADCAST = 4;
export const IFA_FLAGS = 8;

// ---- routes: linux/rtnetlink.h ----

export const RTA_DST = 1;
export const RTA_SRC = 2;
export const RTA_IIF = 3;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_MULTIPATH = 9;
export const RTA_TABLE = 15;

/** Routing tables (`enum rt_class_t`). 0 (`RT_TABLE_UNSPEC`) in a dump request means all tables. */
export const RT_TABLE_UNSPEC = 0;
export const RT_TABLE_MAIN = 254;
export const RT_TABLE_LOCAL = 255;

/** Route types (`rtm_type`), indexed by RTN_* value, spelt as `ip` prints them. */
export const ROUTE_TYPES = [
  "unspec",
  "unicast",
  "local",
  "broadcast",
  "anycast",
  "multicast",
  "blackhole",
  "unreachable",
  "prohibit",
  "throw",
  "nat",
  "xresolve",
];
export const RTN_UNICAST = 1;

/** Route scopes (`enum rt_scope_t`), spelt as iproute2's rt_scopes file does. */
export const ROUTE_SCOPES: Record<number, string> = {
  0: "global",
  200: "site",
  253: "link",
  254: "host",
  255: "nowhere",
};

/** Route origins (RTPROT_*) the kernel itself defines, spelt as iproute2's rt_protos file does. */
export const ROUTE_PROTOCOLS: Record<number, string> = {
  0: "unspec",
  1: "redirect",
  2: "kernel",
  3: "boot",
  4: "static",
  16: "dhcp",
};

// ---- neighbours: linux/neighbour.h ----

export const NDA_DST = 1;
export const NDA_LLADDR = 2;
/** Neighbour states (`ndm_state`). */
export const NUD_REACHABLE = 0x02;
export const NUD_STALE = 0x04;
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
