#!/usr/bin/env node
// `npm run bench [-- --quick] [-- --runs N] [-- --only SUITES]`: runs bench/main.ts inside a private
// network + mount namespace, so the TAPs and rules it makes never touch the machine's own namespace.
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const ns =
  process.getuid?.() === 0
    ? ["-n", "-m", "--propagation", "private"]
    : ["-r", "-n", "-m", "--propagation", "private"];
const r = spawnSync(
  "unshare",
  [
    ...ns,
    "--",
    join(root, "scripts", "netns-setup.sh"),
    process.execPath,
    // The benchmark collects garbage before each phase (bench/phase.ts), so that a phase's loop lag
    // is its own and not the collection of what earlier phases left.
    "--expose-gc",
    "--import",
    "tsx",
    join(root, "bench", "main.ts"),
    ...process.argv.slice(2),
  ],
  { stdio: "inherit", cwd: root },
);
process.exit(r.status ?? 1);
