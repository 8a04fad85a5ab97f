/**
 * Turns a legacy x_tables table as the kernel returns it (src/kernel/xtables.ts) into the chain model
 * of chain-model.ts (pure). Layout from include/uapi/linux/netfilter_ipv4/ip_tables.h and
 * include/uapi/linux/netfilter/x_tables.h, for 64-bit ABIs (struct ipt_entry is 112 bytes: its u64
 * counters are 8-byte aligned).
 */
import type { XtTable } from "../kernel/xtables.js";
import type { ModelChain, ModelRule } from "./chain-model.js";

const IPT_IP_SIZE = 84;
const ENTRY_SIZE = 112;
const TARGET_OFFSET = 88;
const NEXT_OFFSET = 90;
const XT_HEADER = 32; // u16 size, char name[29], u8 revision
const IPT_F_GOTO = 0x02;
const HOOK_CHAINS = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
// Standard verdicts: -NF_x - 1 (NF_DROP 0, NF_ACCEPT 1), XT_RETURN = -NF_REPEAT - 1.
const VERDICT_DROP = -1;
const VERDICT_ACCEPT = -2;
const VERDICT_RETURN = -5;
// include/uapi/linux/netfilter/xt_devgroup.h
const XT_DEVGROUP_MATCH_SRC = 0x1;
const XT_DEVGROUP_MATCH_DST = 0x4;

function cstr(buf: Buffer, at: number, max: number): string {
  const end = buf.indexOf(0, at);
  return buf.toString("latin1", at, end < 0 || end > at + max ? at + max : end);
}

interface RawEntry {
  offset: number;
  unconditional: boolean;
  goto: boolean;
  matches: Array<{ name: string; data: Buffer }>;
  target: string;
  targetData: Buffer;
}

function entries(t: XtTable): RawEntry[] {
  const b = t.entries;
  const out: RawEntry[] = [];
  for (let off = 0; off + ENTRY_SIZE <= b.length; ) {
    const targetOffset = b.readUInt16LE(off + TARGET_OFFSET);
    const next = b.readUInt16LE(off + NEXT_OFFSET);
    if (next < ENTRY_SIZE || targetOffset < ENTRY_SIZE || targetOffset > next) break; // malformed: stop
    const matches: RawEntry["matches"] = [];
    for (let m = off + ENTRY_SIZE; m < off + targetOffset; ) {
      const size = b.readUInt16LE(m);
      if (size < XT_HEADER) break;
      matches.push({ name: cstr(b, m + 2, 29), data: b.subarray(m + XT_HEADER, m + size) });
      m += size;
    }
    const t0 = off + targetOffset;
    const tsize = b.readUInt16LE(t0);
    out.push({
      offset: off,
      // The kernel's own test for an unconditional rule: an all-zero struct ipt_ip.
      unconditional: b.subarray(off, off + IPT_IP_SIZE).every((x) => x === 0),
      goto: ((b[off + 82] ?? 0) & IPT_F_GOTO) !== 0,
      matches,
      target: cstr(b, t0 + 2, 29),
      targetData: b.subarray(t0 + XT_HEADER, t0 + tsize),
    });
    off += next;
  }
  return out;
}

function ours(e: RawEntry, tapGroup: number): ModelRule["ours"] {
  if (!e.unconditional) return undefined;
  const names = e.matches.map((m) => m.name);
  if (names[0] !== "devgroup" || names.length > 2 || (names.length === 2 && names[1] !== "comment"))
    return undefined;
  const d = e.matches[0]?.data;
  if (!d || d.length < 20) return undefined;
  const [flags, srcGroup, srcMask, dstGroup, dstMask] = [0, 4, 8, 12, 16].map((i) => d.readUInt32LE(i));
  if (flags === XT_DEVGROUP_MATCH_SRC && srcGroup === tapGroup && srcMask === 0xffffffff) return "from-tap";
  if (flags === XT_DEVGROUP_MATCH_DST && dstGroup === tapGroup && dstMask === 0xffffffff) return "to-tap";
  return undefined;
}

/**
 * The table's chains: built-in chains by hook (their policy from the underflow entry), user chains
 * from their ERROR head entries; a standard target's positive verdict is a jump (a goto with
 * IPT_F_GOTO) to the chain starting at that offset.
 */
export function parseXtTable(t: XtTable, tapGroup: number): Map<string, ModelChain> {
  const list = entries(t);
  const startOf = new Map<number, string>();
  for (let h = 0; h < HOOK_CHAINS.length; h++) {
    if (t.validHooks & (1 << h)) startOf.set(t.hookEntry[h] as number, HOOK_CHAINS[h] as string);
  }
  list.forEach((e, i) => {
    const next = list[i + 1];
    if (e.target === "ERROR" && next) {
      const name = cstr(e.targetData, 0, 30);
      if (name !== "ERROR") startOf.set(next.offset, name);
    }
  });
  const underflow = new Map<number, string>();
  for (let h = 0; h < HOOK_CHAINS.length; h++) {
    if (t.validHooks & (1 << h)) underflow.set(t.underflow[h] as number, HOOK_CHAINS[h] as string);
  }
  const chains = new Map<string, ModelChain>();
  let current: ModelChain | undefined;
  for (const [i, e] of list.entries()) {
    const starts = startOf.get(e.offset);
    if (starts) {
      current = { rules: [] };
      chains.set(starts, current);
    }
    if (e.target === "ERROR") {
      current = undefined;
      continue;
    }
    const verdict = e.target === "" && e.targetData.length >= 4 ? e.targetData.readInt32LE(0) : undefined;
    const policyOf = underflow.get(e.offset);
    if (policyOf) {
      const c = chains.get(policyOf);
      if (c) c.policy = verdict === VERDICT_DROP ? "drop" : "accept";
      current = undefined;
      continue;
    }
    if (!current) continue;
    // A user chain ends with an unconditional RETURN the tool adds (iptables-save does not show it).
    const last = list[i + 1]?.target === "ERROR";
    if (last && verdict === VERDICT_RETURN && e.unconditional && e.matches.length === 0) continue;
    const rule: ModelRule = { verdict: "other" };
    if (e.target === "REJECT") rule.verdict = "reject";
    else if (verdict === VERDICT_DROP) rule.verdict = "drop";
    else if (verdict === VERDICT_ACCEPT) rule.verdict = "accept";
    else if (verdict === VERDICT_RETURN) rule.verdict = "return";
    else if (verdict !== undefined && verdict >= 0 && startOf.has(verdict)) {
      rule.verdict = e.goto ? "goto" : "jump";
      rule.target = startOf.get(verdict) as string;
    }
    const o = ours(e, tapGroup);
    if (o) rule.ours = o;
    current.rules.push(rule);
  }
  return chains;
}
