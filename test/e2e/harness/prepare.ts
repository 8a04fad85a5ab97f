/**
 * Prepares one e2e run: copies the guest kernel next to a freshly built initramfs in a directory the
 * VMM uid can read, picks the accelerator, and prints the artifacts as JSON.
 *
 *   tsx test/e2e/harness/prepare.ts VMLINUX WORKDIR
 *
 * Run by scripts/e2e.mjs inside a private network namespace (the KVM probe boots a guest without a NIC).
 */
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { type Artifacts, VMM_GID, VMM_UID } from "./artifacts.js";
import { GuestVm } from "./guest.js";
import { buildInitramfs } from "./initramfs.js";

function canUseKvm(uid: number, gid: number): string | undefined {
  if (existsSync("/sys/module/kvm_pvm")) {
    return "kvm_pvm (nested PVM) is loaded: it cannot run a stock guest kernel";
  }
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync("/dev/kvm");
  } catch {
    return "no /dev/kvm";
  }
  const rw = (shift: number) => ((st.mode >> shift) & 0o6) === 0o6;
  if (!(rw(0) || (st.uid === uid && rw(6)) || (st.gid === gid && rw(3)))) {
    return `/dev/kvm is not read-write for uid ${uid}`;
  }
  return undefined;
}

async function chooseAccel(
  base: Omit<Artifacts, "accel" | "accelReason">,
): Promise<Pick<Artifacts, "accel" | "accelReason">> {
  const forced = process.env.MVNET_E2E_ACCEL;
  if (forced === "kvm" || forced === "tcg") return { accel: forced, accelReason: "MVNET_E2E_ACCEL" };
  const why = canUseKvm(VMM_UID, VMM_GID);
  if (why) return { accel: "tcg", accelReason: why };
  // "KVM when it really works": boot once with it, without a NIC, and fall back when it does not answer.
  try {
    const vm = await GuestVm.boot(
      {
        name: "kvm-probe",
        guestIp: "192.0.2.2",
        hostIp: "192.0.2.1",
        prefix: 24,
        uid: VMM_UID,
        gid: VMM_GID,
      },
      { ...base, accel: "kvm", accelReason: "probe" },
      20_000,
    );
    await vm.stop();
    return { accel: "kvm", accelReason: `a KVM guest booted in ${Math.round(vm.readyMs)} ms` };
  } catch (e) {
    return { accel: "tcg", accelReason: `KVM probe failed: ${String(e).split("\n")[0]}` };
  }
}

const [vmlinux, workDir] = process.argv.slice(2);
if (!vmlinux || !workDir) {
  console.error("usage: prepare.ts VMLINUX WORKDIR");
  process.exit(2);
}
chmodSync(workDir, 0o755);
const kernel = join(workDir, "vmlinux");
copyFileSync(vmlinux, kernel);
chmodSync(kernel, 0o644);
const initrd = join(workDir, "initramfs.cpio.gz");
const initramfs = buildInitramfs();
writeFileSync(initrd, initramfs, { mode: 0o644 });
// A copy for `mvnet demo --guest`, next to the cached kernel.
const cache = process.env.MVNET_E2E_CACHE ?? join(homedir(), ".cache", "microvm-net");
mkdirSync(cache, { recursive: true });
writeFileSync(join(cache, "guest-initramfs.cpio.gz"), initramfs, { mode: 0o644 });
const qemu = execFileSync("sh", ["-c", "command -v qemu-system-x86_64"], { encoding: "utf8" }).trim();
const base = { qemu, kernel, initrd, workDir };
const artifacts: Artifacts = { ...base, ...(await chooseAccel(base)) };
const out = join(workDir, "artifacts.json");
writeFileSync(out, `${JSON.stringify(artifacts, null, 2)}\n`);
console.log(out);
