/**
 * Check: route_localnet hints (src/api/loopback.ts) — a directory named after a guest address (one
 * empty file per mapping covering 127.0.0.1), telling TAP creation to set route_localnet on that guest's TAP. A hint whose guest no TAP of ours
 * reaches is stale, and dangerous: whichever TAP later routes that address gets route_localnet.
 */
import { readdirSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { coversLoopback } from "../firewall/mapping.js";
import { listMappings } from "../firewall/portmap.js";
import { netnsId } from "../store/bootstrap-state.js";
import { finding } from "./finding.js";
import { listOurTaps, tapRoutingTo } from "./our-taps.js";
import { portRmCommand } from "./stale-mappings.js";
import type { DoctorContext, Finding } from "./types.js";

/** Directory of the hints of this network namespace (the layout of src/api/loopback.ts). */
export function loopbackHintDir(stateDir: string): string {
  return join(stateDir, `localnet-${netnsId()}`);
}

/**
 * Check `stale.loopback-hint` (warn, one per hint whose guest address is not routed through a TAP of
 * ours; the fix removes the mappings that made it, which removes the hint, or else the hint); ok
 * `stale.loopback-hints` otherwise.
 */
export async function checkStaleLoopback(ctx: DoctorContext): Promise<Finding[]> {
  const dir = loopbackHintDir(ctx.stateDir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") names = [];
    else throw e;
  }
  const { taps } = await listOurTaps(ctx);
  const mappings = ctx.nft && names.length > 0 ? await listMappings(ctx.nft, ctx.table) : [];
  const out: Finding[] = [];
  for (const name of names.sort()) {
    const path = join(dir, name);
    if (isIP(name) === 4 && (await tapRoutingTo(ctx, taps, name))) continue;
    const left = mappings.filter((m) => m.guestIp === name && coversLoopback(m.host));
    out.push(
      finding(
        "stale.loopback-hint",
        "warn",
        `route_localnet hint for ${name}, which no TAP of ours reaches`,
        {
          detail:
            "A TAP made later for this address would get route_localnet (the host's 127.0.0.1 reachable through it).",
          // Removing the last mapping removes the hint too (api/loopback.ts releaseLoopback).
          fix: left.length > 0 ? left.map(portRmCommand).join("\n") : `rm -r ${path}`,
          data: { path, guestIp: name, mappings: left },
        },
      ),
    );
  }
  if (out.length === 0) {
    out.push(
      finding(
        "stale.loopback-hints",
        "ok",
        `${names.length} route_localnet hint(s), each for a guest behind a TAP of ours`,
        { data: { count: names.length, dir } },
      ),
    );
  }
  return out;
}
