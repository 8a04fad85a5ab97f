import type { Mapping } from "../api/portmap.js";
import type { TapInfo } from "../api/tap.js";
import { formatVms } from "./host-commands.js";
import type { Status } from "./status.js";

/** Renders rows as an aligned text table with a header. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** `tcp  *:8080  10.200.0.2:80` style rows. */
export function formatMappings(ms: Mapping[]): string {
  if (ms.length === 0) return "no published ports";
  const host = (m: Mapping) =>
    m.host.kind === "any" ? "*" : m.host.kind === "address" ? m.host.ip : `%${m.host.name}`;
  return table(
    ["PROTO", "HOST", "PORT", "GUEST"],
    ms.map((m) => [m.protocol, host(m), String(m.hostPort), `${m.guestIp}:${m.guestPort}`]),
  );
}

/** One row per TAP. */
export function formatTaps(taps: TapInfo[]): string {
  if (taps.length === 0) return "no TAPs";
  return table(
    ["NAME", "INDEX", "MAC", "MTU", "STATE"],
    taps.map((t) => [t.name, String(t.index), t.mac, String(t.mtu), t.up ? "up" : "down"]),
  );
}

/** The human form of `mvnet status`. */
export function formatStatus(s: Status): string {
  return [
    `bootstrap: ${s.bootstrapped ? `yes (subnet ${s.subnet})` : "no"}    ip_forward: ${s.ipForward ? "on" : "off"}`,
    "",
    formatTaps(s.taps),
    "",
    formatMappings(s.mappings),
    "",
    s.vms.length === 0 ? "no VMs attached" : formatVms(s.vms),
  ].join("\n");
}
