/**
 * `mvnet demo`: the whole story — bootstrap, a TAP with a /32 pair, a published port, a packet
 * through it, and everything taken away again — inside a throw-away network namespace, so it is safe
 * on any Linux machine. The namespace dies with the process: nothing can leak into the host.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bootstrap, teardown } from "../api/bootstrap.js";
import { context } from "../api/context.js";
import { addPortMapping, listPortMappings } from "../api/portmap.js";
import { createPointToPointTap, deleteTap, listTaps } from "../api/tap.js";
import { linkGet, linkSetUp } from "../kernel/netlink/index.js";
import { sysctlGet } from "../kernel/sysctl.js";
import { watchTapAsGuest } from "./demo-guest.js";
import { formatMappings, formatTaps } from "./format.js";

const INNER = "MVNET_DEMO_INNER";

/** Re-runs `mvnet demo` inside fresh network + mount namespaces (rootless when needed). */
function reexecIsolated(): number {
  const root = process.getuid?.() === 0;
  const ns = root ? ["-n", "-m", "--propagation", "private"] : ["-r", "-n", "-m", "--propagation", "private"];
  if (spawnSync("unshare", [...ns, "true"], { stdio: "ignore" }).status !== 0) {
    process.stderr.write(
      "mvnet demo: cannot make a private network namespace here (needs root, or unprivileged user namespaces)\n",
    );
    return 3;
  }
  const r = spawnSync(
    "unshare",
    [...ns, "--", process.execPath, ...process.execArgv, ...process.argv.slice(1)],
    {
      stdio: "inherit",
      env: { ...process.env, [INNER]: "1" },
    },
  );
  if (r.error) throw r.error;
  return r.status ?? 1;
}

function step(n: number, text: string): void {
  process.stdout.write(`\n[${n}] ${text}\n`);
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}

/** Runs the demo; returns the exit code. */
export async function runDemo(): Promise<number> {
  if (!process.env[INNER]) return reexecIsolated();
  const stateDir = mkdtempSync(join(tmpdir(), "mvnet-demo-"));
  const opts = { stateDir };
  try {
    const ctx = context(opts);
    const lo = await linkGet(ctx.netlink, "lo");
    if (lo) await linkSetUp(ctx.netlink, lo.index);
    process.stdout.write("mvnet demo — inside a throw-away network namespace\n");

    step(1, "bootstrap(): forwarding on, NAT and guest isolation in our nftables table");
    const subnet = await bootstrap(opts);
    process.stdout.write(`    subnet ${subnet}, net.ipv4.ip_forward = ${sysctlGet("net/ipv4/ip_forward")}\n`);

    step(2, 'createPointToPointTap("mvdemo0", "10.200.0.1", "10.200.0.2", uid 0, gid 0)');
    await createPointToPointTap("mvdemo0", "10.200.0.1", "10.200.0.2", 0, 0, opts);
    process.stdout.write(`${indent(formatTaps(await listTaps(opts)))}\n`);

    step(3, 'addPortMapping("", 8080, "10.200.0.2", 80, "tcp"): host port 8080 -> guest port 80');
    await addPortMapping("", 8080, "10.200.0.2", 80, "tcp", opts);
    process.stdout.write(`${indent(formatMappings(await listPortMappings(opts)))}\n`);

    step(4, "a VMM opens the TAP by name; the host connects to 127.0.0.1:8080; the guest side sees:");
    const guest = watchTapAsGuest("mvdemo0", "10.200.0.2", "06:00:0a:c8:00:02");
    const sock = connect({ host: "127.0.0.1", port: 8080 });
    sock.on("error", () => undefined);
    const seen = await guest.firstTcp(5000);
    sock.destroy();
    guest.close();
    process.stdout.write(
      seen
        ? `    TCP SYN ${seen.src}:${seen.sport} -> ${seen.dst}:${seen.dport} arrived on mvdemo0 (DNATed from 127.0.0.1:8080)\n`
        : "    nothing arrived within 5 s (unexpected)\n",
    );

    step(5, 'deleteTap("mvdemo0"), teardown(): everything of ours goes away');
    await deleteTap("mvdemo0", opts);
    await teardown(opts);
    const left = (await listTaps(opts)).length + (await listPortMappings(opts)).length;
    process.stdout.write(
      `    TAPs and mappings left: ${left}; net.ipv4.ip_forward = ${sysctlGet("net/ipv4/ip_forward")}\n`,
    );
    return seen && left === 0 ? 0 : 1;
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
}
