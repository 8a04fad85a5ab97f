/**
 * Publishing a host port into a guest: one element in one of our nftables maps (DNAT), so adding a
 * mapping costs the same at 10 000 mappings as at none.
 */
import ipaddr from "ipaddr.js";
import { KernelError } from "../core/errors.js";
import { validateIfName, validateIPv4, validatePort, validateProtocol } from "../core/validate.js";
import { addMapping, type HostMatch, listMappings, type Mapping, removeMapping } from "../firewall/index.js";
import { linkGet, routeGet } from "../kernel/netlink/index.js";
import { ifaceSysctlPath, sysctlSet } from "../kernel/sysctl.js";
import { type Context, context, type NetworkOptions } from "./context.js";
import { isOurTap } from "./tap.js";

export type { HostMatch, Mapping } from "../firewall/index.js";

/**
 * Reads the seed's `hostInterface` argument: `""` or `"0.0.0.0"` = every local address; an IPv4
 * address = only packets to that address; otherwise an interface name = packets arriving on that
 * interface and addressed to the host.
 * @throws ValidationError when it is none of these.
 */
export function parseHostInterface(hostInterface: string): HostMatch {
  if (hostInterface === "" || hostInterface === "0.0.0.0") return { kind: "any" };
  if (ipaddr.IPv4.isValidFourPartDecimal(hostInterface)) {
    return { kind: "address", ip: validateIPv4(hostInterface, "hostInterface") };
  }
  return { kind: "interface", name: validateIfName(hostInterface, "hostInterface") };
}

function toMapping(
  hostInterface: string,
  hostPort: number,
  guestIp: string,
  guestPort: number,
  protocol: string,
): Mapping {
  return {
    protocol: validateProtocol(protocol),
    host: parseHostInterface(hostInterface),
    hostPort: validatePort(hostPort, "hostPort"),
    guestIp: validateIPv4(guestIp, "guestIp"),
    guestPort: validatePort(guestPort, "guestPort"),
  };
}

/** True when the host itself reaches this mapping through 127.0.0.1. */
function coversLoopback(host: HostMatch): boolean {
  return host.kind === "any" || (host.kind === "address" && host.ip.startsWith("127."));
}

/**
 * A packet from 127.0.0.1, DNATed to a guest, leaves through the guest's TAP; the kernel refuses to
 * route a loopback source to a non-loopback device unless that device has route_localnet
 * (net/ipv4/route.c, __mkroute_output / ip_route_input_slow). So it is set on that TAP only, and only
 * when it is one of ours; the loopback guard in our table keeps 127/8 from arriving from outside.
 */
async function allowLoopbackTo(ctx: Context, guestIp: string): Promise<void> {
  let oif: number | undefined;
  try {
    oif = (await routeGet(ctx.netlink, guestIp)).oif;
  } catch (e) {
    if (e instanceof KernelError) return; // no route to the guest yet: nothing to enable
    throw e;
  }
  if (oif === undefined) return;
  const link = await linkGet(ctx.netlink, oif);
  if (link && isOurTap(link)) sysctlSet(ifaceSysctlPath("ipv4", link.name, "route_localnet"), "1");
}

/**
 * Publishes `hostPort` (on `hostInterface`, see {@link parseHostInterface}) to `guestIp:guestPort`
 * for `protocol` ("tcp" or "udp"). Works with or without a prior bootstrap. Adding the same mapping
 * twice is a no-op. The host reaches the port through its own addresses, and through 127.0.0.1 when
 * the mapping covers all addresses or 127.0.0.1.
 * @throws ValidationError (nothing touched); ConflictError when the same (protocol, host address or
 *   interface, host port) already leads to another guest — the message names it; FirewallError.
 */
export async function addPortMapping(
  hostInterface: string,
  hostPort: number,
  guestIp: string,
  guestPort: number,
  protocol: string,
  options: NetworkOptions = {},
): Promise<void> {
  const m = toMapping(hostInterface, hostPort, guestIp, guestPort, protocol);
  const ctx = context(options);
  const nft = await ctx.nft();
  const added = await addMapping(nft, ctx.table, m);
  if (!coversLoopback(m.host)) return;
  try {
    await allowLoopbackTo(ctx, m.guestIp);
  } catch (e) {
    if (added) await removeMapping(nft, ctx.table, m);
    throw e;
  }
}

/**
 * Removes exactly that mapping (same host side, same guest). Removing an absent one is a no-op, and
 * a mapping of the same host port to another guest is left alone.
 * @throws ValidationError (nothing touched); FirewallError.
 */
export async function removePortMapping(
  hostInterface: string,
  hostPort: number,
  guestIp: string,
  guestPort: number,
  protocol: string,
  options: NetworkOptions = {},
): Promise<void> {
  const m = toMapping(hostInterface, hostPort, guestIp, guestPort, protocol);
  const ctx = context(options);
  await removeMapping(await ctx.nft(), ctx.table, m);
}

/** Lists the published ports in our table (empty when the table does not exist). */
export async function listPortMappings(options: NetworkOptions = {}): Promise<Mapping[]> {
  const ctx = context(options);
  return listMappings(await ctx.nft(), ctx.table);
}
