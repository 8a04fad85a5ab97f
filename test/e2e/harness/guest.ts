/**
 * One real guest: QEMU `-M microvm` booting the e2e kernel and initramfs on a TAP made by our library,
 * as the TAP's owner uid (never root: QEMU running as root silently creates a missing TAP). The guest
 * is driven over its serial console (see guest/init.sh), and everything it prints is kept.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { guestBootArg, guestMac } from "../../../src/guest/index.js";
import type { Artifacts } from "./artifacts.js";

/** What a guest is booted with. Addresses reach the guest only through the boot argument and MAC. */
export interface GuestSpec {
  /** A short label for logs, e.g. `vm-a`. */
  name: string;
  /** The TAP (made by createPointToPointTap) QEMU opens by name. None: the guest has no NIC. */
  tap?: string;
  guestIp: string;
  hostIp: string;
  /** Prefix length of the guest subnet. */
  prefix: number;
  /** The uid/gid QEMU runs as: the TAP's owner. */
  uid: number;
  gid: number;
  /** Replaces the boot argument our library renders (only to show what a wrong one does). */
  bootArgOverride?: string;
  /** The guest NIC's MAC (e.g. what HostNetwork.attach returned). Default: guestMac(guestIp). */
  mac?: string;
  /** Guest memory, MiB. Default 128 (64 panics at boot). */
  memMiB?: number;
}

/** The output and exit status of one command run in the guest. */
export interface GuestResult {
  rc: number;
  out: string;
}

const READY = /^MVNET-READY uptime=([0-9.]+)$/m;

/** The host's CPU clock in kHz: a TCG guest calibrating its TSC against the PIT hangs on a busy host. */
function tscKhz(): number | undefined {
  const m = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
  return m ? Math.round(Number(m[1]) * 1000) : undefined;
}

/** A running guest. Make one with {@link GuestVm.boot}; always {@link GuestVm.stop} it. */
export class GuestVm {
  /** The `ip=` argument the guest's kernel was given. */
  readonly bootArg: string;
  /** The MAC of the guest's NIC. */
  readonly mac: string;
  /** QEMU's argv, for the failure report. */
  readonly argv: string[];
  /** ms from spawning QEMU to the guest's ready line (init reached, servers started). */
  readyMs = Number.NaN;
  /** The guest's own uptime (s) when it printed its ready line. */
  guestUptimeAtReady = Number.NaN;
  private serial = "";
  private stderr = "";
  private exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private seq = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private waiters = new Set<() => void>();
  private readonly proc: ChildProcess;
  readonly startedAt: number;

  private constructor(
    readonly spec: GuestSpec,
    readonly artifacts: Artifacts,
  ) {
    this.bootArg =
      spec.bootArgOverride ??
      guestBootArg({ guestIp: spec.guestIp, hostIp: spec.hostIp, prefix: spec.prefix });
    this.mac = spec.mac ?? guestMac(spec.guestIp);
    const khz = tscKhz();
    const append = [
      "console=ttyS0",
      "reboot=t",
      "panic=1",
      "cryptomgr.notests",
      ...(artifacts.accel === "tcg" && khz ? [`tsc_early_khz=${khz}`] : []),
      // Without a NIC the kernel's ip= would wait for a device that never comes.
      ...(spec.tap !== undefined ? [this.bootArg] : []),
    ].join(" ");
    this.argv = [
      "-accel",
      artifacts.accel,
      "-cpu",
      artifacts.accel === "kvm" ? "host" : "max",
      "-M",
      // No ACPI: QEMU then announces each virtio-mmio device on the kernel command line
      // (`virtio_mmio.device=`, its auto-kernel-cmdline), which is how Firecracker does it.
      "microvm,acpi=off",
      "-m",
      String(spec.memMiB ?? 128),
      "-smp",
      "1",
      "-nodefaults",
      "-no-user-config",
      "-no-reboot",
      "-display",
      "none",
      "-serial",
      "stdio",
      "-kernel",
      artifacts.kernel,
      "-initrd",
      artifacts.initrd,
      "-append",
      append,
    ];
    if (spec.tap !== undefined) {
      this.argv.push(
        "-netdev",
        // vnet_hdr=on: QEMU opens the TAP with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, as Firecracker does.
        `tap,id=n0,ifname=${spec.tap},script=no,downscript=no,vnet_hdr=on`,
        "-device",
        `virtio-net-device,netdev=n0,mac=${this.mac}`,
      );
    }
    this.startedAt = performance.now();
    // uid/gid make libuv call setgroups(0), setgid, setuid before exec: QEMU keeps no capability and
    // no supplementary group of ours.
    this.proc = spawn(artifacts.qemu, this.argv, {
      uid: spec.uid,
      gid: spec.gid,
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.proc.stdout?.setEncoding("utf8");
    this.proc.stderr?.setEncoding("utf8");
    this.proc.stdout?.on("data", (d: string) => {
      this.serial += d.replace(/\r/g, "");
      this.wake();
    });
    this.proc.stderr?.on("data", (d: string) => {
      this.stderr += d;
    });
    this.proc.stdin?.on("error", () => undefined); // EPIPE after QEMU exited: reported through `exited`
    this.proc.on("exit", (code, signal) => {
      this.exited = { code, signal };
      this.wake();
    });
    this.proc.on("error", (e) => {
      this.stderr += `spawn error: ${e.message}\n`;
      this.exited = { code: -1, signal: null };
      this.wake();
    });
  }

  /**
   * Starts QEMU and waits until the guest's init says it is ready.
   * @throws for uid or gid 0; with the console and QEMU's stderr when QEMU exits first or `timeoutMs` passes.
   */
  static async boot(spec: GuestSpec, artifacts: Artifacts, timeoutMs = 90_000): Promise<GuestVm> {
    // As root QEMU would silently create a missing TAP (down, unaddressed) and the test would pass
    // against a device we never made; a VMM runs as its own uid anyway.
    if (spec.uid === 0 || spec.gid === 0) throw new Error(`guest ${spec.name}: QEMU must not run as root`);
    const vm = new GuestVm(spec, artifacts);
    try {
      const m = await vm.waitFor(() => READY.exec(vm.serial), timeoutMs, "the ready line");
      vm.readyMs = performance.now() - vm.startedAt;
      vm.guestUptimeAtReady = Number(m[1]);
    } catch (e) {
      await vm.stop();
      throw e;
    }
    return vm;
  }

  /** QEMU's pid. */
  get pid(): number {
    return this.proc.pid ?? -1;
  }

  /** Everything the guest printed on its serial console so far (CR removed). */
  console(): string {
    return this.serial;
  }

  /** A report for a failed test: QEMU's command line, its stderr and the whole console. */
  report(): string {
    return [
      `----- guest ${this.spec.name} (${this.spec.guestIp} on ${this.spec.tap ?? "no NIC"}, pid ${this.pid}) -----`,
      `qemu ${this.argv.join(" ")}`,
      `exit: ${this.exited ? JSON.stringify(this.exited) : "running"}`,
      `qemu stderr:\n${this.stderr.trimEnd()}`,
      `serial console:\n${this.serial.trimEnd()}`,
      `----- end of guest ${this.spec.name} -----`,
    ].join("\n");
  }

  private wake(): void {
    for (const w of this.waiters) w();
  }

  private waitFor<T>(check: () => T | null | undefined | false, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        this.waiters.delete(poll);
        if (timer) clearTimeout(timer);
      };
      const poll = () => {
        const v = check();
        if (v) {
          done();
          resolve(v);
        } else if (this.exited) {
          done();
          reject(new Error(`guest ${this.spec.name}: QEMU exited before ${what}\n${this.report()}`));
        }
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`guest ${this.spec.name}: no ${what} after ${timeoutMs} ms\n${this.report()}`));
      }, timeoutMs);
      this.waiters.add(poll);
      poll();
    });
  }

  /**
   * Runs a shell command in the guest (busybox sh, stdin /dev/null, stderr merged) and returns its
   * output and exit status. Commands run one at a time, in call order.
   * @throws when the guest does not finish it within `timeoutMs` or QEMU exits.
   */
  run(command: string, timeoutMs = 30_000): Promise<GuestResult> {
    const next = this.queue.then(() => this.runNow(command, timeoutMs));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async runNow(command: string, timeoutMs: number): Promise<GuestResult> {
    const id = `c${++this.seq}`;
    const from = this.serial.length;
    const end = new RegExp(`^MVNET-BEGIN ${id}\\n([\\s\\S]*?)^MVNET-END ${id} (\\d+)$`, "m");
    this.proc.stdin?.write(`${id} ${Buffer.from(command).toString("base64")}\n`);
    const m = await this.waitFor(() => end.exec(this.serial.slice(from)), timeoutMs, `end of "${command}"`);
    return { rc: Number(m[2]), out: m[1] ?? "" };
  }

  /** Like {@link run}, but throws unless the command exits 0. */
  async ok(command: string, timeoutMs?: number): Promise<string> {
    const r = await this.run(command, timeoutMs);
    if (r.rc !== 0) throw new Error(`guest ${this.spec.name}: "${command}" exited ${r.rc}:\n${r.out}`);
    return r.out;
  }

  /**
   * One counter of the guest kernel's /proc/net/snmp, e.g. `snmp("Ip", "InReceives")` (every IPv4
   * packet the guest received) or `snmp("Icmp", "InEchos")`.
   * @throws when the group or field does not exist.
   */
  async snmp(group: string, field: string): Promise<number> {
    const lines = (await this.ok("cat /proc/net/snmp")).split("\n").filter((l) => l.startsWith(`${group}:`));
    const names = (lines[0] ?? "").trim().split(/\s+/);
    const values = (lines[1] ?? "").trim().split(/\s+/);
    const i = names.indexOf(field);
    if (i < 1 || values[i] === undefined)
      throw new Error(`no ${group} ${field} in the guest's /proc/net/snmp`);
    return Number(values[i]);
  }

  /** Stops QEMU (SIGTERM, then SIGKILL after 3 s) and waits for it to exit. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.exited || this.proc.pid === undefined) return;
    const gone = new Promise<void>((resolve) => this.proc.once("exit", () => resolve()));
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 3000);
    await gone;
    clearTimeout(timer);
  }
}
