/**
 * Check: TAPs of ours against the VMs HostNetwork recorded (src/store/host-state.ts), and links
 * that sit in our interface group without being ours (a group delete would take them too, GUIDE §3).
 */
import { isOurTap } from "../api/tap.js";
import { isVmTap, vmIdOfTap } from "../host/names.js";
import type { VmRecord } from "../store/host-state.js";
import { finding, messageOf } from "./finding.js";
import { listOurTaps } from "./our-taps.js";
import { readRecordedVms } from "./recorded-vms.js";
import type { DoctorContext, Finding } from "./types.js";

/**
 * Check `stale.*` for TAPs:
 * - `stale.tap-in-group` warn: a link in our interface group that we did not make;
 * - `stale.tap-orphan` warn: a TAP marked `microvm-net:<vmId>` whose VM is not recorded (or is
 *   recorded with another TAP); fix `mvnet reconcile`;
 * - `stale.vm-without-tap` warn: a recorded VM whose TAP is missing; fix `mvnet reconcile`, or
 *   `mvnet gc` when the VM is gone;
 * - `stale.vm-in-progress` info: a record left `attaching`/`detaching`;
 * - `stale.db` info/fail: no database (VM checks skipped) / unreadable database;
 * - `stale.taps` ok when none of the above.
 * VM checks run only when `ctx.dbPath` names an existing database.
 */
export async function checkStaleTaps(ctx: DoctorContext): Promise<Finding[]> {
  const { links, taps } = await listOurTaps(ctx);
  const out: Finding[] = [];
  for (const l of links) {
    if (l.group === ctx.tapGroup && !isOurTap(l)) {
      out.push(
        finding(
          "stale.tap-in-group",
          "warn",
          `${l.name} is in our interface group ${ctx.tapGroup} but was not made by mvnet`,
          {
            detail: "mvnet deletes its TAPs by group in one request; this link would be deleted with them.",
            fix: `ip link set ${l.name} group default  (or choose another --tap-group for mvnet)`,
            data: { name: l.name, group: l.group, kind: l.kind ?? null, alias: l.alias ?? null },
          },
        ),
      );
    }
  }

  let vms: VmRecord[] | undefined;
  if (ctx.dbPath !== undefined) {
    try {
      vms = readRecordedVms(ctx.dbPath);
    } catch (e) {
      out.push(
        finding("stale.db", "fail", `the state database ${ctx.dbPath} cannot be read`, {
          detail: messageOf(e),
          data: { path: ctx.dbPath },
        }),
      );
      return out;
    }
  }
  if (!vms) {
    out.push(
      finding(
        "stale.db",
        "info",
        `no state database${ctx.dbPath ? ` at ${ctx.dbPath}` : ""}: TAPs not compared with VM records`,
        {
          data: { path: ctx.dbPath ?? null, taps: taps.map((t) => t.name) },
        },
      ),
    );
    return out;
  }

  const byId = new Map(vms.map((v) => [v.vmId, v]));
  for (const t of taps) {
    const vmId = vmIdOfTap(t);
    if (!isVmTap(t) || vmId === undefined) continue; // createTap's TAPs belong to no VM
    const rec = byId.get(vmId);
    if (!rec || rec.tap !== t.name) {
      out.push(
        finding(
          "stale.tap-orphan",
          "warn",
          `TAP ${t.name} belongs to VM ${vmId}, which is not recorded${rec ? ` with this TAP (it has ${rec.tap})` : ""}`,
          {
            detail: "Left behind by a crash or a lost database; it holds a guest address route and a name.",
            fix: "mvnet reconcile  (removes our TAPs that no record explains)",
            data: { tap: t.name, vmId },
          },
        ),
      );
    }
  }
  const names = new Set(links.map((l) => l.name));
  for (const v of vms) {
    if (v.state !== "attached") {
      out.push(
        finding("stale.vm-in-progress", "info", `VM ${v.vmId} is recorded as ${v.state}`, {
          detail: "Normal while an attach or detach runs; left over when one was interrupted.",
          fix: "mvnet reconcile  (finishes or rolls back interrupted operations)",
          data: { vmId: v.vmId, state: v.state },
        }),
      );
    } else if (!names.has(v.tap)) {
      out.push(
        finding(
          "stale.vm-without-tap",
          "warn",
          `VM ${v.vmId} is recorded with TAP ${v.tap}, which does not exist`,
          {
            fix: `mvnet reconcile  (re-creates it), or mvnet gc / mvnet detach ${v.vmId} if the VM is gone`,
            data: { vmId: v.vmId, tap: v.tap, guestIp: v.guestIp },
          },
        ),
      );
    }
  }
  if (out.length === 0) {
    out.push(
      finding("stale.taps", "ok", `${taps.length} TAP(s) of ours, ${vms.length} VM record(s), all matching`, {
        data: { taps: taps.map((t) => t.name), vms: vms.length },
      }),
    );
  }
  return out;
}
