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
  renderCreateElement,
  renderGetElement,
  renderListTable,
  renderRemoveElement,
  validateTableName,
} from "./ruleset.js";
import { ensureSkeleton, forgetSkeleton } from "./table.js";

export type { HostMatch, Mapping } from "./mapping.js";

/**
 * The guest (`ip:port`) the mapping's key currently leads to, or undefined when the key, the map or
 * the table is absent.
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
 * @returns true when the element was added, false when exactly this mapping was already there.
 * @throws ValidationError (nothing touched); ConflictError when the same key (protocol, host side,
 *   host port) leads to another guest — `owner` is that guest's `ip:port`, and its mapping is left
 *   untouched; FirewallError when nft refuses otherwise.
 */
export async function addMapping(nft: NftApplier, table: string, mapping: Mapping): Promise<boolean> {
  const m = validateMapping(mapping);
  const t = validateTableName(table);
  const wanted = `${m.guestIp}:${m.guestPort}`;
  await ensureSkeleton(nft, t);
  // Two rounds: one repair of a vanished table, or one key that vanished between create and get.
  for (let round = 0; ; round++) {
    try {
      await nft.run(renderCreateElement(t, m));
      return true;
    } catch (e) {
      const errno = nftErrno(e);
      if (errno === "ENOENT" && round === 0) {
        forgetSkeleton(nft, t);
        await ensureSkeleton(nft, t, true);
        continue;
      }
      if (errno !== "EEXIST") throw e;
      const owner = await currentOwner(nft, t, m);
      if (owner === wanted) return false;
      if (owner === undefined && round === 0) continue;
      throw new ConflictError(
        `${describeHostSide(m)} is already published to ${owner ?? "another guest"}, not ${wanted}`,
        owner,
      );
    }
  }
}

/** What {@link removeMapping} found. */
export type RemoveOutcome = "removed" | "absent" | "other-owner";

/**
 * Removes exactly this mapping: the element goes only if its key still leads to this guest, checked
 * atomically in the same transaction (see renderRemoveElement). Never recreates the skeleton.
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
  // The look-up only tells absent from removed; the transaction below is what guards the owner.
  const owner = await currentOwner(nft, t, m);
  if (owner === undefined) return "absent";
  if (owner !== `${m.guestIp}:${m.guestPort}`) return "other-owner";
  try {
    await nft.run(renderRemoveElement(t, m));
    return "removed";
  } catch (e) {
    const errno = nftErrno(e);
    if (errno === "EEXIST") return "other-owner";
    if (errno === "ENOENT") return "absent";
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
