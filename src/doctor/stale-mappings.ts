/**
 * Check: port mappings (src/firewall/portmap.ts) that lead to a guest no TAP of ours reaches.
 */
import { listMappings, type Mapping } from "../firewall/portmap.js";
import { finding } from "./finding.js";
import { listOurTaps, tapRoutingTo } from "./our-taps.js";
import type { DoctorContext, Finding } from "./types.js";

/** The `mvnet port rm` command that removes exactly `m`. */
export function portRmCommand(m: Mapping): string {
  const host =
    m.host.kind === "any"
      ? ""
      : m.host.kind === "address"
        ? ` --host ${m.host.ip}`
        : ` --host ${m.host.name}`;
  return `mvnet port rm ${m.hostPort} ${m.guestIp} ${m.guestPort} --proto ${m.protocol}${host}`;
}

/**
 * Check `stale.mapping-no-tap` (warn, one per mapping whose guest address the kernel does not route
 * through one of our TAPs: connections to it time out or leave by another interface); ok
 * `stale.mappings` otherwise. A mapping made before its TAP is flagged too, until the TAP exists.
 */
export async function checkStaleMappings(ctx: DoctorContext): Promise<Finding[]> {
  if (!ctx.nft) return [];
  const mappings = await listMappings(ctx.nft, ctx.table);
  const { taps } = await listOurTaps(ctx);
  const out: Finding[] = [];
  for (const m of mappings) {
    if (await tapRoutingTo(ctx, taps, m.guestIp)) continue;
    out.push(
      finding(
        "stale.mapping-no-tap",
        "warn",
        `published ${m.protocol}/${m.hostPort} leads to ${m.guestIp}:${m.guestPort}, which no TAP of ours reaches`,
        {
          fix: `${portRmCommand(m)}  (or mvnet reconcile, for ports of recorded VMs)`,
          data: { mapping: m },
        },
      ),
    );
  }
  if (out.length === 0) {
    out.push(
      finding("stale.mappings", "ok", `${mappings.length} published port(s), each reaching a TAP of ours`, {
        data: { count: mappings.length },
      }),
    );
  }
  return out;
}
