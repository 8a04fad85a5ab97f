/**
 * Shared set-up of the e2e test files: skip cleanly where guests cannot run, and print every guest's
 * console when a test fails.
 */
import { beforeEach, describe } from "vitest";
import { kernelSkip } from "../../helpers/kernel.js";
import { type Artifacts, loadArtifacts } from "./artifacts.js";
import type { GuestVm } from "./guest.js";

const loaded = loadArtifacts();

/** Why e2e tests cannot run here, or undefined. */
export const e2eSkip =
  kernelSkip ??
  (loaded ? undefined : "e2e tests skipped: not started by scripts/e2e.mjs (no guest artifacts)");
if (e2eSkip && !kernelSkip) console.log(e2eSkip);

/** `describe` for tests with real guests: skipped, with one line saying why, where they cannot run. */
export const e2eDescribe = e2eSkip ? describe.skip : describe;

/** The run's artifacts. Only read inside an {@link e2eDescribe} block. */
export function artifacts(): Artifacts {
  if (!loaded) throw new Error("no e2e artifacts");
  return loaded;
}

/** Registers a hook that prints each guest's QEMU command line, stderr and serial console when a test fails. */
export function printGuestsOnFailure(guests: () => Array<GuestVm | undefined>): void {
  beforeEach((ctx) => {
    ctx.onTestFailed(() => {
      for (const vm of guests()) if (vm) console.log(vm.report());
    });
  });
}

/** Prints one measurement line, collected by scripts/e2e.mjs's output. */
export function timing(label: string, ms: number): void {
  console.log(`e2e timing: ${label} ${Math.round(ms)} ms`);
}
