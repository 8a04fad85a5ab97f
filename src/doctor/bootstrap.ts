/**
 * Check: our own state — the bootstrap record (src/store/bootstrap-state.ts) against our nftables
 * table as it is in the kernel.
 */
import { BOOTSTRAP_CHAINS, SKELETON_CHAINS } from "../firewall/ruleset.js";
import { type BootstrapState, readBootstrapState, statePath } from "../store/bootstrap-state.js";
import { finding, messageOf } from "./finding.js";
import { readTable } from "./our-table.js";
import type { DoctorContext, Finding } from "./types.js";

/**
 * Check `state.*`:
 * - `state.record` fail: the record cannot be read;
 * - `state.table` fail: a record but no table (someone flushed the ruleset), or the table lacks
 *   chains bootstrap makes; ok when both are there;
 * - `state.record` warn: a bootstrapped table but no record (teardown cannot restore sysctls);
 *   info: only the port-mapping part of the table, or nothing at all (not bootstrapped).
 */
export async function checkBootstrap(ctx: DoctorContext): Promise<Finding[]> {
  let record: BootstrapState | undefined;
  try {
    record = readBootstrapState(ctx.stateDir);
  } catch (e) {
    return [
      finding("state.record", "fail", "the bootstrap record cannot be read", {
        detail: messageOf(e),
        fix: `mvnet teardown, or remove ${statePath(ctx.stateDir)} and run mvnet bootstrap`,
        data: { path: statePath(ctx.stateDir) },
      }),
    ];
  }
  if (!ctx.nft) return []; // no nftables at all: the nftables check says so
  const table = await readTable(ctx.nft, ctx.table);
  const data: Record<string, unknown> = { table: ctx.table, record: record ? statePath(ctx.stateDir) : null };
  const out: Finding[] = [];
  if (record && record.table !== ctx.table) {
    out.push(
      finding(
        "state.table-name",
        "warn",
        `bootstrap recorded table ${record.table}, but ${ctx.table} is checked`,
        {
          fix: `pass --table ${record.table}, or run mvnet bootstrap --table ${ctx.table}`,
          data: { ...data, recordedTable: record.table },
        },
      ),
    );
  }
  if (record && !table) {
    out.push(
      finding("state.table", "fail", `bootstrapped, but table ip ${ctx.table} is gone`, {
        detail:
          "Someone flushed the ruleset (nft flush ruleset, a firewall reload): no NAT, no isolation, no published ports.",
        fix: "mvnet bootstrap  (then mvnet reconcile to restore published ports)",
        data,
      }),
    );
    return out;
  }
  if (record && table) {
    const missing = [...SKELETON_CHAINS, ...BOOTSTRAP_CHAINS].filter((c) => !table.chains.includes(c));
    out.push(
      missing.length > 0
        ? finding("state.table", "fail", `table ip ${ctx.table} lacks chains: ${missing.join(", ")}`, {
            fix: "mvnet bootstrap",
            data: { ...data, missing },
          })
        : finding(
            "state.table",
            "ok",
            `bootstrapped (subnet ${record.subnet}), table ip ${ctx.table} in place`,
            {
              data: { ...data, subnet: record.subnet },
            },
          ),
    );
    return out;
  }
  if (table) {
    const bootstrapped = BOOTSTRAP_CHAINS.some((c) => table.chains.includes(c));
    out.push(
      bootstrapped
        ? finding("state.record", "warn", `table ip ${ctx.table} exists but there is no bootstrap record`, {
            detail: `The record (${statePath(ctx.stateDir)}) is what teardown restores sysctls from; it was removed, or bootstrap ran with another --state-dir.`,
            fix: "mvnet bootstrap  (writes the record again; idempotent)",
            data,
          })
        : finding("state.record", "info", "not bootstrapped; only published ports are set up", {
            fix: "mvnet bootstrap",
            data,
          }),
    );
    return out;
  }
  out.push(finding("state.record", "info", "not bootstrapped", { fix: "mvnet bootstrap", data }));
  return out;
}
