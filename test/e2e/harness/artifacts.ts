/**
 * What every e2e test needs to boot a guest, prepared once per run by prepare.ts (called from
 * scripts/e2e.mjs) and handed to the test processes through MVNET_E2E_ARTIFACTS.
 */
import { readFileSync } from "node:fs";

/** Paths and choices shared by all e2e tests of one run. */
export interface Artifacts {
  /** Absolute path of qemu-system-x86_64. */
  qemu: string;
  /** The guest kernel (ELF vmlinux, PVH entry), readable by the VMM uid. */
  kernel: string;
  /** The gzip'd initramfs, readable by the VMM uid. */
  initrd: string;
  /** The accelerator: KVM only where it really boots the guest, TCG otherwise. */
  accel: "kvm" | "tcg";
  /** Why that accelerator was chosen. */
  accelReason: string;
  /** A per-run directory (0755) holding kernel and initrd; removed by the runner. */
  workDir: string;
}

/** The uid and gid QEMU runs as, and that owns the guests' TAPs (no such user needs to exist). */
export const VMM_UID = 4242;
export const VMM_GID = 4242;

/** The artifacts of this run, or undefined when the runner did not prepare any. */
export function loadArtifacts(): Artifacts | undefined {
  const path = process.env.MVNET_E2E_ARTIFACTS;
  if (!path) return undefined;
  return JSON.parse(readFileSync(path, "utf8")) as Artifacts;
}
