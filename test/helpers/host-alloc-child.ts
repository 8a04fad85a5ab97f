// One process of the two-process allocation tests (test/unit/host-store.test.ts): allocates `count`
// VMs, one ephemeral tcp port each, against a shared state database, and prints what it got as JSON.
// Usage: tsx test/helpers/host-alloc-child.ts <db> <prefix> <count> <portStart> <portEnd>
import { readdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { allocateVm } from "../../src/host/allocate.js";
import { normalizeAttach, subnetInfo } from "../../src/host/request.js";
import { HostState } from "../../src/store/host-state.js";

const [db, prefix, count, start, end] = process.argv.slice(2);
const state = HostState.open(db as string);
const subnet = subnetInfo("10.200.0.0/16");
const ports = Array.from({ length: Number(end) - Number(start) + 1 }, (_, i) => Number(start) + i);
const out: Array<{ vmId: string; ip: string; mac: string; tap: string; port: number }> = [];
let handle = 0;
// A barrier: each process says it is ready and waits for the other, so both allocate at once.
writeFileSync(`${db}.ready.${prefix}`, "");
while (readdirSync(dirname(db as string)).filter((f) => f.includes(".ready.")).length < 2) {
  await new Promise((r) => setTimeout(r, 5));
}
const started = Date.now();
for (let i = 0; i < Number(count); i++) {
  const req = normalizeAttach(`${prefix}-${i}`, { publish: ["80"] });
  const a = state.write(() =>
    allocateVm(
      state,
      subnet,
      req,
      ports,
      { pid: process.pid, start: "x" },
      () => ++handle,
      () => {},
    ),
  );
  const p = a.record.ports[0];
  out.push({
    vmId: a.record.vmId,
    ip: a.record.guestIp,
    mac: a.record.guestMac,
    tap: a.record.tap,
    port: p?.hostPort ?? 0,
  });
  // Let the other process in between our transactions.
  await new Promise((r) => setTimeout(r, 2));
}
state.close();
process.stdout.write(JSON.stringify({ out, started, ended: Date.now() }));
