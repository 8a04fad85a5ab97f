/**
 * The kernel boot argument that configures a guest's network with the kernel's own parser
 * (`ip=`, CONFIG_IP_PNP; net/ipv4/ipconfig.c, Documentation/admin-guide/nfs/nfsroot.rst), as
 * Firecracker guests are usually configured: no DHCP, no agent, nothing in the guest image.
 */
import { ValidationError } from "../core/errors.js";
import {
  cidrContains,
  describe,
  intToIPv4,
  ipv4ToInt,
  prefixMask,
  validateIfName,
  validateIPv4,
} from "../core/validate.js";

/** What {@link guestBootArg} needs to know about one guest. */
export interface GuestAddressing {
  /** The guest's IPv4 address, e.g. `10.200.0.2`. */
  guestIp: string;
  /** The host side of the guest's TAP, which is the guest's gateway, e.g. `10.200.0.1`. */
  hostIp: string;
  /**
   * Prefix length of the guest subnet, 1–31 (e.g. 16 for `10.200.0.0/16`). The guest gets this whole
   * subnet on-link; other guests stay unreachable at layer 2 because each sits on its own TAP. 32 is
   * refused: the kernel reads a 255.255.255.255 netmask as "unset" and guesses a classful one.
   */
  prefix: number;
  /** Up to two DNS servers, written to the guest's /proc/net/pnp by the kernel. Default none. */
  dns?: string | readonly string[];
  /** The guest's interface name. Default `eth0` (the first virtio-net device). */
  ifname?: string;
  /**
   * The guest's hostname, letters, digits, `-` and `.`, at most 64. The kernel splits it at the first
   * `.` into nodename and NIS domainname (`ip_auto_config_setup()`). Default none (the kernel then uses
   * the guest address).
   */
  hostname?: string;
}

const HOSTNAME_RE = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/**
 * The dotted netmask of a prefix length, e.g. 16 → `255.255.0.0`.
 * @throws ValidationError (field `prefix`) unless `prefix` is an integer in 0–32.
 */
export function prefixToNetmask(prefix: number): string {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32) {
    throw new ValidationError("prefix", `${describe(prefix)} is not a prefix length in 0-32`);
  }
  return intToIPv4(prefixMask(prefix));
}

/**
 * Renders `ip=<guest>::<host>:<netmask>:<hostname>:<ifname>:off[:<dns0>[:<dns1>]]`, the static form of
 * the kernel's `ip=` argument (fields: client, server, gateway, netmask, hostname, device, autoconf,
 * dns0, dns1). With it the guest's kernel, before init runs, gives `ifname` the address
 * `guestIp/prefix`, brings it up, and adds `default via hostIp`.
 *
 * Why the netmask is the subnet's and never /32, though the host routes each guest as a /32 peer: the
 * kernel treats 255.255.255.255 (and 0.0.0.0) as "no netmask" and guesses a classful one
 * (`ic_defaults()`: "IP-Config: Guessing netmask 255.0.0.0" for 10.x), so the guest would believe all of
 * 10.0.0.0/8 is on its link. And the gateway must lie inside the netmask, or the kernel adds no
 * default route ("IP-Config: Gateway not on directly connected network", `ic_setup_routes()`).
 * @returns one kernel command-line word (no spaces), e.g. `ip=10.200.0.2::10.200.0.1:255.255.0.0::eth0:off`.
 * @throws ValidationError before rendering anything: a bad address, a prefix outside 1–31, a guest
 *   address equal to the host's or outside the host's subnet, a guest address that is the subnet's
 *   network or broadcast address (prefix ≤ 30), more than two DNS servers, a bad interface name or
 *   hostname.
 */
export function guestBootArg(guest: GuestAddressing): string {
  const guestIp = validateIPv4(guest.guestIp, "guestIp");
  const hostIp = validateIPv4(guest.hostIp, "hostIp");
  const { prefix } = guest;
  if (!Number.isInteger(prefix) || prefix < 1 || prefix > 31) {
    throw new ValidationError(
      "prefix",
      `${describe(prefix)} is not a prefix length in 1-31 (the kernel reads /32 and /0 as "unset" and guesses a classful netmask)`,
    );
  }
  if (guestIp === hostIp) throw new ValidationError("guestIp", "must differ from hostIp");
  const network = intToIPv4((ipv4ToInt(hostIp) & prefixMask(prefix)) >>> 0);
  if (!cidrContains({ address: hostIp, network, prefix }, guestIp)) {
    throw new ValidationError(
      "guestIp",
      `${guestIp} is outside ${network}/${prefix}, so the kernel would add no route to the gateway ${hostIp}`,
    );
  }
  if (prefix <= 30) {
    const host = (ipv4ToInt(guestIp) & ~prefixMask(prefix)) >>> 0;
    const all = ~prefixMask(prefix) >>> 0;
    if (host === 0 || host === all) {
      throw new ValidationError(
        "guestIp",
        `${guestIp} is the ${host === 0 ? "network" : "broadcast"} address of ${network}/${prefix}`,
      );
    }
  }
  const dnsList = guest.dns === undefined ? [] : typeof guest.dns === "string" ? [guest.dns] : [...guest.dns];
  if (dnsList.length > 2) {
    throw new ValidationError("dns", `the kernel takes at most 2 DNS servers, got ${dnsList.length}`);
  }
  const dns = dnsList.map((d, i) => validateIPv4(d, `dns[${i}]`));
  const ifname = validateIfName(guest.ifname ?? "eth0", "ifname");
  const hostname = guest.hostname ?? "";
  if (hostname !== "" && (hostname.length > 64 || !HOSTNAME_RE.test(hostname))) {
    throw new ValidationError(
      "hostname",
      `${JSON.stringify(hostname)} is not a hostname (letters, digits, "-" and ".", at most 64)`,
    );
  }
  const fields = [guestIp, "", hostIp, prefixToNetmask(prefix), hostname, ifname, "off", ...dns];
  return `ip=${fields.join(":")}`;
}
