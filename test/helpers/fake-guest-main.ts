// Child process of test/helpers/fake-guest.ts: plays a VMM plus its guest on one TAP.
// argv[2] is a JSON FakeGuestConfig. It opens the TAP by name as Firecracker does (tapOpen), answers
// ARP for the guest address, reports frames as JSON lines on stdout and takes JSON commands on
// stdin. It exits when stdin closes, so it never outlives its parent's pipe.
import { createInterface } from "node:readline";
import { KernelError } from "../../src/core/errors.js";
import { koffi, sysRead, sysWrite } from "../../src/kernel/ffi.js";
import { tapClose, tapOpen } from "../../src/kernel/tun.js";
import {
  ARP_REQUEST,
  arpReplyFrame,
  arpRequestFrame,
  ETHERTYPE_ARP,
  parseArp,
  parseEthernet,
  stripVnetHdr,
  summarizeIpv4,
  TCP_FLAGS,
  tcpFrame,
  udpFrame,
  withVnetHdr,
} from "./packets.js";

interface Config {
  tap: string;
  guestIp: string;
  guestMac: string;
  hostMac: string;
  /** Drop to these ids after loading every module (when the repo is not readable by that uid). */
  dropTo?: { uid: number; gid: number };
}

type Command =
  | { id: number; cmd: "udp"; src?: string; dst: string; sport: number; dport: number; payload: string }
  | {
      id: number;
      cmd: "tcp";
      src?: string;
      dst: string;
      sport: number;
      dport: number;
      flags?: string[];
      seq?: number;
      ack?: number;
    }
  | { id: number; cmd: "arp"; targetIp: string }
  | { id: number; cmd: "raw"; hex: string };

const cfg = JSON.parse(process.argv[2] as string) as Config;
const emit = (o: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};
const errorFields = (err: unknown): Record<string, unknown> =>
  err instanceof KernelError
    ? { code: err.code, errno: err.errno, syscall: err.syscall, message: err.message }
    : { code: (err as { code?: string }).code ?? "ERR", message: String((err as Error).message ?? err) };

if (cfg.dropTo) {
  process.setgroups?.([]);
  process.setgid?.(cfg.dropTo.gid);
  process.setuid?.(cfg.dropTo.uid);
}

let fd: number;
try {
  fd = tapOpen(cfg.tap, { nonBlocking: true });
} catch (err) {
  emit({ event: "open-failed", uid: process.getuid?.(), gid: process.getgid?.(), ...errorFields(err) });
  process.exit(2);
}

const send = (frame: Buffer): void => {
  sysWrite(fd, withVnetHdr(frame), `writing a frame to ${cfg.tap}`);
};

const buf = Buffer.alloc(65536 + 10);
const poll = koffi.node.poll(fd, { readable: true }, () => {
  for (;;) {
    let n: number;
    try {
      n = sysRead(fd, buf, `reading ${cfg.tap}`);
    } catch (err) {
      emit({ event: "read-error", ...errorFields(err) });
      return;
    }
    if (n < 0) return;
    handleFrame(stripVnetHdr(buf.subarray(0, n)).frame);
  }
});

function handleFrame(frame: Buffer): void {
  try {
    const eth = parseEthernet(frame);
    if (eth.etherType === ETHERTYPE_ARP) {
      const arp = parseArp(eth.payload);
      const answer = arp.op === ARP_REQUEST && arp.targetIp === cfg.guestIp;
      if (answer) send(arpReplyFrame(arp, cfg.guestMac));
      emit({ event: "arp", ...arp, answered: answer });
      return;
    }
    const s = summarizeIpv4(frame);
    if (s) emit({ event: "ipv4", ...s });
  } catch (err) {
    emit({ event: "bad-frame", hex: frame.toString("hex"), message: String(err) });
  }
}

function run(c: Command): void {
  const macs = { srcMac: cfg.guestMac, dstMac: cfg.hostMac };
  if (c.cmd === "udp") {
    send(udpFrame({ ...macs, ...c, src: c.src ?? cfg.guestIp, payload: Buffer.from(c.payload) }));
  } else if (c.cmd === "tcp") {
    const flags = (c.flags ?? ["SYN"]).reduce((m, f) => m | (TCP_FLAGS[f as keyof typeof TCP_FLAGS] ?? 0), 0);
    send(tcpFrame({ ...macs, ...c, src: c.src ?? cfg.guestIp, flags }));
  } else if (c.cmd === "arp") {
    send(arpRequestFrame(cfg.guestMac, cfg.guestIp, c.targetIp));
  } else if (c.cmd === "raw") {
    send(Buffer.from(c.hex, "hex"));
  } else {
    throw new Error(`unknown command ${JSON.stringify(c)}`);
  }
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let c: Command | undefined;
  try {
    c = JSON.parse(line) as Command;
    run(c);
    emit({ event: "done", id: c.id });
  } catch (err) {
    emit({ event: "failed", id: c?.id, ...errorFields(err) });
  }
});
rl.on("close", () => {
  poll.close();
  tapClose(fd);
  process.exit(0);
});

emit({ event: "ready", uid: process.getuid?.(), gid: process.getgid?.(), pid: process.pid });
