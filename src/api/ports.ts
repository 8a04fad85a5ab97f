/**
 * The seed's PortManager with the host probes wired in: ports bound by other processes are refused,
 * and interface names resolve to the interface's addresses (read through rtnetlink).
 */
import { type HostProbe, PortManager as PurePortManager } from "../alloc/index.js";
import { validateIfName } from "../core/validate.js";
import { addrList, linkGet } from "../kernel/netlink/index.js";
import { isPortFree } from "../kernel/probe.js";
import { context, type NetworkOptions } from "./context.js";

/**
 * The host as the PortManager sees it: a bind check (kernel/probe.ts) and an interface's IPv4
 * addresses (RTM_GETADDR). An interface that does not exist has no addresses.
 */
export function hostProbe(options: NetworkOptions = {}): HostProbe {
  return {
    isPortFree,
    async interfaceAddresses(name: string): Promise<string[]> {
      const ctx = context(options);
      const link = await linkGet(ctx.netlink, validateIfName(name, "hostInterface"));
      if (!link) return [];
      return (await addrList(ctx.netlink, link.index)).map((a) => a.local);
    },
  };
}

/**
 * Host ports for published mappings, per VM — {@link PurePortManager} with {@link hostProbe} as the
 * default probe. `new PortManager()` hands out ephemeral ports from 30000–32767.
 * @throws ValidationError for a bad range.
 */
export class PortManager extends PurePortManager {
  constructor(start?: number, end?: number, probe: HostProbe = hostProbe()) {
    super(start, end, probe);
  }
}
