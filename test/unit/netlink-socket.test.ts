// NetlinkSocket's request bookkeeping (sequence numbers, ACKs, dumps, failures) against a scripted
// kernel: the cases a real kernel produces only by chance (NLM_F_DUMP_INTR, EBUSY, truncation,
// ENOBUFS, answers out of order) are replayed here on demand.
import { constants } from "node:os";
import { describe, expect, it } from "vitest";
import { KernelError, type MvnetError } from "../../src/core/errors.js";
import { attrString, decodeMessages, encodeMessage, type NlMsg } from "../../src/kernel/netlink/codec.js";
import * as C from "../../src/kernel/netlink/constants.js";
import { LoopSlice } from "../../src/kernel/netlink/loop-slice.js";
import { LOOP_SLICE_MS, type NetlinkIo, NetlinkSocket } from "../../src/kernel/netlink/socket.js";

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

  sends = 0;

  /** Each message of the datagram in turn, as netlink_rcv_skb() takes them. */
  send(buf: Buffer): void {
    this.sends++;
    for (const req of decodeMessages(buf)) {
      this.requests.push(req);
      if (this.answer) this.queue.push(...this.answer(req));
    }
  }

  sendAsync(buf: Buffer, cb: (err?: Error) => void): void {
    setTimeout(() => {
      this.send(buf);
      cb();
      this.kick();
    }, this.asyncDelayMs);
  }

  recvCalls = 0;

  recv(buf: Buffer): number {
    this.recvCalls++;
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

  it("requestAll: one datagram, an ACK asked of the last request only, one answer read", async () => {
    const k = new ScriptedKernel();
    // As netlink_rcv_skb(): an answer when asked for, or for a refusal.
    k.answer = (req) => (req.flags & C.NLM_F_ACK ? [ack(req)] : []);
    const nl = new NetlinkSocket(k);
    await nl.requestAll([
      { type: C.RTM_NEWLINK, flags: 0, body, context: "a" },
      { type: C.RTM_NEWADDR, flags: C.NLM_F_CREATE, body, context: "b" },
      { type: C.RTM_NEWNEIGH, flags: C.NLM_F_CREATE, body, context: "c" },
    ]);
    expect(k.sends).toBe(1);
    expect(k.recvCalls).toBe(1);
    expect(k.requests.map((r) => [r.type, r.flags, r.seq])).toEqual([
      [C.RTM_NEWLINK, C.NLM_F_REQUEST, 1],
      [C.RTM_NEWADDR, C.NLM_F_REQUEST | C.NLM_F_CREATE, 2],
      [C.RTM_NEWNEIGH, C.NLM_F_REQUEST | C.NLM_F_CREATE | C.NLM_F_ACK, 3],
    ]);
    expect(nl.pendingCount).toBe(0);
  });

  it("requestAll: reports the first refusal in message order; a failed send or close fails every request", async () => {
    const k = new ScriptedKernel();
    const refuse = new Map([
      [C.RTM_NEWADDR, EEXIST],
      [C.RTM_NEWNEIGH, ENODEV],
    ]);
    k.answer = (req) => {
      const errno = refuse.get(req.type) ?? 0;
      return errno || req.flags & C.NLM_F_ACK ? [ack(req, errno, errno ? `no ${req.type}` : undefined)] : [];
    };
    const nl = new NetlinkSocket(k);
    const reqs = [
      { type: C.RTM_NEWLINK, flags: 0, body, context: "link" },
      { type: C.RTM_NEWADDR, flags: 0, body, context: "addr" },
      { type: C.RTM_NEWNEIGH, flags: 0, body, context: "neigh" },
    ];
    await expect(nl.requestAll(reqs)).rejects.toMatchObject({
      code: "EEXIST",
      syscall: "RTM_NEWADDR",
      message: expect.stringMatching(/^addr: /),
    });
    expect(nl.pendingCount).toBe(0);
    refuse.clear();
    k.answer = undefined; // nothing answered inside send: the watcher reads the answer later
    const closing = nl.requestAll(reqs).catch((e: MvnetError) => e.code);
    expect(nl.pendingCount).toBe(3);
    nl.close();
    expect(await closing).toBe("ERR_NETLINK_CLOSED");
    expect(nl.pendingCount).toBe(0);
    const k2 = new ScriptedKernel();
    k2.send = () => {
      throw new KernelError("send", ENOBUFS, "netlink send");
    };
    await expect(new NetlinkSocket(k2).requestAll(reqs)).rejects.toMatchObject({ code: "ENOBUFS" });
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

  it("resumes the caller without a loop turn when the kernel answered inside send(), reading only its answer", async () => {
    const k = new ScriptedKernel();
    k.answer = (req) => [part(req, "x", 0), ack(req)];
    // A slice that never runs out, so a GC pause under load cannot defer a resumption here.
    const nl = new NetlinkSocket(k, new LoopSlice(Number.POSITIVE_INFINITY));
    let turned = false;
    setImmediate(() => {
      turned = true;
    });
    expect((await nl.request(C.RTM_GETLINK, 0, body)).map(marker)).toEqual(["x"]);
    expect(turned).toBe(false);
    // The reply and the ACK: no third, empty `recv` once the request is settled.
    expect(k.recvCalls).toBe(2);
    await Promise.all([nl.request(C.RTM_NEWLINK, 0, body), nl.request(C.RTM_NEWADDR, 0, body)]);
    expect(turned).toBe(false);
    expect(k.recvCalls).toBe(6);
  });

  it("falls back to the poll watcher when nothing is queued right after send() (EAGAIN)", async () => {
    const k = new ScriptedKernel();
    const nl = new NetlinkSocket(k);
    let settled = false;
    const p = nl.request(C.RTM_NEWADDR, 0, body).then((m) => {
      settled = true;
      return m;
    });
    expect(k.recvCalls).toBe(1); // the synchronous read found nothing
    await tick();
    await tick();
    expect(settled).toBe(false);
    expect(k.referenced).toBe(true); // the watcher keeps the process alive for the answer
    k.deliver(ack(k.requests[0] as NlMsg));
    await expect(p).resolves.toEqual([]);
    expect(nl.pendingCount).toBe(0);
  });

  it("fails the requests when the synchronous read finds the queue overflowed (ENOBUFS), then works on", async () => {
    const k = new ScriptedKernel();
    k.answer = (req) => [ack(req)];
    const nl = new NetlinkSocket(k);
    const waiting = nl.request(C.RTM_DELLINK, 0, body, { slow: true }).catch((e: unknown) => e);
    k.recvError = new KernelError("recv", ENOBUFS, "netlink receive");
    await expect(nl.request(C.RTM_NEWADDR, 0, body)).rejects.toMatchObject({ errno: ENOBUFS });
    // Answers were lost: every request then in flight fails, as none can be matched any more.
    expect(await waiting).toMatchObject({ errno: ENOBUFS });
    await expect(nl.request(C.RTM_NEWADDR, 0, body)).resolves.toEqual([]);
    expect(nl.pendingCount).toBe(0);
  });

  it("gives the event loop a turn once answered requests have held it for a slice", async () => {
    const k = new ScriptedKernel();
    // A clock that advances 0.25 ms per request, as a kernel request takes on this machine.
    let clock = 0;
    k.answer = (req) => {
      clock += 0.25;
      return [ack(req)];
    };
    const nl = new NetlinkSocket(k, new LoopSlice(LOOP_SLICE_MS, () => clock));
    let turns = 0;
    let running = true;
    const onTurn = () => {
      turns++;
      if (running) setImmediate(onTurn);
    };
    setImmediate(onTurn);
    for (let i = 0; i < 200; i++) await nl.request(C.RTM_NEWADDR, 0, body);
    running = false;
    // 200 × 0.25 ms = 50 ms of loop time in slices of 2 ms: the loop turned about once per slice
    // (two immediates each), neither once per request nor never.
    const slices = (200 * 0.25) / LOOP_SLICE_MS;
    expect(turns).toBeGreaterThanOrEqual(slices);
    expect(turns).toBeLessThanOrEqual(3 * slices);
  });
});

describe("LoopSlice", () => {
  it("runs callbacks at once within the budget, then after the loop has turned, then starts a new slice", async () => {
    let now = 0;
    const slice = new LoopSlice(2, () => now);
    const order: string[] = [];
    slice.run(() => order.push("a"));
    now = 1.9;
    slice.run(() => order.push("b"));
    expect(order).toEqual(["a", "b"]);
    now = 2.1;
    slice.run(() => order.push("late"));
    expect(order).toEqual(["a", "b"]);
    setImmediate(() => order.push("immediate queued before"));
    await new Promise((r) => setTimeout(r, 5));
    expect(order).toEqual(["a", "b", "immediate queued before", "late"]);
    // The loop has turned: a new slice, run at once again.
    now = 10;
    slice.run(() => order.push("next"));
    expect(order.at(-1)).toBe("next");
  });
});
