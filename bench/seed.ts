// The baselines: how the seed (herd's internal/network, baselines.md §2) or a shell script does the
// same work — the commands it spawns, and models of its two allocators so they run in the same
// process and the same run as ours.
import { intToIPv4, ipv4ToInt, parseCidr, prefixMask } from "../src/core/validate.js";
import { run } from "./spawn.js";

/** Interface group the baseline's TAPs join, so `ip link del group` can remove them. */
export const SHELL_TAP_GROUP = 7;

/** The three `ip` commands a shell script runs per TAP (baselines.md §4), as `ip -batch` lines. */
export function ipTapLines(name: string, hostIp: string, guestIp: string, uid: number): string[] {
  return [
    `tuntap add dev ${name} mode tap vnet_hdr user ${uid} group ${uid}`,
    `addr add ${hostIp}/32 peer ${guestIp}/32 dev ${name}`,
    `link set dev ${name} group ${SHELL_TAP_GROUP} up`,
  ];
}

/** Creates one TAP with three `ip` processes. */
export function ipTapCreate(name: string, hostIp: string, guestIp: string, uid: number): void {
  for (const line of ipTapLines(name, hostIp, guestIp, uid)) run("ip", line.split(" "));
}

/** Creates many TAPs with one `ip -batch -` process (set-up only, not timed). */
export function ipTapBatch(
  taps: Array<{ name: string; guestIp: string }>,
  hostIp: string,
  uid: number,
): void {
  const lines = taps.flatMap((t) => ipTapLines(t.name, hostIp, t.guestIp, uid));
  if (lines.length > 0) run("ip", ["-batch", "-"], `${lines.join("\n")}\n`);
}

/** `ip link del group 7` (absent group: no error). */
export function ipDelGroup(): void {
  run("sh", ["-c", `ip link del group ${SHELL_TAP_GROUP} 2>/dev/null || true`]);
}

/**
 * The three iptables rules the seed's AddPortMapping("", …) adds (RemovePortMapping deletes them with
 * `-D` and the same arguments): DNAT in nat PREROUTING and nat OUTPUT for local destinations, and an
 * ACCEPT in filter FORWARD. `op` is `-A`, `-D` or `null` for iptables-restore lines.
 */
export function seedMappingRules(
  op: "-A" | "-D",
  hostPort: number,
  guestIp: string,
  guestPort: number,
): string[][] {
  const dnat = (chain: string) => [
    "-t",
    "nat",
    op,
    chain,
    "-p",
    "tcp",
    "-m",
    "addrtype",
    "--dst-type",
    "LOCAL",
    "--dport",
    String(hostPort),
    "-j",
    "DNAT",
    "--to-destination",
    `${guestIp}:${guestPort}`,
  ];
  const forward = [op, "FORWARD", "-p", "tcp", "-d", guestIp, "--dport", String(guestPort), "-j", "ACCEPT"];
  return [dnat("PREROUTING"), dnat("OUTPUT"), forward];
}

/** The seed's AddPortMapping / RemovePortMapping: three iptables processes. */
export function seedPortMapping(op: "-A" | "-D", hostPort: number, guestIp: string, guestPort: number): void {
  for (const args of seedMappingRules(op, hostPort, guestIp, guestPort)) run("iptables", args);
}

/** iptables-restore input that adds the seed's rules for `mappings` (use with `--noflush`). */
export function seedRestoreText(
  mappings: Array<{ hostPort: number; guestIp: string; guestPort: number }>,
): string {
  const nat: string[] = ["*nat"];
  const filter: string[] = ["*filter"];
  for (const m of mappings) {
    const [pre, out, fwd] = seedMappingRules("-A", m.hostPort, m.guestIp, m.guestPort);
    nat.push((pre as string[]).slice(2).join(" "), (out as string[]).slice(2).join(" "));
    filter.push((fwd as string[]).join(" "));
  }
  return `${[...nat, "COMMIT", ...filter, "COMMIT"].join("\n")}\n`;
}

/** Removes every iptables-nft table (the `ip nat` and `ip filter` nftables tables iptables made). */
export function iptablesClear(): void {
  run("sh", ["-c", "nft delete table ip nat 2>/dev/null; nft delete table ip filter 2>/dev/null; true"]);
}

const SEED_SUBNET = "10.200.0.0/16";
const SEED_PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/**
 * The seed's Bootstrap(): two `sysctl -w` (ip_forward, conf.all.route_localnet) and its iptables
 * rules — masquerade out of the default interface, accept established, drop the guests' RFC 1918
 * traffic, accept the rest out of the default interface. `iface` stands for the default route's
 * interface (the seed finds it in-process; not timed here).
 */
export function seedBootstrap(iface: string): void {
  run("sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"]);
  run("sysctl", ["-q", "-w", "net.ipv4.conf.all.route_localnet=1"]);
  for (const args of seedBootstrapRules("-A", iface)) run("iptables", args);
}

/** The seed's Teardown(): the same rules with `-D`, errors ignored (the sysctls are left set). */
export function seedTeardown(iface: string): void {
  for (const args of seedBootstrapRules("-D", iface)) {
    try {
      run("iptables", args);
    } catch {
      // The seed ignores them too.
    }
  }
}

function seedBootstrapRules(op: "-A" | "-D", iface: string): string[][] {
  return [
    ["-t", "nat", op, "POSTROUTING", "-o", iface, "-s", SEED_SUBNET, "-j", "MASQUERADE"],
    [op, "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
    ...SEED_PRIVATE.map((d) => [op, "FORWARD", "-s", SEED_SUBNET, "-d", d, "-j", "DROP"]),
    [op, "FORWARD", "-s", SEED_SUBNET, "-o", iface, "-j", "ACCEPT"],
  ];
}

/**
 * A model of the seed's IPAM (baselines.md §2c): a cursor address and a set of used addresses keyed
 * by their text. Each acquire walks forward from the cursor, one address at a time (formatting each
 * as text to look it up), wrapping from the broadcast address back to network + 2; arriving back
 * where it started means exhausted — so an exhausted pool costs a walk over the whole subnet.
 */
export class SeedStyleIpam {
  readonly #first: number;
  readonly #broadcast: number;
  readonly #used = new Map<string, boolean>();
  #next: number;

  constructor(cidr: string) {
    const c = parseCidr(cidr);
    const network = ipv4ToInt(c.network);
    this.#first = network + 2;
    this.#broadcast = (network | (~prefixMask(c.prefix) >>> 0)) >>> 0;
    this.#next = this.#first;
  }

  #advance(ip: number): number {
    const n = ip + 1;
    return n >= this.#broadcast ? this.#first : n;
  }

  acquire(): string {
    const start = this.#next;
    for (;;) {
      const text = intToIPv4(this.#next);
      const free = !this.#used.get(text);
      this.#next = this.#advance(this.#next);
      if (free) {
        this.#used.set(text, true);
        return text;
      }
      if (this.#next === start) throw new Error(`ip pool ${intToIPv4(this.#first - 2)} exhausted`);
    }
  }

  release(ip: string): void {
    this.#used.delete(ip);
  }
}

/**
 * A model of the seed's PortManager (baselines.md §2c): a map port → VM id; an ephemeral request
 * walks the range from its start (first fit) and takes the first port not in the map that the host
 * probe (a bind of 0.0.0.0:port) says is free.
 */
export class SeedStylePortManager {
  readonly #inUse = new Map<number, string>();
  readonly #start: number;
  readonly #end: number;
  readonly #probe: ((port: number) => Promise<boolean>) | undefined;

  constructor(start: number, end: number, probe?: (port: number) => Promise<boolean>) {
    this.#start = start;
    this.#end = end;
    this.#probe = probe;
  }

  async allocateEphemeral(vmId: string): Promise<number> {
    for (let p = this.#start; p <= this.#end; p++) {
      if (this.#inUse.has(p)) continue;
      if (this.#probe && !(await this.#probe(p))) continue;
      this.#inUse.set(p, vmId);
      return p;
    }
    throw new Error(`no ephemeral ports available in range ${this.#start}-${this.#end}`);
  }
}
