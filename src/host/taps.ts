/**
 * Finding VMs' TAPs and deleting them: one lookup and one RTM_DELLINK for a single VM, one link dump
 * and one RTM_DELLINK by interface group for several (detach, detachMany, gc, reconcile).
 */
import { constants as osConstants } from "node:os";
import { TAP_ALIAS } from "../api/context.js";
import { yieldIfHeld } from "../core/loop-budget.js";
import {
  type Link,
  linkDel,
  linkDelGroup,
  linkGet,
  linkList,
  linkSet,
  type NetlinkSocket,
} from "../kernel/netlink/index.js";
import type { VmRecord } from "../store/host-state.js";
import { isErrno } from "./errno.js";
import { isVmTap, tapAliasFor } from "./names.js";

const { ENODEV } = osConstants.errno;

/** Deletes a link; one already gone (ENODEV) is not an error. @throws KernelError otherwise. */
export async function deleteLink(nl: NetlinkSocket, link: Link): Promise<void> {
  try {
    await linkDel(nl, link.index);
  } catch (e) {
    if (!isErrno(e, ENODEV)) throw e;
  }
}

/**
 * The TAPs of these records that exist and are ours, by VM id (their indexes name the VMs' MAC
 * bindings, and they are deleted last). One record: one lookup by name, not a dump of every link
 * (which grows with the host); several: one dump, also returned as `all` for {@link deleteLinks}.
 * Deleting them: one TAP, one RTM_DELLINK; several, each goes down and into the batch group, then
 * one RTM_DELLINK by group removes them all — unless something that is not a VM TAP of ours sits in
 * that group, which is then never deleted (one request per TAP instead).
 */
export async function findTaps(
  nl: NetlinkSocket,
  recs: readonly VmRecord[],
): Promise<{ mine: Map<string, Link>; all: Link[] }> {
  const isMine = (r: VmRecord, l: Link | undefined): l is Link =>
    l !== undefined && l.kind === "tun" && (l.alias === tapAliasFor(r.vmId) || l.alias === TAP_ALIAS);
  const mine = new Map<string, Link>();
  if (recs.length === 0) return { mine, all: [] };
  if (recs.length === 1) {
    const r = recs[0] as VmRecord;
    const l = await linkGet(nl, r.tap);
    if (isMine(r, l)) mine.set(r.vmId, l);
    return { mine, all: [] };
  }
  const all = await linkList(nl);
  const byName = new Map(all.map((l) => [l.name, l]));
  for (const r of recs) {
    const l = byName.get(r.tap);
    if (isMine(r, l)) mine.set(r.vmId, l);
  }
  return { mine, all };
}

/**
 * Deletes our links, batched through `batchGroup` (an interface group nothing else uses) when there
 * are several (see {@link findTaps}); `all` is every link of the host, to spot a foreign one in that
 * group. @throws KernelError (a link gone meanwhile is not one).
 */
export async function deleteLinks(
  nl: NetlinkSocket,
  batchGroup: number,
  mine: readonly Link[],
  all: readonly Link[],
): Promise<void> {
  const foreignInBatch = all.some((l) => l.group === batchGroup && !isVmTap(l));
  if (mine.length === 1 || foreignInBatch) {
    for (const l of mine) await deleteLink(nl, l);
    return;
  }
  if (mine.length === 0) return;
  for (const l of mine) {
    await yieldIfHeld(); // each request is answered inside its send: let the loop turn now and then
    try {
      // Down first: out of the anti-spoofing group, the TAP must not pass packets.
      await linkSet(nl, l.index, { up: false, group: batchGroup });
    } catch (e) {
      if (!isErrno(e, ENODEV)) throw e;
    }
  }
  await linkDelGroup(nl, batchGroup);
}
