/**
 * A VM's map elements as changes for our nf_tables netlink client (kernel/nftnl), so that attach and
 * detach put a VM's mappings and policy elements in one transaction without libnftables (which
 * refetches its whole cache before every command: ≈ 50 syscalls and a thread-pool hop, 0.5–0.9 ms).
 * The key and value layouts are those of the maps' declarations (firewall/ruleset.ts
 * renderSkeleton), the same as firewall/portmap.ts sends for a single mapping.
 */

import { type Mapping, mapOf, mappingElem } from "../firewall/mapping.js";
import { activeElementPath } from "../firewall/portmap.js";
import {
  defaultNftnlSocket,
  type ElemChange,
  NFPROTO_IPV4,
  type NftnlSocket,
  type SetElem,
} from "../kernel/nftnl/index.js";

/**
 * Changes that publish `mappings` (`create`: EEXIST when a key is there at all, like nft's
 * `create element`) or remove exactly them (`add` of the identical element, a no-op when present and
 * EEXIST when the key leads elsewhere, then `delete`: like firewall/ruleset.ts renderRemoveElement).
 * One change per map touched (two for a removal).
 */
export function mappingChanges(
  table: string,
  mappings: readonly Mapping[],
  op: "create" | "remove",
): ElemChange[] {
  const by = new Map<string, SetElem[]>();
  for (const m of mappings) {
    const name = mapOf(m.host);
    const list = by.get(name) ?? [];
    list.push(mappingElem(m));
    by.set(name, list);
  }
  const out: ElemChange[] = [];
  for (const [name, elems] of by) {
    const set = { family: NFPROTO_IPV4, table, set: name };
    if (op === "create") out.push({ op: "create", set, elems });
    else out.push({ op: "add", set, elems }, { op: "delete", set, elems });
  }
  return out;
}

/**
 * The process-wide nf_tables socket when element changes take our netlink path
 * (firewall/portmap.ts setElementPath / activeElementPath decide, for mappings and for this alike);
 * null when they go through libnftables.
 */
export function elementSocket(): NftnlSocket | null {
  return activeElementPath() === "netlink" ? defaultNftnlSocket() : null;
}
