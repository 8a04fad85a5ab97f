/**
 * Check: IPv4 forwarding. Guests reach anything beyond the host only when the kernel forwards
 * (Documentation/networking/ip-sysctl.rst, ip_forward); bootstrap turns it on and records it.
 */
import { sysctlGet } from "../kernel/sysctl.js";
import { readBootstrapState } from "../store/bootstrap-state.js";
import { finding } from "./finding.js";
import type { DoctorContext, Finding } from "./types.js";

/**
 * Check `net.ip_forward`: ok when on; fail when off on a bootstrapped host (someone turned it off
 * after bootstrap); info when off and not bootstrapped (bootstrap will turn it on).
 */
export async function checkForwarding(ctx: DoctorContext): Promise<Finding[]> {
  const value = sysctlGet("net/ipv4/ip_forward");
  let bootstrapped: boolean;
  try {
    bootstrapped = readBootstrapState(ctx.stateDir) !== undefined;
  } catch {
    bootstrapped = true; // a corrupt record still says bootstrap ran; the bootstrap check reports it
  }
  const data = { "net.ipv4.ip_forward": value, bootstrapped };
  if (value === "1") return [finding("net.ip_forward", "ok", "IPv4 forwarding is on", { data })];
  if (bootstrapped) {
    return [
      finding("net.ip_forward", "fail", "IPv4 forwarding is off although this host is bootstrapped", {
        detail:
          "Guests have no egress and published ports are not forwarded. Something turned net.ipv4.ip_forward off after bootstrap (a network manager, a sysctl.d file, another tool).",
        fix: "mvnet bootstrap  (and find what turned it off, e.g. grep -r ip_forward /etc/sysctl.conf /etc/sysctl.d)",
        data,
      }),
    ];
  }
  return [
    finding("net.ip_forward", "info", "IPv4 forwarding is off (not bootstrapped yet)", {
      fix: "mvnet bootstrap",
      data,
    }),
  ];
}
