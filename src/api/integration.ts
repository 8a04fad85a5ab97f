/**
 * Opt-in integration with the host's other firewalls (Docker's iptables FORWARD policy DROP, another
 * nftables table dropping at the forward hook, legacy iptables), and its exact undo.
 */
import { ValidationError } from "../core/errors.js";
import { describe } from "../core/validate.js";
import { type ForeignBlock, findForeignBlocks } from "../firewall/foreign.js";
import { integrateBlock, removeIntegrationEntry } from "../firewall/integrate.js";
import { validateTableName } from "../firewall/ruleset.js";
import {
  type IntegrationEntry,
  readIntegrationState,
  removeIntegrationState,
  writeIntegrationState,
} from "../store/integration-state.js";
import { context, type NetworkOptions, optionsOf } from "./context.js";

/** What {@link integrateHostFirewall} did and what is left. */
export interface IntegrationResult {
  /** Rules inserted by this call (empty when everything was already integrated). */
  inserted: IntegrationEntry[];
  /** Every foreign block, read again after the change (each should say `integrated: true`). */
  blocks: ForeignBlock[];
  /**
   * Blocks still not integrated: unreadable legacy rulesets, tables owned by another process, or
   * chains that still drop before ours.
   */
  remaining: ForeignBlock[];
}

/**
 * Lets our guests' forwarded traffic through every foreign base chain that would drop it (see
 * firewall/foreign.ts findForeignBlocks): two accepts matching only our TAP interface group
 * (`options.group`) at the top of each such chain (firewall/integrate.ts). Traffic of other
 * interfaces is judged by the host's firewall exactly as before; what guests may reach is still
 * decided by our table. Idempotent: chains already integrated are left alone. Each insertion is
 * recorded (store/integration-state.ts, per network namespace under `stateDir`) right after it
 * succeeds, so {@link removeHostFirewallIntegration} removes exactly it, from any process.
 * Spawns `iptables-nft` / `iptables-legacy` for chains those tools manage (see firewall/iptables.ts).
 * @throws ValidationError for a bad `table` or `group` (nothing touched); FirewallError /
 *   UnsupportedError (a missing iptables tool), after deleting what this call inserted.
 */
export async function integrateHostFirewall(given: NetworkOptions | null = {}): Promise<IntegrationResult> {
  const options = optionsOf(given);
  if (options.table !== undefined) validateTableName(options.table);
  const g = options.group;
  if (g !== undefined && (!Number.isInteger(g) || g < 0 || g > 0xffffffff)) {
    throw new ValidationError("group", `${describe(g)} is not an interface group in 0-4294967295`);
  }
  const ctx = context(options);
  const nft = await ctx.nft();
  const scope = { table: ctx.table, tapGroup: ctx.group };
  const previous = readIntegrationState(ctx.stateDir);
  const state = { version: 1 as const, tapGroup: ctx.group, entries: [...(previous?.entries ?? [])] };
  const inserted: IntegrationEntry[] = [];
  try {
    for (const block of await findForeignBlocks(nft, scope)) {
      if (block.integrated || block.unreadable || block.owned) continue;
      const entry = await integrateBlock(nft, block, ctx.group);
      inserted.push(entry);
      state.entries.push(entry);
      writeIntegrationState(state, ctx.stateDir);
    }
  } catch (e) {
    for (const entry of inserted.reverse()) await removeIntegrationEntry(nft, entry).catch(() => undefined);
    if (previous) writeIntegrationState(previous, ctx.stateDir);
    else removeIntegrationState(ctx.stateDir);
    throw e;
  }
  const blocks = await findForeignBlocks(nft, scope);
  return { inserted, blocks, remaining: blocks.filter((b) => !b.integrated) };
}

/**
 * Deletes exactly the rules {@link integrateHostFirewall} recorded, newest first, then the record.
 * Rules someone else already deleted are skipped; nothing else in the foreign chains is touched.
 * A no-op when nothing is recorded.
 * @throws FirewallError / UnsupportedError; the entries not yet removed stay recorded.
 */
export async function removeHostFirewallIntegration(given: NetworkOptions | null = {}): Promise<void> {
  const options = optionsOf(given);
  const ctx = context(options);
  const state = readIntegrationState(ctx.stateDir);
  if (!state) return;
  const nft = await ctx.nft();
  const left = [...state.entries];
  while (left.length > 0) {
    await removeIntegrationEntry(nft, left[left.length - 1] as IntegrationEntry);
    left.pop();
    writeIntegrationState({ ...state, entries: left }, ctx.stateDir);
  }
  removeIntegrationState(ctx.stateDir);
}
