/**
 * Check: route_localnet, which lets packets to or from 127.0.0.0/8 be routed on an interface
 * (Documentation/networking/ip-sysctl.rst). Set on `all` or `default` it exposes the host's
 * 127.0.0.1 services to every neighbour (CVE-2020-8558 class); we set it only on the TAPs of guests
 * with a mapping covering 127.0.0.1, as recorded by the hints of src/api/loopback.ts.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { coversLoopback } from "../firewall/mapping.js";
import { listMappings } from "../firewall/portmap.js";
import { addrList } from "../kernel/netlink/index.js";
import { ifaceSysctlPath, sysctlGet } from "../kernel/sysctl.js";
import { finding } from "./finding.js";
import { listOurTaps } from "./our-taps.js";
import { loopbackHintDir } from "./stale-loopback.js";
import type { DoctorContext, Finding } from "./types.js";

/**
 * Check `net.route_localnet` (warn when on for `all` or `default`) and `stale.route-localnet` (warn
 * for a TAP of ours that has it although no mapping covering 127.0.0.1 leads to its guest and no hint
 * names it, e.g. left by an older version or set by hand); ok otherwise.
 */
export async function checkRouteLocalnet(ctx: DoctorContext): Promise<Finding[]> {
  const out: Finding[] = [];
  for (const scope of ["all", "default"] as const) {
    const key = `net.ipv4.conf.${scope}.route_localnet`;
    if (sysctlGet(ifaceSysctlPath("ipv4", scope, "route_localnet")) === "1") {
      out.push(
        finding("net.route_localnet", "warn", `${key} is 1: 127.0.0.1 may be routed on every interface`, {
          detail:
            "Neighbours can reach services bound to 127.0.0.1 unless a firewall drops 127/8 arriving from outside (our table does while it exists). mvnet never needs it beyond single TAPs.",
          fix: `sysctl -w ${key}=0  (and remove it from /etc/sysctl.conf, /etc/sysctl.d)`,
          data: { key },
        }),
      );
    }
  }
  const { taps } = await listOurTaps(ctx);
  const hints = loopbackHintDir(ctx.stateDir);
  // HostNetwork sets it from its records, the seed API from hints: a current mapping covering
  // 127.0.0.1, or a hint, justifies it. Without nftables the mappings are unknown: not judged.
  const needed = ctx.nft
    ? new Set(
        (await listMappings(ctx.nft, ctx.table)).filter((m) => coversLoopback(m.host)).map((m) => m.guestIp),
      )
    : undefined;
  for (const tap of taps) {
    if (!needed) break;
    if (sysctlGet(ifaceSysctlPath("ipv4", tap.name, "route_localnet")) !== "1") continue;
    const peers = (await addrList(ctx.netlink, tap.index)).map((a) => a.address).filter((a) => a);
    if (peers.some((p) => needed.has(p) || existsSync(join(hints, p)))) continue;
    out.push(
      finding(
        "stale.route-localnet",
        "warn",
        `TAP ${tap.name} has route_localnet but no mapping of its guest needs it`,
        {
          fix: `sysctl -w net.ipv4.conf.${tap.name}.route_localnet=0`,
          data: { tap: tap.name, peers },
        },
      ),
    );
  }
  if (out.length === 0) {
    out.push(
      finding("net.route_localnet", "ok", "route_localnet is off except on TAPs whose guest needs it"),
    );
  }
  return out;
}
