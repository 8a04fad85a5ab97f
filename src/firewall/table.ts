/**
 * Applying the table's parts: bootstrap, teardown, and the lazily ensured port-mapping skeleton.
 */
import type { NftApplier } from "./nft.js";
import {
  type BootstrapSpec,
  DEFAULT_TABLE,
  renderBootstrap,
  renderSkeleton,
  renderTeardown,
  validateTableName,
} from "./ruleset.js";

// Tables whose skeleton an applier has put in place. Only a hint: the table can vanish behind our
// back (someone flushed the ruleset), which portmap.ts detects and repairs.
const ensured = new WeakMap<NftApplier, Set<string>>();

function ensuredSet(nft: NftApplier): Set<string> {
  let s = ensured.get(nft);
  if (!s) {
    s = new Set();
    ensured.set(nft, s);
  }
  return s;
}

/**
 * Makes sure the port-mapping skeleton exists (see renderSkeleton), once per applier and table
 * unless `force`. Existing map elements are kept.
 * @throws ValidationError for a bad table name; FirewallError when nft refuses.
 */
export async function ensureSkeleton(nft: NftApplier, table: string, force = false): Promise<void> {
  const t = validateTableName(table);
  const done = ensuredSet(nft);
  if (!force && done.has(t)) return;
  await nft.run(renderSkeleton(t));
  done.add(t);
}

/** Forgets that the skeleton of `table` was ensured through `nft` (it will be ensured again). */
export function forgetSkeleton(nft: NftApplier, table: string): void {
  ensured.get(nft)?.delete(table);
}

/**
 * Applies renderBootstrap(spec) in one transaction. Idempotent; port mappings survive it.
 * @throws ValidationError (nothing applied); FirewallError when nft refuses (nothing applied).
 */
export async function bootstrapFirewall(nft: NftApplier, spec: BootstrapSpec = {}): Promise<void> {
  const text = renderBootstrap(spec);
  await nft.run(text);
  ensuredSet(nft).add(spec.table ?? DEFAULT_TABLE);
}

/**
 * Deletes the table, rules and port mappings, in one transaction; an absent table is success.
 * @throws ValidationError for a bad table name; FirewallError when nft refuses.
 */
export async function teardownFirewall(nft: NftApplier, table: string = DEFAULT_TABLE): Promise<void> {
  const text = renderTeardown(table);
  forgetSkeleton(nft, table);
  await nft.run(text);
}
