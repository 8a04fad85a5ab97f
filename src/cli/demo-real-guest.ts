/**
 * `mvnet demo --guest`: the demo with a real Linux guest instead of a simulated one. QEMU `-M microvm`
 * boots a small kernel with the kernel's own `ip=` parser on a TAP we made, as the TAP's owner uid,
 * inside a throw-away network namespace; the guest configures itself only from the boot argument and
 * MAC we render, answers HTTP through a published port, and everything is taken away again.
 *
 * It needs real root (QEMU runs as another uid), `qemu-system-x86_64`, and the e2e tests' guest kernel
 * and initramfs: `node scripts/e2e.mjs` builds and caches them under ~/.cache/microvm-net (or point
 * MVNET_GUEST_KERNEL / MVNET_GUEST_INITRD at your own; the initramfs must run test/e2e/guest/init.sh).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { request } from "node:http";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { bootstrap, teardown } from "../api/bootstrap.js";
import { context } from "../api/context.js";
import { addPortMapping, listPortMappings } from "../api/portmap.js";
import { createPointToPointTap, deleteTap, listTaps } from "../api/tap.js";
import { guestBootArg, guestMac } from "../guest/index.js";
import { linkGet, linkSetUp } from "../kernel/netlink/index.js";

const INNER = "MVNET_DEMO_GUEST_INNER";
const VMM_UID = 4242;
const HOST_IP = "10.200.0.1";
const GUEST_IP = "10.200.0.2";
const TAP = "mvdemo0";

/** Where the guest's kernel and initramfs are, or why they cannot be found. */
function findGuest(): { kernel: string; initrd: string } | string {
  const cache = process.env.MVNET_E2E_CACHE ?? join(homedir(), ".cache", "microvm-net");
  let kernel = process.env.MVNET_GUEST_KERNEL;
  if (!kernel) {
    const dir = join(cache, "guest-kernel");
    const built = existsSync(dir)
      ? readdirSync(dir)
          .map((d) => join(dir, d, "vmlinux"))
          .filter((p) => existsSync(p))
          .sort((x, y) => statSync(y).mtimeMs - statSync(x).mtimeMs)
      : [];
    kernel = built[0];
  }
  const initrd = process.env.MVNET_GUEST_INITRD ?? join(cache, "guest-initramfs.cpio.gz");
  if (!kernel || !existsSync(kernel) || !existsSync(initrd)) {
    return `no guest kernel/initramfs in ${cache} (run \`node scripts/e2e.mjs\` once, or set MVNET_GUEST_KERNEL and MVNET_GUEST_INITRD)`;
  }
  return { kernel, initrd };
}

/** A guest driven over its serial console (the protocol of test/e2e/guest/init.sh). */
class SerialGuest {
  private out = "";
  private err = "";
  private seq = 0;
  private exited = false;
  constructor(private readonly proc: ChildProcess) {
    proc.stdout?.setEncoding("utf8");
    proc.stdout?.on("data", (d: string) => {
      this.out += d.replace(/\r/g, "");
    });
    proc.stderr?.setEncoding("utf8");
    proc.stderr?.on("data", (d: string) => {
      this.err += d;
    });
    proc.on("exit", () => {
      this.exited = true;
    });
    proc.stdin?.on("error", () => undefined);
  }
  console(): string {
    return this.out;
  }
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.out.slice(from));
      if (m) return m;
      if (this.exited || Date.now() > end)
        throw new Error(`guest: no ${re}\nQEMU said: ${this.err}\nconsole:\n${this.out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  async run(cmd: string, timeoutMs = 20_000): Promise<string> {
    const id = `d${++this.seq}`;
    const from = this.out.length;
    this.proc.stdin?.write(`${id} ${Buffer.from(cmd).toString("base64")}\n`);
    const m = await this.waitFor(
      new RegExp(`^MVNET-BEGIN ${id}\\n([\\s\\S]*?)^MVNET-END ${id} \\d+$`, "m"),
      timeoutMs,
      from,
    );
    return m[1] ?? "";
  }
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGTERM");
    await gone;
  }
}

/**
 * A VMM running as its own uid opens /dev/net/tun itself, so the node must be world-usable; distributions
 * ship it 0666 through udev, a fresh machine may have 0600. Inside the demo's private mount namespace a
 * 0666 node of our own is bound over it, as the test set-up does (scripts/netns-setup.sh); the host's
 * node is never changed.
 */
function usableTunNode(work: string): (() => void) | undefined {
  if ((statSync("/dev/net/tun").mode & 0o666) === 0o666) return undefined;
  const dir = join(work, "dev");
  mkdirSync(dir);
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr || r.error}`);
  };
  run("mount", ["-t", "tmpfs", "tmpfs", dir]); // a tmpfs allows device nodes even where /tmp is nodev
  run("mknod", ["-m", "666", join(dir, "tun"), "c", "10", "200"]);
  run("mount", ["--bind", join(dir, "tun"), "/dev/net/tun"]);
  process.stdout.write(
    "    (/dev/net/tun is not world-usable here: a 0666 node is bound over it in this namespace)\n",
  );
  return () => {
    spawnSync("umount", ["/dev/net/tun"]);
    spawnSync("umount", [dir]);
  };
}

function step(n: number, text: string): void {
  process.stdout.write(`\n[${n}] ${text}\n`);
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n")
    .concat("\n");
}

function get(host: string, port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, timeout: 5000, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => {
        body += d;
      });
      res.on("end", () => resolve(body));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

/**
 * Runs the real-guest demo; returns the exit code (0 all steps worked, 1 a step failed, 3 the
 * prerequisites are missing — the message says which).
 */
export async function runRealGuestDemo(): Promise<number> {
  const realRoot = (() => {
    try {
      return readFileSync("/proc/self/uid_map", "utf8").trim().split(/\s+/).join(" ") === "0 0 4294967295";
    } catch {
      return false;
    }
  })();
  if (!realRoot) {
    process.stderr.write("mvnet demo --guest: needs real root (QEMU runs as the TAP owner's uid)\n");
    return 3;
  }
  const qemu = spawnSync("sh", ["-c", "command -v qemu-system-x86_64"], { encoding: "utf8" }).stdout.trim();
  if (!qemu) {
    process.stderr.write(
      "mvnet demo --guest: qemu-system-x86_64 not found (apt-get install qemu-system-x86)\n",
    );
    return 3;
  }
  const found = findGuest();
  if (typeof found === "string") {
    process.stderr.write(`mvnet demo --guest: ${found}\n`);
    return 3;
  }
  if (!process.env[INNER]) {
    const r = spawnSync(
      "unshare",
      [
        "-n",
        "-m",
        "--propagation",
        "private",
        "--",
        process.execPath,
        ...process.execArgv,
        ...process.argv.slice(1),
      ],
      { stdio: "inherit", env: { ...process.env, [INNER]: "1" } },
    );
    if (r.error) throw r.error;
    return r.status ?? 1;
  }

  // The VMM uid must read kernel and initramfs, which may sit under root's 0700 home.
  const work = mkdtempSync(join(tmpdir(), "mvnet-demo-guest-"));
  chmodSync(work, 0o755);
  const stateDir = join(work, "state");
  const opts = { stateDir };
  let guest: SerialGuest | undefined;
  let unmountTun: (() => void) | undefined;
  try {
    const kernel = join(work, "vmlinux");
    const initrd = join(work, "initramfs.cpio.gz");
    copyFileSync(found.kernel, kernel);
    copyFileSync(found.initrd, initrd);
    chmodSync(kernel, 0o644);
    chmodSync(initrd, 0o644);
    process.stdout.write("mvnet demo --guest — a real Linux guest, inside a throw-away network namespace\n");
    unmountTun = usableTunNode(work);
    const ctx = context(opts);
    const lo = await linkGet(ctx.netlink, "lo");
    if (lo) await linkSetUp(ctx.netlink, lo.index);

    step(1, "bootstrap(): forwarding on, NAT and guest isolation in our nftables table");
    process.stdout.write(`    subnet ${await bootstrap(opts)}\n`);

    step(2, `createPointToPointTap("${TAP}", "${HOST_IP}", "${GUEST_IP}", uid ${VMM_UID}, gid ${VMM_UID})`);
    await createPointToPointTap(TAP, HOST_IP, GUEST_IP, VMM_UID, VMM_UID, opts);
    const tap = (await listTaps(opts)).find((t) => t.name === TAP);
    process.stdout.write(`    ${TAP}: mtu ${tap?.mtu}, up ${tap?.up}, host ${HOST_IP} peer ${GUEST_IP}\n`);

    const bootArg = guestBootArg({ guestIp: GUEST_IP, hostIp: HOST_IP, prefix: 16 });
    const mac = guestMac(GUEST_IP);
    step(3, "what the guest gets from us: its kernel boot argument and its MAC");
    process.stdout.write(`    ${bootArg}\n    mac ${mac}\n`);

    const khz = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1];
    const append = [
      "console=ttyS0 reboot=t panic=1 cryptomgr.notests",
      khz ? `tsc_early_khz=${Math.round(Number(khz) * 1000)}` : "",
      bootArg,
    ].join(" ");
    const args = [
      ...["-accel", "tcg", "-cpu", "max", "-M", "microvm,acpi=off", "-m", "128", "-smp", "1"],
      ...["-nodefaults", "-no-user-config", "-no-reboot", "-display", "none", "-serial", "stdio"],
      ...["-kernel", kernel, "-initrd", initrd, "-append", append],
      ...["-netdev", `tap,id=n0,ifname=${TAP},script=no,downscript=no,vnet_hdr=on`],
      ...["-device", `virtio-net-device,netdev=n0,mac=${mac}`],
    ];
    step(4, `QEMU -M microvm boots the guest as uid ${VMM_UID} on ${TAP} (TCG)`);
    const t0 = Date.now();
    guest = new SerialGuest(
      spawn(qemu, args, { uid: VMM_UID, gid: VMM_UID, stdio: ["pipe", "pipe", "pipe"] }),
    );
    await guest.waitFor(/^MVNET-READY/m, 90_000);
    process.stdout.write(`    guest ready after ${Date.now() - t0} ms; its kernel said:\n`);
    process.stdout.write(
      indent(
        guest
          .console()
          .split("\n")
          .filter((l) => /IP-Config|^\s+device=/.test(l))
          .join("\n"),
      ),
    );

    step(5, "inside the guest — configured by its own kernel from our boot argument:");
    process.stdout.write(
      indent(
        await guest.run("ip -4 addr show dev eth0 | grep inet; ip route; cat /sys/class/net/eth0/address"),
      ),
    );

    step(6, `addPortMapping("", 8080, "${GUEST_IP}", 80, "tcp"); the host asks 127.0.0.1:8080`);
    await addPortMapping("", 8080, GUEST_IP, 80, "tcp", opts);
    const answer = (await get("127.0.0.1", 8080, "/cgi-bin/whoami")).trim();
    process.stdout.write(`    the guest's web server answered: ${answer}\n`);

    step(7, `the guest pings the host (${HOST_IP})`);
    const ping = await guest.run(`ping -c 2 -W 2 ${HOST_IP}`);
    process.stdout.write(
      indent(
        ping
          .split("\n")
          .filter((l) => /packets|bytes from/.test(l))
          .join("\n"),
      ),
    );

    step(8, `stop the VM, deleteTap("${TAP}"), teardown(): everything of ours goes away`);
    await guest.stop();
    await deleteTap(TAP, opts);
    await teardown(opts);
    const left = (await listTaps(opts)).length + (await listPortMappings(opts)).length;
    process.stdout.write(`    TAPs and mappings left: ${left}\n`);
    return answer === `guest=${GUEST_IP} client=${HOST_IP}` && /2 packets received/.test(ping) && left === 0
      ? 0
      : 1;
  } finally {
    await guest?.stop();
    unmountTun?.();
    rmSync(work, { recursive: true, force: true });
  }
}
