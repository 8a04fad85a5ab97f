/**
 * Counters around our forward chain, in a table of the test's own: `before` (priority -10) sees every
 * packet the host forwards, `after` (priority +10) only those our table let through. A packet counted
 * before and not after was dropped by our rules — not lost to a failed ARP in the guest, nor to routing.
 */
import { sh } from "../../helpers/kernel.js";

const TABLE = "e2e_probe";

/** A flow to count: IPv4 source and destination. */
export interface Flow {
  name: string;
  saddr: string;
  daddr: string;
}

/** Installs the probe table for `flows` (replacing an earlier one). */
export function installProbe(flows: readonly Flow[]): void {
  const lines = [`add table ip ${TABLE}`, `delete table ip ${TABLE}`, `add table ip ${TABLE}`];
  for (const f of flows) {
    lines.push(`add counter ip ${TABLE} ${f.name}_before`, `add counter ip ${TABLE} ${f.name}_after`);
  }
  for (const [chain, prio] of [
    ["before", -10],
    ["after", 10],
  ] as const) {
    lines.push(
      `add chain ip ${TABLE} ${chain} { type filter hook forward priority ${prio}; policy accept; }`,
      ...flows.map(
        (f) =>
          `add rule ip ${TABLE} ${chain} ip saddr ${f.saddr} ip daddr ${f.daddr} counter name ${f.name}_${chain}`,
      ),
    );
  }
  sh("nft", ["-f", "-"], `${lines.join("\n")}\n`);
}

/** Packet counts per flow: `{ name: { before, after } }`. */
export function readProbe(): Record<string, { before: number; after: number }> {
  const out = JSON.parse(sh("nft", ["-j", "list", "counters", "table", "ip", TABLE])) as {
    nftables: Array<{ counter?: { name: string; packets: number } }>;
  };
  const result: Record<string, { before: number; after: number }> = {};
  for (const o of out.nftables) {
    const c = o.counter;
    if (!c) continue;
    const m = /^(.*)_(before|after)$/.exec(c.name);
    if (!m) continue;
    const name = m[1] as string;
    result[name] ??= { before: 0, after: 0 };
    result[name][m[2] as "before" | "after"] = c.packets;
  }
  return result;
}

/** Removes the probe table. */
export function removeProbe(): void {
  sh("nft", ["-f", "-"], `add table ip ${TABLE}\ndelete table ip ${TABLE}\n`);
}
