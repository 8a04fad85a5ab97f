/**
 * A picture of everything in a network namespace that microvm-net could leave behind: links, addresses,
 * routes, policy rules, the whole nftables ruleset, every sysctl under net/ipv4 and net/ipv6, and our
 * state files. Read with independent tools (`ip -j`, `nft -j`, /proc), not with our own code.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_STATE_DIR } from "../../../src/store/bootstrap-state.js";
import { ipJson, nftJson } from "../../helpers/kernel.js";

/** See the module comment. Compare two with `toEqual`. */
export interface Snapshot {
  links: unknown[];
  addresses: unknown[];
  routes: unknown[];
  rules: unknown[];
  nftables: unknown[];
  sysctls: Record<string, string>;
  stateFiles: string[];
}

type Json = Record<string, unknown>;

function readTree(dir: string, out: Record<string, string>): void {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch {
      continue;
    }
    if (st.isDirectory()) readTree(path, out);
    else if (st.mode & 0o444) {
      try {
        out[path.slice("/proc/sys/".length)] = readFileSync(path, "utf8").trim();
      } catch {
        // write-only or refusing reads (e.g. ipv6 stable_secret when unset): nothing to compare
      }
    }
  }
}

/**
 * Waits until no address of the namespace is still tentative (IPv6 duplicate address detection runs
 * for about a second after a link comes up, and adds the link-local address and its route only then),
 * so that a snapshot taken next does not race the kernel's own autoconfiguration.
 * @throws after `timeoutMs`.
 */
export async function settle(timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const addrs = ipJson<Json[]>("-6", "addr", "show").flatMap((l) => l.addr_info as Json[]);
    const up = ipJson<Json[]>("link", "show").filter(
      (l) => l.ifname !== "lo" && (l.flags as string[]).includes("LOWER_UP"),
    );
    const linkLocal = (name: unknown) =>
      ipJson<Json[]>("-6", "addr", "show", "dev", String(name), "scope", "link").some(
        (l) => (l.addr_info as Json[]).length > 0,
      );
    if (!addrs.some((a) => a.tentative) && up.every((l) => linkLocal(l.ifname))) return;
    if (Date.now() > end) throw new Error("addresses still tentative");
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Takes the snapshot of the current network namespace. */
export function snapshot(): Snapshot {
  const links = ipJson<Json[]>("-d", "link", "show").map((l) => ({
    ifname: l.ifname,
    kind: (l.linkinfo as Json | undefined)?.info_kind,
    flags: l.flags,
    mtu: l.mtu,
    group: l.group,
    address: l.address,
    ifalias: l.ifalias,
    master: l.master,
  }));
  const addresses = ipJson<Json[]>("addr", "show").map((l) => ({
    ifname: l.ifname,
    addr: (l.addr_info as Json[]).map(
      (a) => `${a.family} ${a.local}/${a.prefixlen} peer ${a.address ?? "-"}`,
    ),
  }));
  const routes = [
    ...ipJson<Json[]>("-4", "route", "show", "table", "all"),
    ...ipJson<Json[]>("-6", "route", "show", "table", "all"),
  ];
  const rules = [...ipJson<Json[]>("-4", "rule", "show"), ...ipJson<Json[]>("-6", "rule", "show")];
  const nftables = nftJson().filter((o) => !("metainfo" in o));
  const sysctls: Record<string, string> = {};
  readTree("/proc/sys/net/ipv4", sysctls);
  readTree("/proc/sys/net/ipv6", sysctls);
  let stateFiles: string[] = [];
  try {
    stateFiles = readdirSync(DEFAULT_STATE_DIR);
  } catch {
    // no state directory: nothing of ours
  }
  return { links, addresses, routes, rules, nftables, sysctls, stateFiles };
}
