/**
 * Reads a legacy x_tables IPv4 table (the ruleset `iptables-legacy` writes) straight from the kernel,
 * without spawning iptables-legacy-save: getsockopt(IPT_SO_GET_INFO) for its shape, then
 * getsockopt(IPT_SO_GET_ENTRIES) for the rules (include/uapi/linux/netfilter_ipv4/ip_tables.h).
 * Needs CAP_NET_ADMIN (net/ipv4/netfilter/ip_tables.c do_ipt_get_ctl) and a raw socket (CAP_NET_RAW).
 * Read-only. Ask only for tables listed in /proc/net/ip_tables_names: asking for another name makes
 * the kernel load and instantiate it.
 */
import { KernelError } from "../core/errors.js";
import { sysClose, sysGetsockopt, sysSocket } from "./ffi.js";

const AF_INET = 2;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const IPPROTO_RAW = 255;
const SOL_IP = 0;
// IPT_BASE_CTL 64: IPT_SO_GET_INFO, IPT_SO_GET_ENTRIES.
const IPT_SO_GET_INFO = 64;
const IPT_SO_GET_ENTRIES = 65;
const XT_TABLE_MAXNAMELEN = 32;
/** struct ipt_getinfo: name[32], valid_hooks, hook_entry[5], underflow[5], num_entries, size. */
const GETINFO_SIZE = 84;
/** struct ipt_get_entries: name[32], size, then the entries at 8-byte alignment. */
const GET_ENTRIES_HEADER = 40;

/** A table as the kernel holds it. Offsets are byte offsets into `entries`. */
export interface XtTable {
  name: string;
  /** Bit i set when hook i (NF_INET_PRE_ROUTING 0 … POST_ROUTING 4) has a built-in chain. */
  validHooks: number;
  /** Offset of each built-in chain's first entry. */
  hookEntry: number[];
  /** Offset of each built-in chain's policy entry. */
  underflow: number[];
  numEntries: number;
  /** The struct ipt_entry array, `size` bytes. */
  entries: Buffer;
}

/**
 * Reads table `name` (e.g. "filter").
 * @throws KernelError (EPERM without the capabilities, ENOENT when the table does not exist, EAGAIN
 *   when it changed between the two calls — retried up to 3 times first).
 */
export function readXtTable(name: string): XtTable {
  const fd = sysSocket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW, "reading x_tables");
  try {
    for (let attempt = 0; ; attempt++) {
      const info = Buffer.alloc(GETINFO_SIZE);
      info.write(name, 0, XT_TABLE_MAXNAMELEN - 1, "latin1");
      sysGetsockopt(fd, SOL_IP, IPT_SO_GET_INFO, info, `x_tables ${name}: IPT_SO_GET_INFO`);
      const u32 = (i: number): number => info.readUInt32LE(XT_TABLE_MAXNAMELEN + 4 * i);
      const size = u32(12);
      const req = Buffer.alloc(GET_ENTRIES_HEADER + size);
      req.write(name, 0, XT_TABLE_MAXNAMELEN - 1, "latin1");
      req.writeUInt32LE(size, XT_TABLE_MAXNAMELEN);
      try {
        sysGetsockopt(fd, SOL_IP, IPT_SO_GET_ENTRIES, req, `x_tables ${name}: IPT_SO_GET_ENTRIES`);
      } catch (e) {
        // The table was replaced between the two calls and its size changed.
        if (e instanceof KernelError && e.code === "EAGAIN" && attempt < 3) continue;
        throw e;
      }
      return {
        name,
        validHooks: u32(0),
        hookEntry: [1, 2, 3, 4, 5].map(u32),
        underflow: [6, 7, 8, 9, 10].map(u32),
        numEntries: u32(11),
        entries: req.subarray(GET_ENTRIES_HEADER, GET_ENTRIES_HEADER + size),
      };
    }
  } finally {
    sysClose(fd);
  }
}
