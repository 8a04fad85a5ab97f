/**
 * IPv4 route reading over rtnetlink: table dumps and FIB lookups (`ip route get`). The kernel side
 * is inet_dump_fib() / inet_rtm_getroute() in net/ipv4/fib_frontend.c and net/ipv4/route.c.
 * Multipath routes (RTA_MULTIPATH) are listed without their next hops; IPv6 is not handled.
 */
import { constants as osConstants } from "node:os";
import { KernelError } from "../../core/errors.js";
import { validateIPv4 } from "../../core/validate.js";
import { validateU32 } from "./args.js";
import {
  attrIPv4,
  attrU32,
  decodeAttrs,
  decodeRtmsg,
  encodeBody,
  type NlMsg,
  readIPv4,
  readU32,
  rtmsg,
} from "./codec.js";
import {
  AF_INET,
  ROUTE_PROTOCOLS,
  ROUTE_SCOPES,
  ROUTE_TYPES,
  RT_TABLE_MAIN,
  RT_TABLE_UNSPEC,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  RTMSG_LEN,
} from "./constants.js";
import type { NetlinkSocket } from "./socket.js";

const { ENOENT } = osConstants.errno;

/** An IPv4 route as the kernel reports it (RTM_NEWROUTE). */
export interface Route {
  /** Destination network; `0.0.0.0` (with prefix 0) for the default route. */
  dst: string;
  /** Destination prefix length. */
  prefix: number;
  /** Next hop (RTA_GATEWAY), absent for on-link routes. */
  gateway?: string;
  /** Outgoing ifindex (RTA_OIF). */
  oif?: number;
  /** Preferred source address (RTA_PREFSRC). */
  prefsrc?: string;
  /** Metric (RTA_PRIORITY); absent means 0. */
  metric?: number;
  /** Routing table id (RTA_TABLE; 254 = main, 255 = local). */
  table: number;
  /** Who installed it, as `ip` prints it: `kernel`, `boot`, `static`, `dhcp`, … or the number. */
  protocol: string;
  /** `global`, `link`, `host`, … or the number. */
  scope: string;
  /** `unicast`, `local`, `broadcast`, `blackhole`, `unreachable`, … */
  type: string;
}

/** Result of a FIB lookup ({@link routeGet}). */
export interface RouteLookup {
  /** Outgoing ifindex (1 = `lo` for local destinations). */
  oif: number;
  /** Source address the kernel would use. */
  prefsrc?: string;
  /** Next hop, when the destination is not on-link. */
  gateway?: string;
  /** Route type: `unicast`, `local`, `broadcast`, … */
  type: string;
  /** Table the matching route came from. */
  table: number;
}

const nameOr = (names: Record<number, string> | string[], v: number): string =>
  (names as Record<number, string>)[v] ?? String(v);

/**
 * Decodes one RTM_NEWROUTE message of family AF_INET.
 * @throws MvnetError (`ERR_NETLINK_DECODE`) on malformed bytes.
 */
export function parseRoute(m: NlMsg): Route {
  const h = decodeRtmsg(m.payload);
  const a = decodeAttrs(m.payload, RTMSG_LEN);
  const dst = a.get(RTA_DST);
  const table = a.get(RTA_TABLE);
  const r: Route = {
    dst: dst ? readIPv4(dst) : "0.0.0.0",
    prefix: h.dstLen,
    table: table ? readU32(table) : h.table,
    protocol: nameOr(ROUTE_PROTOCOLS, h.protocol),
    scope: nameOr(ROUTE_SCOPES, h.scope),
    type: nameOr(ROUTE_TYPES, h.type),
  };
  const gw = a.get(RTA_GATEWAY);
  if (gw) r.gateway = readIPv4(gw);
  const oif = a.get(RTA_OIF);
  if (oif) r.oif = readU32(oif);
  const src = a.get(RTA_PREFSRC);
  if (src) r.prefsrc = readIPv4(src);
  const prio = a.get(RTA_PRIORITY);
  if (prio) r.metric = readU32(prio);
  return r;
}

/**
 * The IPv4 routes of one table (an RTM_GETROUTE dump filtered by RTA_TABLE, which the kernel
 * honours under strict checking; cloned/cached routes are not listed).
 * @param opts.table table id; default 254 (main); 0 lists every table.
 * @returns the routes in kernel order; `[]` when the table does not exist (the kernel's ENOENT
 *   "ipv4: FIB table does not exist").
 * @throws ValidationError for a bad table id; KernelError (`RTM_GETROUTE`).
 */
export async function routeList(nl: NetlinkSocket, opts: { table?: number } = {}): Promise<Route[]> {
  const table = validateU32(opts.table ?? RT_TABLE_MAIN, "table");
  const attrs = table === RT_TABLE_UNSPEC ? [] : [attrU32(RTA_TABLE, table)];
  let msgs: NlMsg[];
  try {
    msgs = await nl.dump(RTM_GETROUTE, encodeBody(rtmsg({ family: AF_INET }), attrs), {
      context: `routeList(table ${table})`,
    });
  } catch (err) {
    if (table !== RT_TABLE_UNSPEC && err instanceof KernelError && err.errno === ENOENT) return [];
    throw err;
  }
  return msgs
    .filter((m) => m.type === RTM_NEWROUTE)
    .map(parseRoute)
    .filter((r) => table === RT_TABLE_UNSPEC || r.table === table);
}

/**
 * The IPv4 default route of the main table (`0.0.0.0/0`, type unicast); with several, the one of
 * lowest metric, which is the one the kernel uses.
 * @returns undefined when there is none.
 * @throws KernelError (`RTM_GETROUTE`).
 */
export async function defaultRoute(nl: NetlinkSocket): Promise<Route | undefined> {
  const defaults = (await routeList(nl)).filter((r) => r.prefix === 0 && r.type === "unicast");
  defaults.sort((x, y) => (x.metric ?? 0) - (y.metric ?? 0));
  return defaults[0];
}

/**
 * Asks the kernel which way it would send a packet to `dst` (RTM_GETROUTE for one address, like
 * `ip route get`).
 * @throws ValidationError for a malformed address.
 * @throws KernelError (`RTM_GETROUTE`): ENETUNREACH when no route matches, EINVAL/EACCES for
 *   blackhole/prohibit routes.
 */
export async function routeGet(nl: NetlinkSocket, dst: string): Promise<RouteLookup> {
  const ip = validateIPv4(dst, "dst");
  const body = encodeBody(rtmsg({ family: AF_INET, dstLen: 32 }), [attrIPv4(RTA_DST, ip)]);
  const msgs = await nl.request(RTM_GETROUTE, 0, body, { context: `routeGet(${ip})` });
  const m = msgs.find((x) => x.type === RTM_NEWROUTE);
  if (!m) throw new KernelError("RTM_GETROUTE", ENOENT, `routeGet(${ip}): the kernel sent no route`);
  const r = parseRoute(m);
  const out: RouteLookup = { oif: r.oif ?? 0, type: r.type, table: r.table };
  if (r.prefsrc !== undefined) out.prefsrc = r.prefsrc;
  if (r.gateway !== undefined) out.gateway = r.gateway;
  return out;
}
