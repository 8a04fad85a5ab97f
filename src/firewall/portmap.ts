/**
 * Port mappings as elements of our maps: one small transaction per change, so the cost does not grow
 * with the number of mappings, and the packet path is one map lookup.
 *
 * Element changes go through our own nf_tables netlink messages (kernel/nftnl): one `send` per
 * transaction, no cache fetch, no thread-pool hop (≈ 40–70 µs here, against 0.3–0.9 ms through
 * libnftables, which refetches tables, chains and sets before every command). The skeleton (table,
 * maps, chains) and listing stay with libnftables; when the netlink socket cannot be opened (or
 * {@link setElementPath} says so) the element changes fall back to the equivalent nft text through
 * the applier. Both act in the process's network namespace: the applier and the socket must have
 * been opened in the same one (they are, unless a caller moves threads between namespaces).
 */

import { ConflictError, FirewallError, KernelError } from "../core/errors.js";
import { yieldIfHeld } from "../core/loop-budget.js";
import {
  defaultNftnlSocket,
  encodeFields,
  NFPROTO_IPV4,
  type NftnlSocket,
  type SetRef,
  setElemAdd,
  setElemGetRaw,
  setElemTransaction,
} from "../kernel/nftnl/index.js";
import {
  describeHostSide,
  type Mapping,
  mapOf,
  mappingElem,
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

/** How element changes reach the kernel: `auto` = our netlink when it opens, else libnftables. */
export type ElementPath = "auto" | "libnftables";

let elementPath: ElementPath = "auto";
/** The socket, or null once opening it failed (then every change takes the applier). */
let raw: NftnlSocket | null | undefined;

/**
 * Chooses how mapping changes reach the kernel, for the whole process: `auto` (our nf_tables
 * netlink, falling back to libnftables when the socket cannot be opened) or `libnftables` (the nft
 * text through the caller's applier, as before the netlink path existed — for comparison and to
 * test the fallback). Semantics are the same either way.
 */
export function setElementPath(path: ElementPath): void {
  elementPath = path;
  raw = undefined;
}

/**
 * The path mapping changes take now: `netlink` (ours) or `libnftables` (chosen, or the socket could
 * not be opened). Opens the socket if needed.
 */
export function activeElementPath(): "netlink" | "libnftables" {
  return rawSocket() ? "netlink" : "libnftables";
}

function rawSocket(): NftnlSocket | null {
  if (elementPath === "libnftables") return null;
  if (raw === undefined || raw?.closed) {
    try {
      raw = defaultNftnlSocket();
    } catch {
      raw = null; // no nfnetlink here (or a big-endian host): libnftables does the same work
    }
  }
  return raw;
}

/** The map a mapping lives in, as our netlink client names it (tables are family ip). */
function setRef(table: string, m: Mapping): SetRef {
  return { family: NFPROTO_IPV4, table, set: mapOf(m.host) };
}

/** `ip:port` from a value's bytes (4 address bytes, 2 port bytes in network order, 2 padding). */
function guestOf(data: Buffer): string | undefined {
  if (data.length !== 8) return undefined;
  return `${data[0]}.${data[1]}.${data[2]}.${data[3]}:${data.readUInt16BE(4)}`;
}

function errnoOf(e: unknown): string | undefined {
  return e instanceof KernelError ? e.code : undefined;
}

/** A refusal we do not handle becomes a FirewallError, as from the applier. */
function firewallError(e: unknown, m: Mapping): unknown {
  if (!(e instanceof KernelError)) return e;
  return new FirewallError(`changing the mapping of ${describeHostSide(m)}`, e.message);
}

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
 * from another guest's (EEXIST), without listing the map (nft_add_set_elem() in
 * net/netfilter/nf_tables_api.c).
 * @returns true when the element was added, false when exactly this mapping was already there.
 * @throws ValidationError (nothing touched); ConflictError when the same key (protocol, host side,
 *   host port) leads to another guest — `owner` is that guest's `ip:port` when it could be read, and
 *   its mapping is left untouched; FirewallError when nft or the kernel refuses otherwise.
 */
export async function addMapping(nft: NftApplier, table: string, mapping: Mapping): Promise<boolean> {
  const m = validateMapping(mapping);
  const t = validateTableName(table);
  await ensureSkeleton(nft, t);
  const sock = rawSocket();
  if (sock) {
    await yieldIfHeld();
    const added = addRaw(sock, t, m);
    if (added !== "no-table") return added;
  } else {
    try {
      await nft.run(renderCreateElement(t, m));
      return true;
    } catch (e) {
      if (nftErrno(e) === "EEXIST") return keyExists(nft, t, m);
      if (nftErrno(e) !== "ENOENT") throw e;
    }
  }
  // The table or a map vanished (a flushed ruleset): make the skeleton again and retry once.
  forgetSkeleton(nft, t);
  await ensureSkeleton(nft, t, true);
  if (sock) {
    const added = addRaw(sock, t, m);
    if (added !== "no-table") return added;
    throw new FirewallError(
      `publishing ${describeHostSide(m)}`,
      `the map ${mapOf(m.host)} of ${t} vanished again`,
    );
  }
  try {
    await nft.run(renderCreateElement(t, m));
    return true;
  } catch (e) {
    if (nftErrno(e) === "EEXIST") return keyExists(nft, t, m);
    throw e;
  }
}

/** {@link addMapping} over our netlink: create; on EEXIST add (identical → false); else conflict. */
function addRaw(sock: NftnlSocket, t: string, m: Mapping): boolean | "no-table" {
  const set = setRef(t, m);
  const elem = mappingElem(m);
  try {
    setElemAdd(sock, set, [elem], { exclusive: true });
    return true;
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return "no-table";
    if (errnoOf(e) !== "EEXIST") throw firewallError(e, m);
  }
  try {
    setElemAdd(sock, set, [elem]);
    return false;
  } catch (e) {
    if (errnoOf(e) === "ENOENT") return "no-table";
    if (errnoOf(e) !== "EEXIST") throw firewallError(e, m);
  }
  let owner: string | undefined;
  try {
    const data = setElemGetRaw(sock, set, elem.key);
    owner = data ? guestOf(data) : undefined;
  } catch {
    owner = undefined; // the conflict stands; only its owner's name is missing
  }
  throw new ConflictError(
    `${describeHostSide(m)} is already published to ${owner ?? "another guest"}, not ${m.guestIp}:${m.guestPort}`,
    owner,
  );
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
 * Removes exactly this mapping, never someone else's, at a cost that does not grow with the number
 * of mappings. Over our netlink: a read of the key (NFT_MSG_GETSETELEM) tells absent / another
 * guest's / ours; ours is then removed by one transaction of `add` (identical) + `delete`, which
 * fails with EEXIST — nothing changed — if the key was given to another guest in between. Through
 * the applier (fallback): `create` + `delete` succeeds (a net no-op) only when the key is absent,
 * otherwise `add` + `delete` as above. Never recreates the skeleton.
 * @returns `removed`; `absent` when the key (or the table) is not there — no error; `other-owner`
 *   when the key leads to another guest, whose mapping is left alone. (Over netlink, a mapping
 *   removed by someone else between the read and the transaction is reported `removed`: it was
 *   there, and it is gone.)
 * @throws ValidationError (nothing touched); FirewallError when nft or the kernel refuses otherwise.
 */
export async function removeMapping(
  nft: NftApplier,
  table: string,
  mapping: Mapping,
): Promise<RemoveOutcome> {
  const m = validateMapping(mapping);
  const t = validateTableName(table);
  const sock = rawSocket();
  if (sock) {
    await yieldIfHeld();
    return removeRaw(sock, t, m);
  }
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

function removeRaw(sock: NftnlSocket, t: string, m: Mapping): RemoveOutcome {
  const set = setRef(t, m);
  const { key, data = [] } = mappingElem(m);
  try {
    const current = setElemGetRaw(sock, set, key);
    if (current === undefined) return "absent";
    if (!current.equals(encodeFields(data))) return "other-owner";
    setElemTransaction(sock, [
      { op: "add", set, elems: [{ key, data }] },
      { op: "delete", set, elems: [{ key }] },
    ]);
    return "removed";
  } catch (e) {
    if (errnoOf(e) === "EEXIST") return "other-owner";
    if (errnoOf(e) === "ENOENT") return "absent";
    throw firewallError(e, m);
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
