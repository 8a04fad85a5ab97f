#!/usr/bin/env node
// The test runner behind `npm test`: unit tests first, then each kernel test file in a fresh private
// network namespace (plus a private mount namespace, see netns-setup.sh), so no test can touch the
// machine's own interfaces, rules or sysctls, and no file sees what another left behind.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const vitest = join(root, "node_modules", ".bin", "vitest");
// `--with-e2e` (used by `npm test`): run the end-to-end suite after the kernel tests even when those
// failed, so one failure never hides the other's result; the exit status covers both.
const withE2e = process.argv.includes("--with-e2e");
const extra = process.argv.slice(2).filter((a) => a !== "--with-e2e");
const run = (cmd, args, env = {}) =>
  spawnSync(cmd, args, { stdio: "inherit", cwd: root, env: { ...process.env, ...env } }).status ?? 1;

let failed = run(vitest, ["run", "--project", "unit", "--passWithNoTests", ...extra]) !== 0;

const isRoot = process.getuid?.() === 0;
const nsArgs = isRoot
  ? ["-n", "-m", "--propagation", "private"]
  : ["-r", "-n", "-m", "--propagation", "private"];
const probe = spawnSync("unshare", [...nsArgs, "true"], { stdio: "ignore" });
const kernelDir = join(root, "test", "kernel");
const files = readdirSync(kernelDir)
  .filter((f) => f.endsWith(".test.ts"))
  .filter((f) => extra.length === 0 || extra.some((e) => f.includes(e)))
  .sort();

if (probe.status !== 0) {
  const reason =
    "kernel tests skipped: cannot create a private network namespace (needs root or user namespaces)";
  console.log(reason);
  failed = run(vitest, ["run", "--project", "kernel"], { MVNET_SKIP_KERNEL: reason }) !== 0 || failed;
} else {
  for (const f of files) {
    const code = run("unshare", [
      ...nsArgs,
      "--",
      join(root, "scripts", "netns-setup.sh"),
      vitest,
      "run",
      "--project",
      "kernel",
      join("test", "kernel", f),
    ]);
    if (code !== 0) failed = true;
  }
}
if (withE2e && run(process.execPath, [join(root, "scripts", "e2e.mjs")]) !== 0) failed = true;
process.exit(failed ? 1 : 0);
