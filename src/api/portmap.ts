/**
 * Publishing a host port into a guest: one element in one of our nftables maps (DNAT), so adding a
 * mapping costs the same at 10 000 mappings as at none.
 */
import { ValidationError } from "../core/errors.js";
import { describe, validateIfName, validateIPv4, validatePort, validateProtocol } from "../core/validate.js";
import { addMapping, type HostMatch, listMappings, type Mapping, removeMapping } from "../firewall/index.js";
import { coversLoopback } from "../firewall/mapping.js";
import { context, type NetworkOptions, optionsOf } from "./context.js";
import { allowLoopbackTo, releaseLoopback } from "./loopback.js";

export type { HostMatch, Mapping } from "../firewall/index.js";

/**
 * Reads the seed's `hostInterface` argument: `""` or `"0.0.0.0"` = every local address; an IPv4
 * address = only packets to that address; otherwise an interface name = packets arriving on that
 * interface and addressed to the host.
 * @throws ValidationError when it is none of these.
 */
export function parseHostInterface(hostInterface: string): HostMatch {
  // Checked first: the RegExp below would convert its argument and throw TypeError for a Symbol.
  if (typeof hostInterface !== "string") {
    throw new ValidationError(
      "hostInterface",
      `${describe(hostInterface)} is not "", an IPv4 address or an interface name`,
      "ERR_INVALID_NAME",
    );
  }
  if (hostInterface === "" || hostInterface === "0.0.0.0") return { kind: "any" };
  // Anything made of digits and dots is meant as an address: a typo such as 192.168.1.300 is an
  // error, never silently taken for an interface name.
  if (/^[\d.]+$/.test(hostInterface))
    return { kind: "address", ip: validateIPv4(hostInterface, "hostInterface") };
  const name = validateIfName(hostInterface, "hostInterface");
  if (name === "lo") {
    throw new ValidationError("hostInterface", 'packets never arrive on "lo" from outside; use "127.0.0.1"');
  }
  return { kind: "interface", name };
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
  options: NetworkOptions | null = {},
): Promise<void> {
  const m = toMapping(hostInterface, hostPort, guestIp, guestPort, protocol);
  const ctx = context(optionsOf(options));
  const nft = await ctx.nft();
  const added = await addMapping(nft, ctx.table, m);
  if (!coversLoopback(m.host)) return;
  try {
    await allowLoopbackTo(ctx, m);
  } catch (e) {
    if (added) await removeMapping(nft, ctx.table, m);
    throw e;
  }
}

/**
 * Removes exactly that mapping (same host side, same guest). Removing an absent one is a no-op, and
 * a mapping of the same host port to another guest is left alone. When it was the guest's last
 * mapping the host reached through 127.0.0.1, route_localnet goes off its TAP again.
 * @returns true when the mapping was there and is now gone, false when there was nothing to remove.
 * @throws ValidationError (nothing touched); FirewallError.
 */
export async function removePortMapping(
  hostInterface: string,
  hostPort: number,
  guestIp: string,
  guestPort: number,
  protocol: string,
  options: NetworkOptions | null = {},
): Promise<boolean> {
  const m = toMapping(hostInterface, hostPort, guestIp, guestPort, protocol);
  const ctx = context(optionsOf(options));
  const removed = (await removeMapping(await ctx.nft(), ctx.table, m)) === "removed";
  if (removed && coversLoopback(m.host)) await releaseLoopback(ctx, m);
  return removed;
}

/** Lists the published ports in our table (empty when the table does not exist). */
export async function listPortMappings(options: NetworkOptions | null = {}): Promise<Mapping[]> {
  const ctx = context(options);
  return listMappings(await ctx.nft(), ctx.table);
}
