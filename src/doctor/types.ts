/**
 * Shapes shared by every `mvnet doctor` check: a finding (one observation about the host), the
 * read-only context a check gets, and the check function itself.
 */
import type { NftApplier } from "../firewall/nft.js";
import type { NetlinkSocket } from "../kernel/netlink/index.js";

/**
 * How bad a finding is. "ok": the thing checked is as it should be. "info": worth knowing, nothing
 * to do (e.g. not bootstrapped yet). "warn": works now but is fragile or will break for some setups.
 * "fail": microVM networking cannot work (or is broken) on this host until the fix is applied.
 */
export type Severity = "ok" | "info" | "warn" | "fail";

/** One observation of a check. */
export interface Finding {
  /** Stable dotted identifier, e.g. "kernel.tun.mode"; scripts match on it, so never rename one. */
  id: string;
  severity: Severity;
  /** One line for humans, e.g. "/dev/net/tun is mode 0600". */
  title: string;
  /** Why it matters / what was observed, possibly several sentences. */
  detail?: string;
  /** What the operator should run or change, e.g. "mvnet bootstrap". */
  fix?: string;
  /** Machine-readable facts behind the finding (names, addresses, modes) for `--json`. */
  data?: Record<string, unknown>;
}

/**
 * What a check may use. Everything here is for reading: a check never changes the kernel or files
 * (dry-run nftables transactions, which the kernel validates and then aborts, are allowed).
 */
export interface DoctorContext {
  /** Open rtnetlink socket in the namespace being diagnosed. */
  netlink: NetlinkSocket;
  /** nftables applier, or undefined when neither libnftables nor `nft` could be opened. */
  nft: NftApplier | undefined;
  /** Name of our nftables table (family ip). */
  table: string;
  /** Interface group our TAPs are put in (IFLA_GROUP). */
  tapGroup: number;
  /** Directory of our state files (bootstrap record, loopback hints). */
  stateDir: string;
  /** Path of the HostNetwork SQLite database, when the operator uses one. */
  dbPath?: string;
}

/**
 * One diagnostic: inspects the host through `ctx` and returns its findings (at least one, "ok" when
 * all is well). May throw; `doctor()` turns a throw into a "fail" finding naming the check.
 */
export type Check = (ctx: DoctorContext) => Promise<Finding[]>;
