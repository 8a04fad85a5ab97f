/**
 * `mvnet doctor`: can this host run our microVM networking, and if not, what is wrong. Every check
 * only reads (nftables probes are transactions the kernel aborts, a TAP probe is never made
 * persistent), so doctor is safe to run on a production host at any time.
 */
import { ValidationError } from "../core/errors.js";
import { type NftApplier, openNft } from "../firewall/nft.js";
import { DEFAULT_TABLE, DEFAULT_TAP_GROUP, validateTableName } from "../firewall/ruleset.js";
import { NetlinkSocket } from "../kernel/netlink/index.js";
import { DEFAULT_STATE_DIR, readBootstrapState } from "../store/bootstrap-state.js";
import { DEFAULT_STATE_DB } from "../store/state-db.js";
import { checkBootstrap } from "./bootstrap.js";
import { finding, messageOf } from "./finding.js";
import { checkFirewalls } from "./firewalls.js";
import { checkForwarding } from "./forwarding.js";
import { checkNftables } from "./nftables.js";
import { type DoctorReport, makeReport } from "./report.js";
import { checkRouteLocalnet } from "./route-localnet.js";
import { checkStaleLoopback } from "./stale-loopback.js";
import { checkStaleMappings } from "./stale-mappings.js";
import { checkStaleTaps } from "./stale-taps.js";
import { checkTun } from "./tun.js";
import type { Check, DoctorContext, Finding } from "./types.js";

export { type DoctorReport, doctorExitCode, formatReport, makeReport } from "./report.js";
export type { Check, DoctorContext, Finding, Severity } from "./types.js";

/**
 * The checks {@link doctor} runs, in order (the report keeps it): kernel features first, then our
 * own state, then stale objects. Append to it to add a check.
 */
export const CHECKS: Check[] = [
  checkTun,
  checkNftables,
  checkForwarding,
  checkFirewalls,
  checkBootstrap,
  checkStaleTaps,
  checkStaleMappings,
  checkStaleLoopback,
  checkRouteLocalnet,
];

/**
 * Runs `checks` one after the other on `ctx`, each isolated: a check that throws yields one "fail"
 * finding `doctor.check-error` naming it (data.check), and the others still run.
 */
export async function runChecks(ctx: DoctorContext, checks: readonly Check[] = CHECKS): Promise<Finding[]> {
  const out: Finding[] = [];
  for (const check of checks) {
    const name = check.name || "anonymous check";
    try {
      out.push(...(await check(ctx)));
    } catch (e) {
      out.push(
        finding("doctor.check-error", "fail", `check ${name} could not run`, {
          detail: messageOf(e),
          data: { check: name },
        }),
      );
    }
  }
  return out;
}

/** Options of {@link doctor}; every field has a default. */
export interface DoctorOptions {
  /** Our nftables table (family ip). Default: the bootstrap record's, else `microvm_net`. */
  table?: string;
  /** Directory of our state files. Default `/run/microvm-net`. */
  stateDir?: string;
  /** HostNetwork's state database. Default `/var/lib/microvm-net/state.db`; absent = VM checks skipped. */
  dbPath?: string;
  /** Interface group of our TAPs, 0–4294967295. Default 0x6d76. */
  tapGroup?: number;
  /** rtnetlink socket to use (kept open). Default: a socket opened and closed by this call. */
  netlink?: NetlinkSocket;
  /** nftables applier to use (kept open). Default: libnftables (or `nft -f -`), closed after. */
  nft?: NftApplier;
  /** Checks to run. Default {@link CHECKS}. */
  checks?: readonly Check[];
}

function validateGroup(value: unknown): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new ValidationError("tapGroup", `${String(value)} is not an interface group in 0-4294967295`);
  }
  return value;
}

/**
 * Diagnoses this host's network namespace (the process's) and returns every finding.
 * Changes nothing in the kernel or in files.
 * @throws ValidationError for a bad table name or group, before anything is read; KernelError
 *   when no rtnetlink socket can be opened. Everything else becomes a finding.
 */
export async function doctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  if (options.table !== undefined) validateTableName(options.table);
  const tapGroup = validateGroup(options.tapGroup ?? DEFAULT_TAP_GROUP);
  const stateDir = options.stateDir ?? DEFAULT_STATE_DIR;
  let recordedTable: string | undefined;
  try {
    recordedTable = readBootstrapState(stateDir)?.table;
  } catch {
    recordedTable = undefined; // the bootstrap check reports the corrupt record
  }
  const netlink = options.netlink ?? NetlinkSocket.open();
  let nft = options.nft;
  if (!nft) {
    try {
      nft = await openNft();
    } catch {
      nft = undefined;
    }
  }
  const ctx: DoctorContext = {
    netlink,
    nft,
    table: options.table ?? recordedTable ?? DEFAULT_TABLE,
    tapGroup,
    stateDir,
    dbPath: options.dbPath ?? DEFAULT_STATE_DB,
  };
  try {
    return makeReport(await runChecks(ctx, options.checks ?? CHECKS));
  } finally {
    if (!options.netlink) netlink.close();
    if (!options.nft) nft?.close();
  }
}
