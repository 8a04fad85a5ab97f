/**
 * Checks of what HostNetwork is asked, before anything is touched: an attach request in canonical
 * form (normalizeAttach) and the subnet facts of a CIDR (subnetInfo).
 */
import { ValidationError } from "../core/errors.js";
import {
  describe as describeValue,
  intToIPv4,
  ipv4ToInt,
  type Protocol,
  parseCidr,
  validateIPv4,
  validateTapMtu,
} from "../core/validate.js";
import { buildPolicy, elementToEntry } from "../firewall/guest-policy.js";
import type { SubnetInfo, VmRequest } from "./allocate.js";
import { type AttachOptions, DEFAULT_MTU } from "./options.js";
import { expandPublish } from "./publish.js";

function validateOwnerId(v: unknown, field: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xfffffffe) {
    throw new ValidationError(
      field,
      `${describeValue(v)} is not a uid/gid in 0-4294967294`,
      "ERR_INVALID_ID",
    );
  }
  return v;
}

/**
 * Validates an attach request and puts it in a canonical form (its JSON identifies a retry).
 * @throws ValidationError naming the bad field.
 */
export function normalizeAttach(vmId: string, o: AttachOptions = {}): VmRequest {
  if (typeof o !== "object" || o === null) throw new ValidationError("options", "must be an object");
  const mtu = o.mtu === undefined ? DEFAULT_MTU : validateTapMtu(o.mtu, "mtu");
  const uid = o.uid === undefined ? 0 : validateOwnerId(o.uid, "uid");
  const gid = o.gid === undefined ? 0 : validateOwnerId(o.gid, "gid");
  const guestIp = o.guestIp === undefined ? undefined : validateIPv4(o.guestIp, "guestIp");
  const dnsIn = o.dns ?? [];
  if (!Array.isArray(dnsIn) || dnsIn.length > 2) {
    throw new ValidationError(
      "dns",
      "must be an array of at most 2 IPv4 addresses (the kernel's ip= takes two)",
    );
  }
  const dns = dnsIn.map((d, i) => validateIPv4(d, `dns[${i}]`));
  const wants = expandPublish(o.publish ?? []);
  // Validated against a stand-in address (the real one is allocated later); entries in text form.
  const policy = buildPolicy("192.0.2.1", { allow: o.allow, hostPorts: o.hostPorts });
  const allow = policy.allow.map(elementToEntry);
  const hostPorts = policy.host.map((e) => ({ protocol: e.protocol as Protocol, port: e.ports.start }));
  const req: VmRequest = { vmId, mtu, uid, gid, dns, wants, allow, hostPorts, json: "" };
  if (guestIp !== undefined) req.guestIp = guestIp;
  // Policy fields only when given, so the request of a VM attached before they existed still matches.
  req.json = JSON.stringify({
    guestIp: guestIp ?? null,
    mtu,
    uid,
    gid,
    dns,
    wants,
    ...(allow.length > 0 ? { allow } : {}),
    ...(hostPorts.length > 0 ? { hostPorts } : {}),
  });
  return req;
}

/** Subnet facts from a CIDR. @throws ValidationError for a bad CIDR or a prefix outside 8–30. */
export function subnetInfo(cidr: string): SubnetInfo {
  const c = parseCidr(cidr, "subnet");
  if (c.prefix < 8 || c.prefix > 30) {
    throw new ValidationError("subnet", `/${c.prefix} is outside /8-/30`, "ERR_INVALID_CIDR");
  }
  const network = ipv4ToInt(c.network);
  const size = 2 ** (32 - c.prefix);
  return { cidr: c, network, first: network + 2, last: network + size - 2, gateway: intToIPv4(network + 1) };
}
