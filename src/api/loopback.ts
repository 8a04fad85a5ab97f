/**
 * The host reaching a published port through 127.0.0.1. A packet from 127.0.0.1, DNATed to a guest,
 * leaves through the guest's TAP; the kernel refuses to route a loopback source to a non-loopback
 * device unless that device has route_localnet (net/ipv4/route.c, __mkroute_output and
 * ip_route_input_slow). So route_localnet is set on exactly the TAPs whose guest has a mapping that
 * covers 127.0.0.1, and only while our table — whose raw-priority guard drops 127/8 arriving on any
 * interface but lo — exists; teardown clears it again (CVE-2020-8558 class).
 *
 * Which guests need it is recorded in the state directory, one directory per network namespace, holding
 * one directory per guest address with one empty file per mapping that covers 127.0.0.1: a TAP made
 * after the mapping (or re-made) gets route_localnet too, from any process, without listing every
 * mapping (O(1) instead of O(mappings)); and removing a guest's last such mapping — its directory then
 * empty, so `rmdir` succeeds — takes route_localnet off its TAP again.
 */
import { existsSync, lstatSync, mkdirSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KernelError } from "../core/errors.js";
import type { Mapping } from "../firewall/index.js";
import { linkGet, routeGet } from "../kernel/netlink/index.js";
import { ifaceSysctlPath, sysctlGet, sysctlSet } from "../kernel/sysctl.js";
import { netnsId } from "../store/bootstrap-state.js";
import type { Context } from "./context.js";
import { isOurTap, listTaps } from "./tap.js";

function dir(ctx: Context): string {
  return join(ctx.stateDir, `localnet-${netnsId()}`);
}

/** The record of one mapping: `<proto>-<host address or "any">-<host port>` in the guest's directory. */
function recordName(m: Mapping): string {
  const host = m.host.kind === "address" ? m.host.ip : m.host.kind === "interface" ? m.host.name : "any";
  return `${m.protocol}-${host}-${m.hostPort}`;
}

/** True when a mapping covering 127.0.0.1 was published to `guestIp`. */
export function hasLoopbackMapping(ctx: Context, guestIp: string): boolean {
  return existsSync(join(dir(ctx), guestIp));
}

/** Makes the guest's record directory (and the namespace's); a file there from an older layout goes. */
function makeGuestDir(guestDir: string): void {
  try {
    if (!lstatSync(guestDir).isDirectory()) rmSync(guestDir, { force: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  mkdirSync(guestDir, { recursive: true, mode: 0o755 });
}

function writeRecord(guestDir: string, path: string): void {
  try {
    writeFileSync(path, "");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    // Another process removed the directory since (teardown, or its last mapping went): make it again.
    makeGuestDir(guestDir);
    writeFileSync(path, "");
  }
}

/**
 * Removes the guest's directory if it is empty; true when it was (then no mapping needs loopback).
 * Exported for the benchmark's per-step timing (bench/suites/breakdown.ts).
 * @throws the fs error for anything but ENOTEMPTY / EEXIST (not empty) and ENOENT (already gone).
 */
export function removeIfEmpty(guestDir: string): boolean {
  try {
    rmdirSync(guestDir);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOTEMPTY" || code === "EEXIST") return false;
    if (code === "ENOENT") return true;
    throw e;
  }
}

/** The TAP of ours the kernel routes `guestIp` through, if any. */
async function tapOf(ctx: Context, guestIp: string): Promise<string | undefined> {
  let oif: number | undefined;
  try {
    oif = (await routeGet(ctx.netlink, guestIp)).oif;
  } catch (e) {
    if (e instanceof KernelError) return undefined; // no route to the guest
    throw e;
  }
  if (oif === undefined) return undefined;
  const link = await linkGet(ctx.netlink, oif);
  return link && isOurTap(link) ? link.name : undefined;
}

/**
 * Records that mapping `m` (one covering 127.0.0.1) leads to its guest and sets route_localnet on the
 * guest's TAP, when the kernel routes the guest through one of ours (none yet: the TAP gets it when it
 * is made). When the guest already had such a mapping its TAP has it already — set then, or when the
 * TAP was made afterwards (tap.ts) — so the route and link lookups are skipped.
 * @throws KernelError from the route lookup or the sysctl write (the new record is then removed).
 */
export async function allowLoopbackTo(ctx: Context, m: Mapping): Promise<void> {
  const guestDir = join(dir(ctx), m.guestIp);
  const record = join(guestDir, recordName(m));
  if (existsSync(guestDir) && lstatSync(guestDir).isDirectory()) {
    writeRecord(guestDir, record);
    return;
  }
  makeGuestDir(guestDir);
  writeRecord(guestDir, record);
  try {
    const tap = await tapOf(ctx, m.guestIp);
    if (tap) sysctlSet(ifaceSysctlPath("ipv4", tap, "route_localnet"), "1");
  } catch (e) {
    rmSync(record, { force: true });
    removeIfEmpty(guestDir);
    throw e;
  }
}

/**
 * Undoes {@link allowLoopbackTo} for mapping `m`: forgets its record, and when it was the guest's
 * last mapping covering 127.0.0.1, clears route_localnet on the guest's TAP. A mapping added for the
 * same guest by another process meanwhile puts it back (its directory exists again).
 * @throws KernelError from the route lookup or the sysctl write.
 */
export async function releaseLoopback(ctx: Context, m: Mapping): Promise<void> {
  const guestDir = join(dir(ctx), m.guestIp);
  rmSync(join(guestDir, recordName(m)), { force: true });
  if (!removeIfEmpty(guestDir)) return;
  removeIfEmpty(dir(ctx)); // the namespace's directory too, when this was its last guest
  const tap = await tapOf(ctx, m.guestIp);
  if (!tap) return;
  const path = ifaceSysctlPath("ipv4", tap, "route_localnet");
  if (sysctlGet(path) !== "0") sysctlSet(path, "0");
  if (existsSync(guestDir)) sysctlSet(path, "1");
}

/** Forgets every record and clears route_localnet on all our TAPs (teardown removes the guard). */
export async function clearLoopback(ctx: Context): Promise<void> {
  for (const tap of await listTaps({ netlink: ctx.netlink, group: ctx.group })) {
    const path = ifaceSysctlPath("ipv4", tap.name, "route_localnet");
    if (sysctlGet(path) !== "0") sysctlSet(path, "0");
  }
  rmSync(dir(ctx), { recursive: true, force: true });
}
