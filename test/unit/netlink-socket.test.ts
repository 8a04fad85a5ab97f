// NetlinkSocket's request bookkeeping (sequence numbers, ACKs, dumps, failures) against a scripted
// kernel: the cases a real kernel produces only by chance (NLM_F_DUMP_INTR, EBUSY, truncation,
// ENOBUFS, answers out of order) are replayed here on demand.
import { constants } from "node:os";
import { describe, expect, it } from "vitest";
import { KernelError } from "../../src/core/errors.js";
import { attrString, decodeMessages, encodeMessage, type NlMsg } from "../../src/kernel/netlink/codec.js";
import * as C from "../../src/kernel/netlink/constants.js";
import { type NetlinkIo, NetlinkSocket } from "../../src/kernel/netlink/socket.js";

const { EBUSY, EEXIST, EINTR, EMSGSIZE, ENOBUFS, ENODEV, ENOENT } = constants.errno;

/** NLMSG_ERROR answering `req`: capped echo, optional ext-ack text (netlink_ack()). */
function ack(req: NlMsg, errno = 0, text?: string): Buffer {
  const echo = Buffer.alloc(4 + C.NLMSG_HDRLEN);
  echo.writeInt32LE(-errno, 0);
  echo.writeUInt32LE(C.NLMSG_HDRLEN + req.payload.length, 4);
  echo.writeUInt16LE(req.type, 8);
  echo.writeUInt16LE(req.flags, 10);
  echo.writeUInt32LE(req.seq, 12);
  const tlv = text ? attrString(C.NLMSGERR_ATTR_MSG, text) : Buffer.alloc(0);
  const flags = C.NLM_F_CAPPED | (text ? C.NLM_F_ACK_TLVS : 0);
  return encodeMessage({ type: C.NLMSG_ERROR, flags, seq: req.seq }, Buffer.concat([echo, tlv]));
}

/** One dump part (or GET reply) carrying a marker string. */
function part(req: NlMsg, marker: string, flags = C.NLM_F_MULTI): Buffer {
  return encodeMessage({ type: C.RTM_NEWLINK, flags, seq: req.seq }, attrString(C.IFLA_IFNAME, marker));
}

/** NLMSG_DONE with status 0 or -errno (netlink_dump_done()). */
function done(req: NlMsg, errno = 0, text?: string): Buffer {
  const status = Buffer.alloc(4);
  status.writeInt32LE(-errno);
  const tlv = text ? attrString(C.NLMSGERR_ATTR_MSG, text) : Buffer.alloc(0);
  const flags = C.NLM_F_MULTI | (text ? C.NLM_F_ACK_TLVS : 0);
  return encodeMessage({ type: C.NLMSG_DONE, flags, seq: req.seq }, Buffer.concat([status, tlv]));
}

const marker = (m: NlMsg) => m.payload.toString("utf8", 4, m.payload.indexOf(0, 4));

/**
 * A scripted kernel. `answer` (when set) replies to each request as it is sent, as the real kernel
 * does inside send(); otherwise requests wait in `requests` until the test calls `deliver`.
 */
class ScriptedKernel implements NetlinkIo {
  readonly fd = -1;
  readonly requests: NlMsg[] = [];
  readonly queue: Buffer[] = [];
  answer: ((req: NlMsg) => Buffer[]) | undefined;
  asyncDelayMs = 5;
  recvError: KernelError | undefined;
  referenced = false;
  watchClosed = false;
  closes = 0;
  private onReadable: ((err?: Error) => void) | undefined;

  send(buf: Buffer): void {
    const [req] = decodeMessages(buf);
    this.requests.push(req as NlMsg);
    if (this.answer) this.queue.push(...this.answer(req as NlMsg));
  }

  sendAsync(buf: Buffer, cb: (err?: Error) => void): void {
    setTimeout(() => {
      this.send(buf);
      cb();
      this.kick();
    }, this.asyncDelayMs);
  }

  recv(buf: Buffer): number {
    if (this.recvError) {
      const e = this.recvError;
      this.recvError = undefined;
      throw e;
    }
    const d = this.queue.shift();
    if (!d) return -1;
    d.copy(buf, 0, 0, Math.min(d.length, buf.length));
    return d.length;
  }

  watch(cb: (err?: Error) => void) {
    this.onReadable = cb;
    return {
      ref: () => {
        this.referenced = true;
      },
      unref: () => {
        this.referenced = false;
      },
      close: () => {
        this.watchClosed = true;
      },
    };
  }

  close(): void {
    this.closes++;
  }

  /** Queues datagrams and signals readability, as the poll handle would. */
  deliver(...datagrams: Buffer[]): void {
    this.queue.push(...datagrams);
    this.kick();
  }

  kick(): void {
    setImmediate(() => this.onReadable?.());
  }
}

const outcome = (p: Promise<unknown>) =>
  p.then(
    (v) => (v as NlMsg[]).map(marker),
    (e: KernelError) => `${e.code}${e.kernelMessage ? `: ${e.kernelMessage}` : ""}`,
  );
const body = Buffer.alloc(C.IFINFOMSG_LEN);
const tick = () => new Promise((r) => setImmediate(r));

describe("NetlinkSocket bookkeeping", () => {
  it("sends NLM_F_REQUEST|NLM_F_ACK plus the caller's flags, with fresh sequence numbers", async () => {
    const k = new ScriptedKernel();
    k.answer = (req) => [req.type === C.RTM_GETLINK ? done(req) : ack(req)];
    const nl = new NetlinkSocket(k);
    await nl.request(C.RTM_NEWADDR, C.NLM_F_CREATE | C.NLM_F_EXCL, body);
    await nl.request(C.RTM_NEWADDR, 0, body);
    expect(await nl.dump(C.RTM_GETLINK, body)).toEqual([]);
    expect(k.requests.map((r) => [r.type, r.flags, r.seq])).toEqual([
      [C.RTM_NEWADDR, 0x605, 1],
      [C.RTM_NEWADDR, C.NLM_F_REQUEST | C.NLM_F_ACK, 2],
      [C.RTM_GETLINK, C.NLM_F_REQUEST | C.NLM_F_DUMP, 3],
    ]);
  });

  it("matches answers to requests by sequence number, whatever order they arrive in", async () => {
    const k = new ScriptedKernel();
    const nl = new NetlinkSocket(k);
    const results = Promise.all([
      outcome(nl.request(C.RTM_NEWADDR, 0, body)),
      outcome(nl.request(C.RTM_GETLINK, 0, body)),
      outcome(nl.request(C.RTM_DELLINK, 0, body, { slow: true })),
      outcome(nl.request(C.RTM_NEWLINK, 0, body)),
    ]);
    await new Promise((r) => setTimeout(r, 20)); // the slow one has been sent by now
    const [a, g, d, l] = k.requests.sort((x, y) => x.seq - y.seq) as NlMsg[];
    k.deliver(ack(l as NlMsg, EEXIST, "nope"), ack(d as NlMsg, ENODEV));
    k.deliver(part(g as NlMsg, "lo", 0), ack(g as NlMsg), ack(a as NlMsg));
    expect(await results).toEqual([[], ["lo"], "ENODEV", "EEXIST: nope"]);
    expect(nl.pendingCount).toBe(0);
  });

  it("names the request type, the errno and the kernel's text in the error", async () => {
    const k = new ScriptedKernel();
    k.answer = (req) => [ack(req, EEXIST, "ipv4: Address already assigned")];
    const nl = new NetlinkSocket(k);
    const err = await nl.request(C.RTM_NEWADDR, 0, body, { context: "addrAdd x" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelError);
    expect(err).toMatchObject({
      syscall: "RTM_NEWADDR",
      errno: EEXIST,
      code: "EEXIST",
      kernelMessage: "ipv4: Address already assigned",
      message: "addrAdd x: RTM_NEWADDR failed: EEXIST: ipv4: Address already assigned",
    });
  });

  it("collects a multipart dump until NLMSG_DONE, and reports an error NLMSG_DONE carries", async () => {
    const k = new ScriptedKernel();
    let n = 0;
    k.answer = (req) =>
      ++n === 1
        ? [Buffer.concat([part(req, "a"), part(req, "b")]), Buffer.concat([part(req, "c"), done(req)])]
        : [done(req, ENOENT, "ipv4: FIB table does not exist")];
    const nl = new NetlinkSocket(k);
    expect((await nl.dump(C.RTM_GETLINK, body)).map(marker)).toEqual(["a", "b", "c"]);
    await expect(nl.dump(C.RTM_GETROUTE, body)).rejects.toMatchObject({
      syscall: "RTM_GETROUTE",
      errno: ENOENT,
      kernelMessage: "ipv4: FIB table does not exist",
    });
  });

  it("restarts a dump the kernel flagged NLM_F_DUMP_INTR and keeps only the consistent one", async () => {
    const k = new ScriptedKernel();
    let n = 0;
    k.answer = (req) =>
      ++n === 1
        ? [part(req, "old1"), part(req, "old2", C.NLM_F_MULTI | C.NLM_F_DUMP_INTR), done(req)]
        : [part(req, "new1"), part(req, "new2"), done(req)];
    const nl = new NetlinkSocket(k);
    expect((await nl.dump(C.RTM_GETLINK, body)).map(marker)).toEqual(["new1", "new2"]);
    expect(k.requests).toHaveLength(2);

    // The flag may come on NLMSG_DONE alone.
    n = 0;
    k.answer = (req) => {
      if (++n > 1) return [part(req, "fresh"), done(req)];
      const d = done(req);
      d.writeUInt16LE(C.NLM_F_MULTI | C.NLM_F_DUMP_INTR, 6);
      return [part(req, "stale"), d];
    };
    expect((await nl.dump(C.RTM_GETLINK, body)).map(marker)).toEqual(["fresh"]);
  });

  it("gives up with EINTR after three inconsistent dumps in a row", async () => {
    const k = new ScriptedKernel();
    k.answer = (req) => [part(req, "x", C.NLM_F_MULTI | C.NLM_F_DUMP_INTR), done(req)];
    const nl = new NetlinkSocket(k);
    await expect(nl.dump(C.RTM_GETLINK, body, { context: "linkList" })).rejects.toMatchObject({
      errno: EINTR,
      syscall: "RTM_GETLINK",
    });
    expect(k.requests).toHaveLength(3);
  });

  it("waits out EBUSY (another dump still running on the socket) and retries", async () => {
    const k = new ScriptedKernel();
    let n = 0;
    k.answer = (req) => (++n <= 2 ? [ack(req, EBUSY)] : [part(req, "ok"), done(req)]);
    const nl = new NetlinkSocket(k);
    expect((await nl.dump(C.RTM_GETADDR, body)).map(marker)).toEqual(["ok"]);
    expect(k.requests).toHaveLength(3);
  });

  it("runs dumps on one socket one at a time", async () => {
    const k = new ScriptedKernel();
    const nl = new NetlinkSocket(k);
    const first = nl.dump(C.RTM_GETLINK, body);
    const second = nl.dump(C.RTM_GETADDR, body);
    await tick();
    expect(k.requests.map((r) => r.type)).toEqual([C.RTM_GETLINK]);
    const r1 = k.requests[0] as NlMsg;
    k.deliver(part(r1, "link"), done(r1));
    expect((await first).map(marker)).toEqual(["link"]);
    await tick();
    expect(k.requests.map((r) => r.type)).toEqual([C.RTM_GETLINK, C.RTM_GETADDR]);
    const r2 = k.requests[1] as NlMsg;
    k.deliver(part(r2, "addr"), done(r2));
    expect((await second).map(marker)).toEqual(["addr"]);
  });

  it("fails only the request whose answer was truncated, then reads larger datagrams", async () => {
    const k = new ScriptedKernel();
    const nl = new NetlinkSocket(k);
    const big = nl.request(C.RTM_GETLINK, 0, body);
    const small = nl.request(C.RTM_NEWADDR, 0, body);
    const [rb, rs] = k.requests as [NlMsg, NlMsg];
    const huge = (req: NlMsg) =>
      encodeMessage({ type: C.RTM_NEWLINK, flags: 0, seq: req.seq }, Buffer.alloc(70_000, 0x61));
    k.deliver(Buffer.concat([huge(rb), ack(rb)]), ack(rs));
    await expect(big).rejects.toMatchObject({ errno: EMSGSIZE });
    await expect(small).resolves.toEqual([]);

    const again = nl.request(C.RTM_GETLINK, 0, body);
    const r3 = k.requests[2] as NlMsg;
    k.deliver(Buffer.concat([huge(r3), ack(r3)]));
    const msgs = await again;
    expect(msgs[0]?.payload.length).toBe(70_000);
  });

  it("fails every pending request when the receive queue overflowed (ENOBUFS), then works on", async () => {
    const k = new ScriptedKernel();
    const nl = new NetlinkSocket(k);
    const a = nl.request(C.RTM_NEWADDR, 0, body);
    const b = nl.dump(C.RTM_GETLINK, body);
    await tick();
    k.recvError = new KernelError("recv", ENOBUFS, "netlink receive");
    k.kick();
    await expect(a).rejects.toMatchObject({ errno: ENOBUFS });
    await expect(b).rejects.toMatchObject({ errno: ENOBUFS });
    k.answer = (req) => [ack(req)];
    await expect(nl.request(C.RTM_NEWADDR, 0, body)).resolves.toEqual([]);
  });

  it("holds the event loop only while requests are pending", async () => {
    const k = new ScriptedKernel();
    const nl = new NetlinkSocket(k);
    expect(k.referenced).toBe(false);
    const p = nl.request(C.RTM_NEWADDR, 0, body);
    expect(k.referenced).toBe(true);
    k.deliver(ack(k.requests[0] as NlMsg));
    await p;
    expect(k.referenced).toBe(false);
  });

  it("close() fails pending and later requests, and closes the descriptor after the last slow send", async () => {
    const k = new ScriptedKernel();
    k.asyncDelayMs = 30;
    const nl = new NetlinkSocket(k);
    const slow = nl.request(C.RTM_DELLINK, 0, body, { slow: true });
    const fast = nl.request(C.RTM_NEWADDR, 0, body);
    nl.close();
    nl.close();
    await expect(slow).rejects.toMatchObject({ code: "ERR_NETLINK_CLOSED" });
    await expect(fast).rejects.toMatchObject({ code: "ERR_NETLINK_CLOSED" });
    await expect(nl.request(C.RTM_NEWADDR, 0, body)).rejects.toMatchObject({ code: "ERR_NETLINK_CLOSED" });
    await expect(nl.dump(C.RTM_GETLINK, body)).rejects.toMatchObject({ code: "ERR_NETLINK_CLOSED" });
    expect(k.watchClosed).toBe(true);
    expect(k.closes).toBe(0); // the slow send still uses the descriptor
    await new Promise((r) => setTimeout(r, 50));
    expect(k.closes).toBe(1);
    expect(nl.closed).toBe(true);
  });

  it("reports a failed send as the request's failure", async () => {
    const k = new ScriptedKernel();
    k.send = () => {
      throw new KernelError("send", constants.errno.EBADF, "netlink send");
    };
    const nl = new NetlinkSocket(k);
    await expect(nl.request(C.RTM_NEWADDR, 0, body, { context: "addrAdd y" })).rejects.toMatchObject({
      syscall: "send",
      errno: constants.errno.EBADF,
      message: "addrAdd y (RTM_NEWADDR): send failed: EBADF",
    });
    expect(nl.pendingCount).toBe(0);
  });
});
