/**
 * Neighbour (ARP) entries over rtnetlink; kernel side neigh_add() in net/core/neighbour.c.
 */
import { ValidationError } from "../../core/errors.js";
import { validateIfIndex } from "./args.js";
import { attrIPv4, attrMac, encodeBody, ndmsg } from "./codec.js";
import {
  AF_INET,
  NDA_DST,
  NDA_LLADDR,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  NUD_PERMANENT,
  NUD_REACHABLE,
  RTM_NEWNEIGH,
} from "./constants.js";
import type { NetlinkSocket, NlRequest } from "./socket.js";

/** A static IPv4 neighbour entry. */
export interface NeighSpec {
  /** ifindex the neighbour is reached through. */
  index: number;
  /** Its IPv4 address. */
  ip: string;
  /** Its MAC, `aa:bb:cc:dd:ee:ff` (unicast). */
  mac: string;
  /** NUD_PERMANENT (never expires, never re-resolved; the default) or, when false, NUD_REACHABLE. */
  permanent?: boolean;
}

/**
 * Adds or replaces an IPv4 neighbour entry (RTM_NEWNEIGH with NLM_F_CREATE|NLM_F_REPLACE, as
 * `ip neigh replace … nud permanent`), so the host need not ARP for the address.
 * @throws ValidationError for a bad index, address or MAC (nothing sent).
 * @throws KernelError (`RTM_NEWNEIGH`): ENODEV for an unknown index, EINVAL on a link without ARP.
 */
export async function neighAdd(nl: NetlinkSocket, spec: NeighSpec): Promise<void> {
  await nl.requestAll([neighAddRequest(spec)]);
}

/**
 * The request {@link neighAdd} sends, for {@link NetlinkSocket.requestAll}.
 * @throws ValidationError.
 */
export function neighAddRequest(spec: NeighSpec): NlRequest {
  if (typeof spec !== "object" || spec === null)
    throw new ValidationError("neighbour", "expected { index, ip, mac }");
  const index = validateIfIndex(spec.index);
  const state = spec.permanent === false ? NUD_REACHABLE : NUD_PERMANENT;
  const body = encodeBody(ndmsg({ family: AF_INET, index, state }), [
    attrIPv4(NDA_DST, spec.ip),
    attrMac(NDA_LLADDR, spec.mac),
  ]);
  return {
    type: RTM_NEWNEIGH,
    flags: NLM_F_CREATE | NLM_F_REPLACE,
    body,
    context: `neighAdd ${spec.ip} lladdr ${spec.mac} on ifindex ${index}`,
  };
}
