/**
 * The guest side of `mvnet demo`: opens a TAP by name exactly as a VMM does, answers ARP for the guest
 * address and reports the first TCP segment that arrives. Frames carry a 10-byte virtio_net_hdr first
 * (IFF_VNET_HDR, default header size; include/uapi/linux/virtio_net.h).
 */
import { koffi, sysRead, sysWrite } from "../kernel/ffi.js";
import { tapClose, tapOpen } from "../kernel/tun.js";

const VNET_HDR = 10;

/** A TCP segment as seen by the guest. */
export interface SeenTcp {
  src: string;
  dst: string;
  sport: number;
  dport: number;
}

const ip = (b: Buffer, o: number) => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
const ipBytes = (s: string) => Buffer.from(s.split(".").map(Number));
const macBytes = (s: string) => Buffer.from(s.split(":").map((h) => Number.parseInt(h, 16)));

/** Watches `tap` as the guest `guestIp`/`guestMac`. Call `close()` when done. */
export function watchTapAsGuest(tap: string, guestIp: string, guestMac: string) {
  const fd = tapOpen(tap, { nonBlocking: true });
  const buf = Buffer.alloc(65536 + VNET_HDR);
  let resolveTcp: ((t: SeenTcp) => void) | undefined;
  const seen: SeenTcp[] = [];

  const onFrame = (f: Buffer) => {
    const type = f.readUInt16BE(12);
    if (type === 0x0806 && f.readUInt16BE(20) === 1 && ip(f, 38) === guestIp) {
      const reply = Buffer.alloc(VNET_HDR + 42);
      const e = reply.subarray(VNET_HDR);
      f.copy(e, 0, 6, 12); // to the asker
      macBytes(guestMac).copy(e, 6);
      e.writeUInt16BE(0x0806, 12);
      e.writeUInt16BE(1, 14); // Ethernet
      e.writeUInt16BE(0x0800, 16); // IPv4
      e[18] = 6;
      e[19] = 4;
      e.writeUInt16BE(2, 20); // reply
      macBytes(guestMac).copy(e, 22);
      ipBytes(guestIp).copy(e, 28);
      f.copy(e, 32, 22, 32); // asker's MAC and IP
      sysWrite(fd, reply, "demo guest: ARP reply");
    } else if (type === 0x0800 && f[23] === 6) {
      const ihl = ((f[14] ?? 0) & 15) * 4;
      const t = {
        src: ip(f, 26),
        dst: ip(f, 30),
        sport: f.readUInt16BE(14 + ihl),
        dport: f.readUInt16BE(16 + ihl),
      };
      seen.push(t);
      resolveTcp?.(t);
    }
  };

  const poll = koffi.node.poll(fd, { readable: true, writable: false, disconnect: false }, () => {
    for (;;) {
      const n = sysRead(fd, buf, "demo guest: read");
      if (n < 0) return;
      if (n > VNET_HDR + 14) onFrame(Buffer.from(buf.subarray(VNET_HDR, n)));
    }
  });

  return {
    /** Resolves with the first TCP segment seen, or undefined after `timeoutMs`. */
    firstTcp(timeoutMs: number): Promise<SeenTcp | undefined> {
      if (seen[0]) return Promise.resolve(seen[0]);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(undefined), timeoutMs);
        resolveTcp = (t) => {
          clearTimeout(timer);
          resolve(t);
        };
      });
    },
    close(): void {
      poll.close();
      tapClose(fd);
    },
  };
}
