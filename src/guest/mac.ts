/**
 * The MAC address a guest's NIC gets, derived from its IPv4 address.
 */
import { validateIPv4 } from "../core/validate.js";

/**
 * The guest's MAC: `06:00:` followed by the four bytes of its IPv4 address in hex, e.g.
 * `10.200.0.2` → `06:00:0a:c8:00:02` (the convention of Firecracker's network-setup guide).
 *
 * The first octet 0x06 has the locally-administered bit (0x02) set and the multicast bit (0x01)
 * clear (IEEE 802 / RFC 7042 §2.1), so the address is unicast and can never collide with a vendor's
 * burnt-in address. The mapping is injective, so distinct guest addresses always get distinct MACs, and
 * stable: the same address gives the same MAC in every process, with no state to keep.
 * @param guestIp the guest's IPv4 address, dotted quad.
 * @returns lower-case, colon-separated, 17 characters.
 * @throws ValidationError (field `guestIp`, code `ERR_INVALID_ADDRESS`) for anything else.
 */
export function guestMac(guestIp: string): string {
  const ip = validateIPv4(guestIp, "guestIp");
  const bytes = ip.split(".").map((b) => Number(b).toString(16).padStart(2, "0"));
  return ["06", "00", ...bytes].join(":");
}
