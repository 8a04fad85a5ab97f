// A fake VMM + guest for kernel tests: a child Node process that opens a TAP by name the way
// Firecracker does (src/kernel/tun.ts tapOpen), answers ARP for the guest address, reports every
// IPv4 frame it receives, and sends frames on command. See fake-guest-main.ts for the child side.
import { type ChildProcess, spawn } from "node:child_process";
import { constants, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { KernelError } from "../../src/core/errors.js";
import type { ArpPacket, Ipv4Summary } from "./packets.js";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, "..", "..");
const childScript = join(here, "fake-guest-main.ts");
const tsxLoader = createRequire(import.meta.url).resolve("tsx");

export interface FakeGuestOptions {
  /** TAP to open (must exist and be persistent). */
  tap: string;
  /** Run the child as this uid/gid (needs real root). Both or neither. */
  uid?: number;
  gid?: number;
  guestIp: string;
  guestMac: string;
  /** Destination MAC of frames the guest sends (the TAP's own MAC, as a guest would learn by ARP). */
  hostMac: string;
  /**
   * How the child gets its ids. "spawn": child_process `uid`/`gid` (libuv also clears supplementary
   * groups), so node, tsx and the repo must be readable by that uid. "after-load": the child starts
   * as root, loads its modules, then calls setgroups([])/setgid/setuid before opening the TAP; the
   * kernel checks the TAP owner at TUNSETIFF time, so both are the same to it. Default: "spawn" when
   * {@link unreadableFor} finds nothing, else "after-load".
   */
  dropMode?: "spawn" | "after-load";
}

/** An ARP packet the fake guest saw, and whether it answered it. */
export type ArpEvent = ArpPacket & { answered: boolean };

export interface FakeGuest {
  /** Resolves once the TAP is open; rejects with a KernelError (e.g. EPERM) if opening failed. */
  ready: Promise<void>;
  /** How the child got its ids ("root" when no uid was given). */
  mode: "root" | "spawn" | "after-load";
  /** Every IPv4 frame received so far, in order. */
  frames: Ipv4Summary[];
  /** Every ARP packet received so far. */
  arps: ArpEvent[];
  /** First IPv4 frame (already received or future) matching `pred`; rejects after `timeoutMs`. */
  waitFor(pred: (f: Ipv4Summary) => boolean, timeoutMs?: number): Promise<Ipv4Summary>;
  /** Sends a UDP datagram from the guest (src defaults to guestIp; Ethernet dst = hostMac). */
  sendUdp(d: { src?: string; dst: string; sport: number; dport: number; payload: string }): Promise<void>;
  /** Sends a TCP segment (default a SYN) from the guest. */
  sendTcp(d: {
    src?: string;
    dst: string;
    sport: number;
    dport: number;
    flags?: string[];
    seq?: number;
    ack?: number;
  }): Promise<void>;
  /** Broadcasts an ARP request from the guest for `targetIp`. */
  sendArpRequest(targetIp: string): Promise<void>;
  /** Closes the TAP descriptor and ends the child (SIGKILL after 2 s). */
  stop(): Promise<void>;
  /** The child's stderr so far (for failure messages). */
  stderr(): string;
}

function readableBy(path: string, uid: number, gid: number, need: number): boolean {
  const st = statSync(path);
  const bits = st.uid === uid ? st.mode >> 6 : st.gid === gid ? st.mode >> 3 : st.mode;
  return (bits & need) === need;
}

/**
 * Paths the child needs that `uid`/`gid` cannot read (or traverse): node, the repo, tsx, koffi's
 * native module, and every directory above them. Empty when "spawn" mode will work.
 */
export function unreadableFor(uid: number, gid: number): string[] {
  const req = createRequire(import.meta.url);
  const files = [
    process.execPath,
    childScript,
    join(repoRoot, "src", "kernel", "tun.ts"),
    join(repoRoot, "src", "kernel", "ffi.ts"),
    tsxLoader,
    req.resolve("koffi"),
  ];
  const bad = new Set<string>();
  for (const f of files) {
    if (!readableBy(f, uid, gid, constants.S_IROTH)) bad.add(f);
    for (let d = dirname(f); ; d = dirname(d)) {
      if (!readableBy(d, uid, gid, constants.S_IXOTH)) bad.add(d);
      if (d === dirname(d)) break;
    }
  }
  return [...bad];
}

/**
 * Starts the fake guest on `tap`. The TAP must exist; the host side should be up for frames to
 * flow (a TAP has carrier only while a descriptor is attached, i.e. once `ready` resolves).
 */
export function startFakeGuest(opts: FakeGuestOptions): FakeGuest {
  if ((opts.uid === undefined) !== (opts.gid === undefined))
    throw new Error("give both uid and gid, or neither");
  const ids = opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid as number } : undefined;
  const mode: FakeGuest["mode"] = !ids
    ? "root"
    : (opts.dropMode ?? (unreadableFor(ids.uid, ids.gid).length === 0 ? "spawn" : "after-load"));
  const config = {
    tap: opts.tap,
    guestIp: opts.guestIp,
    guestMac: opts.guestMac,
    hostMac: opts.hostMac,
    ...(mode === "after-load" ? { dropTo: ids } : {}),
  };
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", pathToFileURL(tsxLoader).href, childScript, JSON.stringify(config)],
    {
      cwd: repoRoot,
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, HOME: "/tmp" },
      ...(mode === "spawn" && ids ? ids : {}),
    },
  );

  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const frames: Ipv4Summary[] = [];
  const arps: ArpEvent[] = [];
  const frameWaiters = new Set<() => void>();
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let exited = false;

  let settleReady: { resolve: () => void; reject: (e: Error) => void } | undefined;
  const ready = new Promise<void>((resolve, reject) => {
    settleReady = { resolve, reject };
  });
  // A test that expects the open to fail may never await `ready` before stop(): avoid an unhandled rejection.
  ready.catch(() => {});

  createInterface({ input: child.stdout as NonNullable<typeof child.stdout> }).on("line", (line) => {
    let ev: Record<string, unknown>;
    try {
      ev = JSON.parse(line) as Record<string, unknown>;
    } catch {
      stderr += `(stdout) ${line}\n`;
      return;
    }
    switch (ev.event) {
      case "ready":
        settleReady?.resolve();
        break;
      case "open-failed":
        settleReady?.reject(
          new KernelError(
            String(ev.syscall ?? "open"),
            Number(ev.errno ?? 0),
            `fake guest (uid ${String(ev.uid)}) opening TAP ${opts.tap}`,
          ),
        );
        break;
      case "ipv4":
        frames.push(ev as unknown as Ipv4Summary);
        for (const w of frameWaiters) w();
        break;
      case "arp":
        arps.push(ev as unknown as ArpEvent);
        break;
      case "done":
        pending.get(ev.id as number)?.resolve();
        pending.delete(ev.id as number);
        break;
      case "failed":
        pending.get(ev.id as number)?.reject(new Error(`fake guest command failed: ${String(ev.message)}`));
        pending.delete(ev.id as number);
        break;
      default:
        stderr += `(event) ${line}\n`;
    }
  });

  const exitedPromise = new Promise<void>((resolve) => {
    child.on("exit", (code, signal) => {
      exited = true;
      const err = new Error(`fake guest exited (code ${code}, signal ${signal}); stderr:\n${stderr}`);
      settleReady?.reject(err);
      for (const p of pending.values()) p.reject(err);
      pending.clear();
      for (const w of frameWaiters) w();
      resolve();
    });
  });

  const command = (c: Record<string, unknown>): Promise<void> => {
    if (exited) return Promise.reject(new Error("fake guest has exited"));
    const id = nextId++;
    return new Promise<void>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      child.stdin?.write(`${JSON.stringify({ ...c, id })}\n`);
    });
  };

  return {
    ready,
    mode,
    frames,
    arps,
    waitFor(pred, timeoutMs = 5000) {
      return new Promise<Ipv4Summary>((resolve, reject) => {
        let seen = 0;
        const check = (): void => {
          for (; seen < frames.length; seen++) {
            const f = frames[seen] as Ipv4Summary;
            if (pred(f)) {
              done();
              resolve(f);
              return;
            }
          }
          if (exited) {
            done();
            reject(new Error(`fake guest exited before a matching frame; stderr:\n${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no matching frame within ${timeoutMs} ms; received: ${JSON.stringify(frames)}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          frameWaiters.delete(check);
        };
        frameWaiters.add(check);
        check();
      });
    },
    sendUdp: (d) => command({ cmd: "udp", ...d }),
    sendTcp: (d) => command({ cmd: "tcp", ...d }),
    sendArpRequest: (targetIp) => command({ cmd: "arp", targetIp }),
    async stop() {
      if (!exited) {
        child.stdin?.end();
        const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
        await exitedPromise;
        clearTimeout(timer);
      }
    },
    stderr: () => stderr,
  };
}
