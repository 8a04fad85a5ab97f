// integrateHostFirewall all-or-nothing: when inserting into the second foreign chain fails, the
// rules it put into the first are deleted again and no record is left. Runs against an in-memory
// nftables that applies the JSON insert/delete commands the integration sends.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { integrateHostFirewall, removeHostFirewallIntegration } from "../../src/api/integration.js";
import { FirewallError } from "../../src/core/errors.js";
import { legacyTableNames } from "../../src/firewall/iptables.js";
import type { NftApplier } from "../../src/firewall/nft.js";
import type { NetlinkSocket } from "../../src/kernel/netlink/index.js";

type Item = Record<string, Record<string, unknown>>;

/** A fake applier over a list of ruleset items; inserts into `failChain` are refused. */
function memoryNft(items: Item[], failChain: string): NftApplier {
  let handle = 100;
  return {
    kind: "nft-process",
    async run(commands) {
      if (commands.startsWith("list ruleset")) return JSON.stringify({ nftables: items });
      for (const c of (JSON.parse(commands) as { nftables: Item[] }).nftables) {
        if (c.insert) {
          const rule = c.insert.rule as Record<string, unknown>;
          if (rule.chain === failChain) throw new FirewallError("nftables refused the transaction", "EPERM");
          const at = items.findIndex((i) => i.rule && i.rule.chain === rule.chain);
          const item = { rule: { ...rule, handle: handle++ } };
          if (at < 0) items.push(item);
          else items.splice(at, 0, item);
        } else if (c.delete) {
          const d = c.delete.rule as Record<string, unknown>;
          const at = items.findIndex((i) => i.rule && i.rule.chain === d.chain && i.rule.handle === d.handle);
          if (at >= 0) items.splice(at, 1);
        }
      }
      return "";
    },
    close: () => undefined,
  };
}

const dropChain = (table: string, name: string): Item[] => [
  { table: { family: "inet", name: table, handle: 1 } },
  {
    chain: {
      family: "inet",
      table,
      name,
      handle: 2,
      type: "filter",
      hook: "forward",
      prio: 0,
      policy: "drop",
    },
  },
];

// The integration also reads this namespace's legacy iptables tables and would write to them: these
// tests run in the machine's own namespace, so they only run where it has none.
const hostHasLegacy = legacyTableNames().length > 0;
if (hostHasLegacy)
  console.log("integration rollback tests skipped: this namespace has legacy iptables tables");

describe.skipIf(hostHasLegacy)("integrateHostFirewall rollback", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("deletes what it inserted into the first chain when the second refuses, and records nothing", async () => {
    const items = [...dropChain("a", "fwd_a"), ...dropChain("b", "fwd_b")];
    const before = JSON.stringify(items);
    const stateDir = mkdtempSync(join(tmpdir(), "mvnet-integ-"));
    dirs.push(stateDir);
    const nft = memoryNft(items, "fwd_b");
    const options = { nft, stateDir, netlink: {} as NetlinkSocket };
    await expect(integrateHostFirewall(options)).rejects.toBeInstanceOf(FirewallError);
    expect(JSON.stringify(items)).toBe(before);
    expect(readdirSync(stateDir)).toEqual([]);
  });

  it("without a failure, inserts two rules per chain and removal restores the ruleset exactly", async () => {
    const items = [...dropChain("a", "fwd_a"), ...dropChain("b", "fwd_b")];
    const before = JSON.stringify(items);
    const stateDir = mkdtempSync(join(tmpdir(), "mvnet-integ-"));
    dirs.push(stateDir);
    const options = { nft: memoryNft(items, "none"), stateDir, netlink: {} as NetlinkSocket };
    const r = await integrateHostFirewall(options);
    expect(r.inserted.map((e) => [e.kind === "nftables" && e.handles.length, e.chain])).toEqual([
      [2, "fwd_a"],
      [2, "fwd_b"],
    ]);
    expect(r.remaining).toEqual([]);
    expect(items.filter((i) => i.rule)).toHaveLength(4);
    await removeHostFirewallIntegration(options);
    expect(JSON.stringify(items)).toBe(before);
    expect(readdirSync(stateDir)).toEqual([]);
  });
});
