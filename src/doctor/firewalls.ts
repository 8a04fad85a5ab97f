/**
 * Doctor check: other firewalls that would drop forwarded guest traffic (Docker's iptables FORWARD
 * policy DROP, another nftables table dropping at the forward hook, legacy iptables), and whether
 * our opt-in integration is in place in each (see src/firewall/foreign.ts).
 */
import { findForeignBlocks } from "../firewall/foreign.js";
import type { Check, Finding } from "./types.js";

/**
 * One finding per foreign base chain that can drop guest traffic: "fail" while not integrated (fix:
 * `mvnet bootstrap --integrate`, or the manual rules), "ok" once integrated, "warn" when a legacy
 * ruleset is loaded but cannot be read. A single "ok" finding when nothing drops guest traffic; a
 * "warn" when nftables cannot be opened at all. Reads only (may spawn `iptables-legacy-save`, which
 * is read-only, when legacy tables are loaded).
 */
export const checkFirewalls: Check = async (ctx) => {
  if (!ctx.nft) {
    return [
      {
        id: "firewall.foreign",
        severity: "warn",
        title: "other firewalls not checked: nftables could not be opened",
        fix: "apt-get install libnftables1 (or nftables)",
      },
    ];
  }
  const blocks = await findForeignBlocks(ctx.nft, { table: ctx.table, tapGroup: ctx.tapGroup });
  if (blocks.length === 0) {
    return [
      {
        id: "firewall.foreign",
        severity: "ok",
        title: "no other firewall drops forwarded guest traffic",
      },
    ];
  }
  return blocks.map((b): Finding => {
    const where = `${b.kind} ${b.family} ${b.table} ${b.chain}`;
    const data = { kind: b.kind, family: b.family, table: b.table, chain: b.chain, target: b.target };
    if (b.unreadable) {
      return { id: `firewall.foreign.${b.kind}`, severity: "warn", title: b.reason, fix: b.fix, data };
    }
    if (b.integrated) {
      return {
        id: `firewall.foreign.${b.kind}`,
        severity: "ok",
        title: `${where} lets guest traffic through (integrated in ${b.target})`,
        detail: b.reason,
        data: { ...data, integrated: true },
      };
    }
    return {
      id: `firewall.foreign.${b.kind}`,
      severity: "fail",
      title: `${where} drops forwarded guest traffic`,
      detail: `${b.reason}. An accept in our table does not override a drop in another base chain, so guests cannot reach the internet and published ports do not answer.`,
      fix: b.fix,
      data: { ...data, integrated: false },
    };
  });
};
