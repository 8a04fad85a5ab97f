#!/usr/bin/env node
// The end-to-end runner (`npm test` calls it after the kernel tests; alone: `node scripts/e2e.mjs
// [filename-substring...]`). It builds or reuses the cached guest kernel (test/e2e/build-kernel.sh),
// builds the initramfs and picks the accelerator (test/e2e/harness/prepare.ts), then runs each file of
// test/e2e in a fresh private network + mount namespace, as scripts/test.mjs does for test/kernel.
//
// Needs real root (QEMU runs as another uid than the TAP's creator), qemu-system-x86, busybox-static,
// gcc and the kernel build packages (.ci/run installs them). Where they are missing the e2e tests are
// skipped with one line saying why — except under CI=true, where that is a failure.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const bin = (name) => join(root, "node_modules", ".bin", name);
const filters = process.argv.slice(2);
const ci = Boolean(process.env.CI);
const t0 = Date.now();

function skip(reason) {
  console.log(`e2e tests skipped: ${reason}`);
  process.exit(ci ? 1 : 0);
}

function isRealRoot() {
  try {
    return readFileSync("/proc/self/uid_map", "utf8").trim().split(/\s+/).join(" ") === "0 0 4294967295";
  } catch {
    return false;
  }
}

const has = (cmd) => spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
if (!isRealRoot()) skip("QEMU must run as the TAP owner's uid, which needs real root");
if (!has("qemu-system-x86_64")) skip("qemu-system-x86_64 not found (apt-get install qemu-system-x86)");
if (!existsSync("/bin/busybox")) skip("/bin/busybox not found (apt-get install busybox-static)");
if (!has("gcc")) skip("gcc not found");

const nsArgs = ["-n", "-m", "--propagation", "private", "--"];
const kb = spawnSync(join(root, "test", "e2e", "build-kernel.sh"), [], {
  encoding: "utf8",
  stdio: ["ignore", "pipe", "inherit"],
});
if (kb.status !== 0) {
  console.error("e2e: building the guest kernel failed");
  process.exit(1);
}
const vmlinux = kb.stdout.trim();
const buildSecondsFile = join(vmlinux, "..", "build-seconds");
const kernelNote = existsSync(buildSecondsFile)
  ? `kernel ${vmlinux} (built in ${readFileSync(buildSecondsFile, "utf8").trim()} s when first made)`
  : `kernel ${vmlinux}`;

const work = mkdtempSync(join(tmpdir(), "mvnet-e2e-"));
let failed = false;
let passed = 0;
let failedTests = 0;
try {
  const prep = spawnSync(
    "unshare",
    [
      ...nsArgs,
      join(root, "scripts", "netns-setup.sh"),
      bin("tsx"),
      join(root, "test", "e2e", "harness", "prepare.ts"),
      vmlinux,
      work,
    ],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], cwd: root },
  );
  if (prep.status !== 0) {
    console.error("e2e: preparing the guest failed");
    process.exit(1);
  }
  const artifactsPath = prep.stdout.trim().split("\n").pop();
  const artifacts = JSON.parse(readFileSync(artifactsPath, "utf8"));
  console.log(`e2e: ${kernelNote}; accelerator ${artifacts.accel} (${artifacts.accelReason})`);

  const dir = join(root, "test", "e2e");
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".test.ts"))
    .filter((f) => filters.length === 0 || filters.some((e) => f.includes(e)))
    .sort();
  for (const f of files) {
    const report = join(work, `${f}.json`);
    const r = spawnSync(
      "unshare",
      [
        ...nsArgs,
        join(root, "scripts", "netns-setup.sh"),
        bin("vitest"),
        "run",
        "--config",
        join(dir, "vitest.config.ts"),
        "--reporter=default",
        "--reporter=json",
        `--outputFile.json=${report}`,
        join("test", "e2e", f),
      ],
      { stdio: "inherit", cwd: root, env: { ...process.env, MVNET_E2E_ARTIFACTS: artifactsPath } },
    );
    if (r.status !== 0) failed = true;
    try {
      const j = JSON.parse(readFileSync(report, "utf8"));
      passed += j.numPassedTests;
      failedTests += j.numFailedTests + (r.status !== 0 && j.numFailedTests === 0 ? 1 : 0);
    } catch {
      failedTests += 1; // the file crashed before reporting: count it as one failure
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`e2e: ${failed ? "FAILED" : "passed"} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
console.log(`e2e: ${passed} passed, ${failedTests} failed`);
process.exit(failed ? 1 : 0);
