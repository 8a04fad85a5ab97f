/**
 * Our own rtnetlink client: a non-blocking socket (socket.ts), a pure codec (codec.ts) and one
 * function per kernel operation (link, addr, route, neigh). IPv4 only.
 */
export { type Addr, type AddrSpec, addrAdd, addrAddRequest, addrDel, addrList } from "./addr.js";
export type { NlError, NlMsg } from "./codec.js";
export {
  type Link,
  type LinkChanges,
  linkDel,
  linkDelGroup,
  linkGet,
  linkList,
  linkSet,
  linkSetAlias,
  linkSetDown,
  linkSetGroup,
  linkSetMac,
  linkSetMtu,
  linkSetRequest,
  linkSetUp,
} from "./link.js";
export { type NeighSpec, neighAdd, neighAddRequest } from "./neigh.js";
export { defaultRoute, type Route, type RouteLookup, routeGet, routeList } from "./route.js";
export { defaultSocket, NetlinkSocket, type NlRequest, type RequestOptions } from "./socket.js";
