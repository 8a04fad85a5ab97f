/**
 * Read-only helpers over our TAPs: which links are ours, and which of them the kernel routes a
 * guest address through.
 */
import { isOurTap } from "../api/tap.js";
import { KernelError } from "../core/errors.js";
import { type Link, linkList, routeGet } from "../kernel/netlink/index.js";
import type { DoctorContext } from "./types.js";

/** The links of this namespace, and those of them that are our TAPs (alias or group). */
export async function listOurTaps(ctx: DoctorContext): Promise<{ links: Link[]; taps: Link[] }> {
  const links = await linkList(ctx.netlink);
  const taps = links.filter((l) => isOurTap(l) || (l.kind === "tun" && l.group === ctx.tapGroup));
  return { links, taps };
}

/**
 * The TAP of ours the kernel would send a packet for `ip` through (RTM_GETROUTE), or undefined when
 * it routes `ip` elsewhere or not at all.
 * @throws KernelError for anything but "no route" (ENETUNREACH, EHOSTUNREACH).
 */
export async function tapRoutingTo(
  ctx: DoctorContext,
  taps: readonly Link[],
  ip: string,
): Promise<Link | undefined> {
  let oif: number;
  try {
    oif = (await routeGet(ctx.netlink, ip)).oif;
  } catch (e) {
    if (e instanceof KernelError && (e.errno === 101 || e.errno === 113)) return undefined;
    throw e;
  }
  return taps.find((t) => t.index === oif);
}
