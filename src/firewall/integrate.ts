/**
 * The opt-in integration with other firewalls: in each foreign base chain that can drop forwarded
 * guest traffic (see foreign.ts), two accept rules at the top that match only our TAP group — one
 * for packets arriving from a TAP, one for packets leaving through one. Nothing else is let through
 * those chains, so the host's own policy for other traffic is unchanged; what guests may reach is
 * still decided by our table's guest_forward chain, whose drops stay final whatever another chain
 * accepts (nft(8) "VERDICT STATEMENT").
 *
 * Native nftables chains get `meta iifgroup G accept comment "microvm-net"` (and `oifgroup`) through
 * libnftables' JSON input (no quoting of foreign chain names). Chains managed by iptables (nft
 * backend or legacy) get the same through the host's own tool (see iptables.ts for why), into Docker's
 * DOCKER-USER when FORWARD jumps to it — Docker evaluates it first and never flushes it — else at
 * the top of FORWARD.
 */
import { FirewallError } from "../core/errors.js";
import type {
  IntegrationEntry,
  IptablesIntegrationEntry,
  NftIntegrationEntry,
} from "../store/integration-state.js";
import type { ForeignBlock } from "./foreign.js";
import { readNftRuleset } from "./foreign.js";
import { INTEGRATION_COMMENT, iptablesTool, ourIptablesRules, runIptables } from "./iptables.js";
import type { NftApplier } from "./nft.js";

function jsonCommands(cmds: unknown[]): string {
  return JSON.stringify({ nftables: cmds });
}

function groupRule(block: ForeignBlock, key: "iifgroup" | "oifgroup", tapGroup: number): unknown {
  return {
    insert: {
      rule: {
        family: block.family,
        table: block.table,
        chain: block.target,
        comment: INTEGRATION_COMMENT,
        expr: [{ match: { op: "==", left: { meta: { key } }, right: tapGroup } }, { accept: null }],
      },
    },
  };
}

async function ourHandles(nft: NftApplier, family: string, table: string, chain: string): Promise<number[]> {
  const rs = await readNftRuleset(nft);
  return rs.rules
    .filter(
      (r) =>
        r.family === family && r.table === table && r.chain === chain && r.comment === INTEGRATION_COMMENT,
    )
    .map((r) => r.handle);
}

/**
 * Inserts our two accept rules at the top of `block.target`.
 * - nftables: one transaction (both or neither); the new rules' handles are found by their comment
 *   among the chain's rules that were not there before.
 * - iptables-nft / iptables-legacy: `<tool> -w -t <table> -I <target> -m devgroup --dst-group G -m
 *   comment --comment microvm-net -j ACCEPT`, then the same with `--src-group`; if the second fails
 *   the first is deleted again.
 * @returns what was inserted, for {@link removeIntegrationEntry}.
 * @throws FirewallError when nft or the tool refuses; UnsupportedError when the tool is missing.
 */
export async function integrateBlock(
  nft: NftApplier,
  block: ForeignBlock,
  tapGroup: number,
): Promise<IntegrationEntry> {
  if (block.kind === "nftables") {
    const before = new Set(await ourHandles(nft, block.family, block.table, block.target));
    // Inserted in this order so that the "from a TAP" rule ends up first.
    await nft.run(
      jsonCommands([groupRule(block, "oifgroup", tapGroup), groupRule(block, "iifgroup", tapGroup)]),
      { json: true },
    );
    const after = await ourHandles(nft, block.family, block.table, block.target);
    const entry: NftIntegrationEntry = {
      kind: "nftables",
      family: block.family,
      table: block.table,
      chain: block.target,
      handles: after.filter((h) => !before.has(h)),
    };
    if (entry.handles.length !== 2) {
      throw new FirewallError(
        `integration into ${block.family} ${block.table} ${block.target}`,
        `expected 2 new rules with comment ${INTEGRATION_COMMENT}, found ${entry.handles.length}`,
      );
    }
    return entry;
  }
  const tool = iptablesTool(block.kind === "iptables-nft" ? "nft" : "legacy");
  const [fromTap, toTap] = ourIptablesRules(tapGroup) as [string[], string[]];
  const entry: IptablesIntegrationEntry = {
    kind: block.kind,
    table: block.table,
    chain: block.target,
    rules: [],
  };
  for (const rule of [toTap, fromTap]) {
    try {
      await runIptables(tool, ["-t", block.table, "-I", block.target, ...rule]);
    } catch (e) {
      await removeIntegrationEntry(nft, entry).catch(() => undefined);
      throw e;
    }
    entry.rules.push(rule);
  }
  return entry;
}

/**
 * Deletes exactly what {@link integrateBlock} inserted. Rules already gone (chain flushed, table
 * deleted) are skipped; a native rule is deleted only while its handle still carries our comment, so
 * a handle the kernel reused (after the table was recreated) is left alone.
 * @throws FirewallError when nft or the tool refuses for another reason.
 */
export async function removeIntegrationEntry(nft: NftApplier, entry: IntegrationEntry): Promise<void> {
  if (entry.kind === "nftables") {
    const present = new Set(await ourHandles(nft, entry.family, entry.table, entry.chain));
    const del = entry.handles
      .filter((h) => present.has(h))
      .map((handle) => ({
        delete: { rule: { family: entry.family, table: entry.table, chain: entry.chain, handle } },
      }));
    if (del.length > 0) await nft.run(jsonCommands(del), { json: true });
    return;
  }
  const tool = iptablesTool(entry.kind === "iptables-nft" ? "nft" : "legacy");
  for (const rule of entry.rules) {
    try {
      await runIptables(tool, ["-t", entry.table, "-D", entry.chain, ...rule]);
    } catch (e) {
      // iptables(8): "Bad rule (does a matching rule exist in that chain?)" / "No chain/target/match
      // by that name": already gone, which is the goal.
      if (e instanceof FirewallError && /does a matching rule exist|No chain\/target\/match/.test(e.detail))
        continue;
      throw e;
    }
  }
}
