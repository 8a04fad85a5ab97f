// Runs HostNetwork operations in a separate process, for crash (C12) and two-process tests.
// Usage: tsx test/helpers/host-child.ts '<json Job>'; prints the outcome as JSON on stdout.
// With `killAt`, the process SIGKILLs itself right after that step of that VM's attach or detach.
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { closeShared } from "../../src/api/context.js";
import { type AttachOptions, HostNetwork, type Step } from "../../src/host/index.js";

interface Job {
  db: string;
  op: "attach" | "detach";
  vmIds: string[];
  options?: AttachOptions;
  /** Run the VMs' operations concurrently (Promise.all) instead of one after another. */
  concurrent?: boolean;
  killAt?: Step;
  killVm?: string;
  /** Wait, after opening, until `count` processes have written their ready file into `dir`. */
  barrier?: { dir: string; count: number };
}

const job = JSON.parse(process.argv[2] ?? "{}") as Job;
const hn = await HostNetwork.open({
  statePath: job.db,
  hooks: {
    step(step, vmId) {
      if (step === job.killAt && (job.killVm === undefined || job.killVm === vmId))
        process.kill(process.pid, "SIGKILL");
    },
  },
});
if (job.barrier) {
  const { dir, count } = job.barrier;
  writeFileSync(join(dir, `ready.${process.pid}`), "");
  while (readdirSync(dir).filter((f) => f.startsWith("ready.")).length < count) {
    await new Promise((r) => setTimeout(r, 5));
  }
}
const one = async (vmId: string) =>
  job.op === "attach" ? await hn.attach(vmId, job.options) : { detached: await hn.detach(vmId) };
const started = Date.now();
try {
  const results = [];
  if (job.concurrent) results.push(...(await Promise.all(job.vmIds.map(one))));
  else for (const v of job.vmIds) results.push(await one(v));
  process.stdout.write(JSON.stringify({ ok: true, results, started, ended: Date.now() }));
} catch (e) {
  const err = e as { name?: string; code?: string; message?: string };
  process.stdout.write(
    JSON.stringify({ ok: false, error: { name: err.name, code: err.code, message: err.message } }),
  );
} finally {
  await hn.close();
  await closeShared();
}
