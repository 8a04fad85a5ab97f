/**
 * Port mappings as elements of our maps: one small transaction per change, so the cost does not grow
 * with the number of mappings, and the packet path is one map lookup.
 */
import { ConflictError } from "../core/errors.js";
import {
  describeHostSide,
  type Mapping,
  parseElementValue,
  parseMappings,
  validateMapping,
} from "./mapping.js";
import { type NftApplier, nftErrno } from "./nft.js";
import {
  renderAddElement,
  renderCreateElement,
  renderGetElement,
  renderListTable,
  renderProbeAbsent,
  renderRemoveElement,
  validateTableName,
} from "./ruleset.js";
import { ensureSkeleton, forgetSkeleton } from "./table.js";

export type { HostMatch, Mapping } from "./mapping.js";

/**
 * The guest (`ip:port`) the mapping's key currently leads to, or undefined when the key, the map or
 * the table is absent. Slow with many mappings: nft 1.0.6 loads every element of the map into its
 * cache for `get element` after any change (≈100 ms at 10 000), so it is only used to name the owner
 * of a conflict.
 */
async function currentOwner(nft: NftApplier, table: string, m: Mapping): Promise<string | undefined> {
  try {
    return parseElementValue(await nft.run(renderGetElement(table, m)));
  } catch (e) {
    if (nftErrno(e) === "ENOENT") return undefined;
    throw e;
  }
}

/**
 * Publishes a mapping: `create element` in one transaction, after ensuring the skeleton (once per
 * applier; again, with one retry, when the table vanished because someone flushed the ruleset).
 * When the key exists, a plain `add element` tells an identical mapping (a no-op for the kernel)
 * from another guest's (EEXIST), without listing the map.
 * @returns true when the element was added, false when exactly this mapping was already there.
 * @throws ValidationError (nothing touched); ConflictError when the same key (protocol, host side,
 *   host port) leads to another guest — `owner` is that guest's `ip:port` when it could be read, and
 *   its mapping is left untouched; FirewallError when nft refuses otherwise.
 */
export async function addMapping(nft: NftApplier, table: string, mapping: Mapping): Promise<boolean> {
  const m = validateMapping(mapping);
  const t = validateTableName(table);
  await ensureSkeleton(nft, t);
  try {
    await nft.run(renderCreateElement(t, m));
    return true;
  } catch (e) {
    if (nftErrno(e) === "EEXIST") return keyExists(nft, t, m);
    if (nftErrno(e) !== "ENOENT") throw e;
  }
  // The table or a map vanished (a flushed ruleset): make the skeleton again and retry once.
  forgetSkeleton(nft, t);
  await ensureSkeleton(nft, t, true);
  try {
    await nft.run(renderCreateElement(t, m));
    return true;
  } catch (e) {
    if (nftErrno(e) === "EEXIST") return keyExists(nft, t, m);
    throw e;
  }
}

/** `create` found the key: identical (then `add` is a no-op → false) or another guest's (→ ConflictError). */
async function keyExists(nft: NftApplier, t: string, m: Mapping): Promise<false> {
  try {
    await nft.run(renderAddElement(t, m));
    return false;
  } catch (e) {
    if (nftErrno(e) !== "EEXIST") throw e;
  }
  const owner = await currentOwner(nft, t, m);
  const wanted = `${m.guestIp}:${m.guestPort}`;
  throw new ConflictError(
    `${describeHostSide(m)} is already published to ${owner ?? "another guest"}, not ${wanted}`,
    owner,
  );
}

/** What {@link removeMapping} found. */
export type RemoveOutcome = "removed" | "absent" | "other-owner";

/**
 * Removes exactly this mapping, never someone else's, in at most two small transactions whose cost
 * does not grow with the number of mappings:
 * 1. `create` + `delete` of the element: succeeds (a net no-op) only when the key is absent;
 * 2. otherwise `add` + `delete` (renderRemoveElement): removes it when the key leads to this guest,
 *    fails with EEXIST — nothing changed — when it leads to another.
 * Never recreates the skeleton.
 * @returns `removed`; `absent` when the key (or the table) is not there — no error; `other-owner`
 *   when the key leads to another guest, whose mapping is left alone.
 * @throws ValidationError (nothing touched); FirewallError when nft refuses otherwise.
 */
export async function removeMapping(
  nft: NftApplier,
  table: string,
  mapping: Mapping,
): Promise<RemoveOutcome> {
  const m = validateMapping(mapping);
  const t = validateTableName(table);
  try {
    await nft.run(renderProbeAbsent(t, m));
    return "absent";
  } catch (e) {
    const errno = nftErrno(e);
    if (errno === "ENOENT") return "absent";
    if (errno !== "EEXIST") throw e;
  }
  try {
    await nft.run(renderRemoveElement(t, m));
    return "removed";
  } catch (e) {
    if (nftErrno(e) === "EEXIST") return "other-owner";
    throw e;
  }
}

/**
 * Lists every mapping in our maps (pm_any, then pm_addr, then pm_iif, each in nft's order).
 * @returns [] when the table does not exist.
 * @throws ValidationError for a bad table name; FirewallError when nft refuses otherwise.
 */
export async function listMappings(nft: NftApplier, table: string): Promise<Mapping[]> {
  const t = validateTableName(table);
  let json: string;
  try {
    json = await nft.run(renderListTable(t), { json: true });
  } catch (e) {
    if (nftErrno(e) === "ENOENT") return [];
    throw e;
  }
  return parseMappings(json);
}
