/**
 * The host reaching a published port through 127.0.0.1. A packet from 127.0.0.1, DNATed to a guest,
 * leaves through the guest's TAP; the kernel refuses to route a loopback source to a non-loopback
 * device unless that device has route_localnet (net/ipv4/route.c, __mkroute_output and
 * ip_route_input_slow). So route_localnet is set on exactly the TAPs whose guest has a mapping that
 * covers 127.0.0.1, and only while our table — whose raw-priority guard drops 127/8 arriving on any
 * interface but lo — exists; teardown clears it again (CVE-2020-8558 class).
 *
 * Which guests need it is recorded as empty files named after the guest address, one directory per
 * network namespace, so that a TAP made after the mapping (or re-made) gets it too, from any process,
 * without listing every mapping (O(1) instead of O(mappings)).
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KernelError } from "../core/errors.js";
import { linkGet, routeGet } from "../kernel/netlink/index.js";
import { ifaceSysctlPath, sysctlGet, sysctlSet } from "../kernel/sysctl.js";
import { netnsId } from "../store/bootstrap-state.js";
import type { Context } from "./context.js";
import { isOurTap, listTaps } from "./tap.js";

function dir(ctx: Context): string {
  return join(ctx.stateDir, `localnet-${netnsId()}`);
}

/** True when a mapping covering 127.0.0.1 was published to `guestIp`. */
export function hasLoopbackMapping(ctx: Context, guestIp: string): boolean {
  return existsSync(join(dir(ctx), guestIp));
}

/** Record directories known to exist, so that a mapping does not pay a mkdir each time. */
const madeDirs = new Set<string>();

function writeRecord(d: string, path: string): void {
  if (!madeDirs.has(d)) {
    mkdirSync(d, { recursive: true, mode: 0o755 });
    madeDirs.add(d);
  }
  try {
    writeFileSync(path, "");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    // Another process's teardown removed the directory since: make it again.
    mkdirSync(d, { recursive: true, mode: 0o755 });
    writeFileSync(path, "");
  }
}

/**
 * Records that `guestIp` has a mapping covering 127.0.0.1 and sets route_localnet on its TAP, when
 * the kernel routes the guest through one of ours (none yet: the TAP gets it when it is made).
 * When the record already exists the TAP has it already — set when the record was written, or when
 * the TAP was made afterwards (tap.ts) — so the route and link lookups are skipped: one `stat`.
 * @throws KernelError from the route lookup or the sysctl write (the new record is then removed).
 */
export async function allowLoopbackTo(ctx: Context, guestIp: string): Promise<void> {
  const d = dir(ctx);
  const record = join(d, guestIp);
  if (existsSync(record)) return;
  writeRecord(d, record);
  try {
    let oif: number | undefined;
    try {
      oif = (await routeGet(ctx.netlink, guestIp)).oif;
    } catch (e) {
      if (e instanceof KernelError) return; // no route to the guest yet
      throw e;
    }
    if (oif === undefined) return;
    const link = await linkGet(ctx.netlink, oif);
    if (link && isOurTap(link)) sysctlSet(ifaceSysctlPath("ipv4", link.name, "route_localnet"), "1");
  } catch (e) {
    rmSync(record, { force: true });
    throw e;
  }
}

/** Forgets every record and clears route_localnet on all our TAPs (teardown removes the guard). */
export async function clearLoopback(ctx: Context): Promise<void> {
  for (const tap of await listTaps({ netlink: ctx.netlink, group: ctx.group })) {
    const path = ifaceSysctlPath("ipv4", tap.name, "route_localnet");
    if (sysctlGet(path) !== "0") sysctlSet(path, "0");
  }
  rmSync(dir(ctx), { recursive: true, force: true });
  madeDirs.delete(dir(ctx));
}
