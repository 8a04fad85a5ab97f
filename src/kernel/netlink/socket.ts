/**
 * A non-blocking NETLINK_ROUTE socket: sequence numbers, ACKs, dumps and extended-ack errors.
 *
 * Why it is built this way (GUIDE §2–3, research/native-access.md §1–2):
 * - The kernel executes a request inside `send()`. Fast requests (address, link flags, dumps: well
 *   under 1 ms) are sent on the loop thread; slow ones (RTM_DELLINK waits one RCU grace period,
 *   ~16 ms) go through koffi's `.async` on libuv's pool, so timers keep running.
 * - rtnetlink answers a fast request inside `send()` (netlink_unicast_kernel() → rtnetlink_rcv(),
 *   under rtnl_lock), so right after `send()` the answer is read with a non-blocking `recv` and the
 *   caller resumes without waiting for a loop turn (see loop-slice.ts for how the loop still gets
 *   its turns). When nothing is queued yet (EAGAIN: a protocol that answers later), the request
 *   waits for the poll watcher below, as replies to slow requests always do.
 * - Replies are otherwise read only when libuv says the socket is readable (`koffi.node.poll`), never
 *   by a blocking `recv` parked on a pool thread (that starves `fs` and hangs `process.exit`).
 * - Replies are matched to requests by sequence number, so any number of requests may be in flight.
 *   The kernel runs at most one dump per socket (EBUSY otherwise, netlink_dump_start() in
 *   net/netlink/af_netlink.c), so dumps are queued one after another.
 */
import { endianness, constants as osConstants } from "node:os";
import { KernelError, MvnetError, UnsupportedError } from "../../core/errors.js";
import {
  koffi,
  lastErrno,
  sendAsync,
  sysBind,
  sysClose,
  sysRecv,
  sysSend,
  sysSetsockoptInt,
  sysSocket,
} from "../ffi.js";
import { decodeDone, decodeError, decodeMessages, encodeMessage, type NlError, type NlMsg } from "./codec.js";
import {
  AF_NETLINK,
  MSG_TRUNC,
  messageTypeName,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_GET_STRICT_CHK,
  NETLINK_ROUTE,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOL_NETLINK,
  SOL_SOCKET,
} from "./constants.js";
import { LoopSlice } from "./loop-slice.js";

const { EBUSY, EINTR, EMSGSIZE, ENOBUFS } = osConstants.errno;

/**
 * Receive buffer. The kernel sizes dump datagrams to at most 32 KiB (netlink_dump() in
 * net/netlink/af_netlink.c), so 64 KiB is never truncated in practice; a larger datagram is
 * detected with MSG_TRUNC and fails only the request it belonged to.
 */
const RECV_BUF_BYTES = 64 * 1024;
/** Socket receive queue: room for the ACKs of a few thousand requests sent back to back. */
const SO_RCVBUF_BYTES = 4 * 1024 * 1024;
/** How often a dump is restarted when the kernel flags it inconsistent (NLM_F_DUMP_INTR). */
const DUMP_INTR_ATTEMPTS = 3;
/** How often a dump is retried while an abandoned dump still occupies the socket (EBUSY). */
const DUMP_BUSY_ATTEMPTS = 50;
/**
 * Loop time, in ms, callers of answered requests may be resumed back to back before the event loop
 * gets a turn (loop-slice.ts). Shared by every socket of the process, as the loop is.
 */
export const LOOP_SLICE_MS = 2;
const sharedSlice = new LoopSlice(LOOP_SLICE_MS);

type PollHandle = ReturnType<typeof koffi.node.poll>;
/** koffi's real callback signature is `(status, events)`; its index.d.ts omits `status` (uv.cc OnPoll). */
type PollFn = (
  fd: number,
  opts: { readable: boolean },
  cb: (status: number, events: { readable: boolean }) => void,
) => PollHandle;

/**
 * The socket's I/O, separated from the request bookkeeping so that bookkeeping can be tested
 * against a scripted kernel. {@link NetlinkSocket.open} uses the real one (koffi → libc).
 */
export interface NetlinkIo {
  /** File descriptor, for diagnostics (-1 when there is none). */
  readonly fd: number;
  /** Sends on the calling thread. @throws KernelError. */
  send(buf: Buffer): void;
  /** Sends from libuv's thread pool; `done` gets a KernelError on failure. `buf` must stay untouched until then. */
  sendAsync(buf: Buffer, done: (err?: Error) => void): void;
  /**
   * Receives one datagram into `buf` with MSG_TRUNC semantics: returns the datagram's real length
   * (greater than `buf.length` when it was truncated), or -1 when nothing is queued.
   * @throws KernelError (ENOBUFS when the receive queue overflowed and datagrams were lost).
   */
  recv(buf: Buffer): number;
  /** Calls `onReadable` whenever data may be queued, or with an error. Starts unreferenced. */
  watch(onReadable: (err?: Error) => void): { ref(): void; unref(): void; close(): void };
  /** Closes the descriptor. Called once, after the last async send has returned. */
  close(): void;
}

function kernelIo(fd: number): NetlinkIo {
  return {
    fd,
    send: (buf) => {
      sysSend(fd, buf, "netlink send");
    },
    sendAsync: (buf, done) => {
      try {
        sendAsync(fd, buf, buf.length, 0, (err, res) => {
          // errno must be read first, inside the callback (koffi exposes the worker's errno here).
          const errno = lastErrno();
          if (err) done(err instanceof Error ? err : new Error(String(err)));
          else if (Number(res) < 0) done(new KernelError("send", errno, "netlink send"));
          else done();
        });
      } catch (err) {
        done(err as Error); // koffi refused the call itself
      }
    },
    recv: (buf) => sysRecv(fd, buf, MSG_TRUNC, "netlink receive"),
    watch: (onReadable) => {
      const h = (koffi.node.poll as unknown as PollFn)(fd, { readable: true }, (status) => {
        onReadable(status < 0 ? new KernelError("poll", -status, "netlink receive") : undefined);
      });
      h.unref();
      return h;
    },
    close: () => sysClose(fd),
  };
}

/** Options of {@link NetlinkSocket.request} and {@link NetlinkSocket.dump}. */
export interface RequestOptions {
  /**
   * The kernel takes long over this request (RTM_DELLINK): send it from libuv's thread pool so the
   * event loop is not blocked. Slow and fast requests issued together may reach the kernel in any order.
   */
  slow?: boolean;
  /** What the caller was doing, used as the error's context (e.g. `addrAdd 10.0.0.1/24 on ifindex 5`). */
  context?: string;
}

/**
 * One request for {@link NetlinkSocket.requestAll}: an RTM_* change the kernel answers with an ACK
 * only (NEW/SET/DEL, not a GET). Built by `linkSetRequest`, `addrAddRequest`, `neighAddRequest`.
 */
export interface NlRequest {
  /** RTM_* message type. */
  type: number;
  /** Extra NLM_F_* flags, e.g. `NLM_F_CREATE | NLM_F_EXCL` (REQUEST and ACK are added). */
  flags: number;
  /** The fixed header and attributes (see codec.ts). */
  body: Buffer;
  /** What the caller was doing, used as the error's context. */
  context: string;
}

interface Pending {
  type: number;
  dump: boolean;
  context: string;
  msgs: NlMsg[];
  interrupted: boolean;
  /** Earlier requests of the same datagram that asked no ACK: this one's answer settles them. */
  covers?: number[];
  resolve(r: { msgs: NlMsg[]; interrupted: boolean }): void;
  reject(err: Error): void;
}

/** A failed send() names the request it carried in its context. */
function sendError(err: Error, type: number, context: string): Error {
  if (!(err instanceof KernelError)) return err;
  return new KernelError(err.syscall, err.errno, `${context} (${messageTypeName(type)})`);
}

function closedError(): MvnetError {
  return new MvnetError("ERR_NETLINK_CLOSED", "netlink socket is closed");
}

/**
 * An rtnetlink socket (AF_NETLINK, NETLINK_ROUTE) with NETLINK_EXT_ACK, NETLINK_CAP_ACK and
 * NETLINK_GET_STRICT_CHK set. Needs Linux ≥ 4.20 (strict checking). It lives in the network
 * namespace of the thread that opened it; every request, whichever thread sends it, acts there.
 *
 * Idle (no request pending) it does not keep the process alive. `close()` releases it.
 */
export class NetlinkSocket {
  /** The socket's file descriptor (for diagnostics; do not read from it). */
  readonly fd: number;
  private readonly io: NetlinkIo;
  private watcher: ReturnType<NetlinkIo["watch"]> | undefined;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private rbuf = Buffer.alloc(RECV_BUF_BYTES);
  private dumpChain: Promise<unknown> = Promise.resolve();
  private asyncSends = 0;
  private closedFlag = false;
  private readonly slice: LoopSlice;

  /**
   * Wraps an already configured socket. Tests pass a scripted {@link NetlinkIo} (and may pass their
   * own {@link LoopSlice}); others use {@link open}.
   * @param slice how answered requests resume their callers; default: the process-wide slice of
   *   {@link LOOP_SLICE_MS}.
   */
  constructor(io: NetlinkIo, slice: LoopSlice = sharedSlice) {
    this.io = io;
    this.slice = slice;
    this.fd = io.fd;
    this.watcher = io.watch((err) => {
      if (err) this.failAll(err);
      else this.drain();
    });
  }

  /**
   * Opens a socket in the calling thread's network namespace.
   * @param protocol netlink protocol (linux/netlink.h): NETLINK_ROUTE (0, the default) or e.g.
   *   NETLINK_NETFILTER (12) for conntrack; the socket options below are generic to netlink.
   * @throws UnsupportedError on a big-endian host (the codec writes little-endian).
   * @param wrapIo for tests: interposes on the real socket's I/O (e.g. to hide answers from the
   *   synchronous read and exercise the poll path against the real kernel).
   * @throws KernelError (`socket`, `setsockopt(<n>)`, `bind`) when the kernel refuses, e.g. a kernel
   *   older than 4.20 answers ENOPROTOOPT to NETLINK_GET_STRICT_CHK.
   */
  static open(protocol: number = NETLINK_ROUTE, wrapIo?: (io: NetlinkIo) => NetlinkIo): NetlinkSocket {
    if (endianness() !== "LE")
      throw new UnsupportedError("the netlink codec supports little-endian hosts only");
    const ctx =
      protocol === NETLINK_ROUTE
        ? "opening the rtnetlink socket"
        : `opening a netlink socket (protocol ${protocol})`;
    const fd = sysSocket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol, ctx);
    try {
      sysSetsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1, ctx);
      sysSetsockoptInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1, ctx);
      sysSetsockoptInt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1, ctx);
      try {
        sysSetsockoptInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, SO_RCVBUF_BYTES, ctx);
      } catch {
        // Without CAP_NET_ADMIN: take what net.core.rmem_max allows. Draining after every synchronous
        // send keeps the queue short anyway.
        sysSetsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, SO_RCVBUF_BYTES, ctx);
      }
      // struct sockaddr_nl { sa_family_t nl_family; u16 pad; u32 nl_pid; u32 nl_groups; }:
      // pid 0 lets the kernel pick our port id, no multicast groups.
      const addr = Buffer.alloc(12);
      addr.writeUInt16LE(AF_NETLINK, 0);
      sysBind(fd, addr, ctx);
      const io = kernelIo(fd);
      return new NetlinkSocket(wrapIo ? wrapIo(io) : io);
    } catch (err) {
      sysClose(fd);
      throw err;
    }
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.closedFlag;
  }

  /**
   * Resolves at once while the loop slice of this socket has time left, after a loop turn once it
   * has run out: for callers decoding a long answer (thousands of links) in pieces.
   */
  async yieldIfSpent(): Promise<void> {
    if (this.slice.expired()) await new Promise<void>((r) => setImmediate(() => setImmediate(r)));
  }

  /** Requests waiting for their answer (for diagnostics and tests). */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Sends one request (`NLM_F_REQUEST | NLM_F_ACK | flags`) and waits for the kernel's ACK.
   * @param type RTM_* message type.
   * @param flags extra NLM_F_* flags, e.g. `NLM_F_CREATE | NLM_F_EXCL`.
   * @param body the fixed header and attributes (see codec.ts).
   * @returns the messages the kernel sent for this request before its ACK: empty for NEW/DEL/SET,
   *   the object for a GET of one object.
   * @throws KernelError with `syscall` = the type name (`RTM_NEWADDR`), the positive errno and the
   *   kernel's extended-ack text when it sent one.
   * @throws MvnetError (`ERR_NETLINK_CLOSED`) when the socket is or gets closed before the answer; a
   *   slow request may still have been carried out.
   */
  async request(type: number, flags: number, body: Buffer, opts: RequestOptions = {}): Promise<NlMsg[]> {
    const r = await this.transact(type, NLM_F_REQUEST | NLM_F_ACK | flags, body, false, opts);
    return r.msgs;
  }

  /**
   * Sends several requests in one datagram and waits until the kernel has answered all of them (a
   * refusal included: the first in message order is thrown once every answer is in): one `send` and
   * one `recv` instead of one of each per request. Only the last asks for an ACK. The
   * kernel carries the messages out one after the other and reports every refusal whether or not it
   * asked for an ACK (`if (nlh->nlmsg_flags & NLM_F_ACK || err) netlink_ack(…)` in netlink_rcv_skb(),
   * net/netlink/af_netlink.c), in message order, so the answer to the last one means the earlier ones
   * that sent nothing succeeded. A refusal does not stop the messages after it (each is its own
   * request, as when sent one by one): callers needing all-or-nothing undo, as with separate requests.
   * @throws KernelError of the first refused request, in message order (type name, errno, extended-ack
   *   text); KernelError EMSGSIZE from `send` when the datagram exceeds the socket's send buffer (then
   *   none was carried out); MvnetError (`ERR_NETLINK_CLOSED`) as {@link request}.
   */
  async requestAll(reqs: readonly NlRequest[]): Promise<void> {
    if (reqs.length === 0) return;
    if (this.closedFlag) throw closedError();
    const last = reqs.length - 1;
    const seqs: number[] = [];
    const bufs: Buffer[] = [];
    for (const [i, r] of reqs.entries()) {
      const seq = this.nextSeq();
      seqs.push(seq);
      const flags = NLM_F_REQUEST | r.flags | (i === last ? NLM_F_ACK : 0);
      bufs.push(encodeMessage({ type: r.type, flags, seq }, r.body));
    }
    const answers = reqs.map(
      (r, i) =>
        new Promise<unknown>((resolve, reject) => {
          const p: Pending = {
            type: r.type,
            dump: false,
            context: r.context,
            msgs: [],
            interrupted: false,
            resolve,
            reject,
          };
          if (i === last) p.covers = seqs.slice(0, last);
          this.pending.set(seqs[i] as number, p);
        }),
    );
    this.updateRef();
    try {
      this.io.send(Buffer.concat(bufs));
    } catch (err) {
      for (const [i, r] of reqs.entries())
        this.settle(seqs[i] as number, sendError(err as Error, r.type, r.context));
    }
    this.drain(seqs[last]);
    const outcomes = await Promise.allSettled(answers);
    const refused = outcomes.find((o) => o.status === "rejected");
    if (refused) throw refused.reason;
  }

  /**
   * Runs a dump (`NLM_F_REQUEST | NLM_F_DUMP`) and collects every part until NLMSG_DONE. Dumps on
   * one socket run one at a time. A dump the kernel flags inconsistent (NLM_F_DUMP_INTR: the table
   * changed while it was read) is restarted, up to 3 times in all.
   * @returns the reply messages (RTM_NEWLINK, RTM_NEWADDR, …) in kernel order.
   * @throws KernelError naming the request type: the kernel's refusal (EINVAL from strict checking,
   *   with its text), an error reported in NLMSG_DONE, or EINTR when the dump stayed inconsistent.
   * @throws MvnetError (`ERR_NETLINK_CLOSED`).
   */
  dump(type: number, body: Buffer, opts: RequestOptions = {}): Promise<NlMsg[]> {
    const run = this.dumpChain.then(() => this.dumpNow(type, body, opts));
    this.dumpChain = run.catch(() => undefined);
    return run;
  }

  /**
   * Closes the socket. Pending requests fail with `ERR_NETLINK_CLOSED`. The descriptor itself is
   * closed once no slow send still uses it, so its number cannot be reused under an in-flight send.
   * Idempotent.
   */
  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.watcher?.close();
    this.watcher = undefined;
    this.failAll(closedError());
    if (this.asyncSends === 0) this.io.close();
  }

  private async dumpNow(type: number, body: Buffer, opts: RequestOptions): Promise<NlMsg[]> {
    let busy = 0;
    let interrupted = 0;
    for (;;) {
      let r: { msgs: NlMsg[]; interrupted: boolean };
      try {
        r = await this.transact(type, NLM_F_REQUEST | NLM_F_DUMP, body, true, opts);
      } catch (err) {
        // A dump abandoned earlier (its request failed on ENOBUFS or truncation) runs on until
        // we have read it out; wait for that instead of failing.
        if (err instanceof KernelError && err.errno === EBUSY && ++busy < DUMP_BUSY_ATTEMPTS) {
          await new Promise((res) => setTimeout(res, 2));
          continue;
        }
        throw err;
      }
      if (!r.interrupted) return r.msgs;
      if (++interrupted >= DUMP_INTR_ATTEMPTS) {
        throw new KernelError(
          messageTypeName(type),
          EINTR,
          `${opts.context ?? "rtnetlink dump"} (the kernel flagged ${DUMP_INTR_ATTEMPTS} dumps in a row as inconsistent)`,
        );
      }
    }
  }

  private nextSeq(): number {
    do {
      this.seq = (this.seq + 1) >>> 0 || 1;
    } while (this.pending.has(this.seq));
    return this.seq;
  }

  private transact(
    type: number,
    flags: number,
    body: Buffer,
    dump: boolean,
    opts: RequestOptions,
  ): Promise<{ msgs: NlMsg[]; interrupted: boolean }> {
    if (this.closedFlag) return Promise.reject(closedError());
    const seq = this.nextSeq();
    const msg = encodeMessage({ type, flags, seq }, body);
    const context = opts.context ?? "rtnetlink request";
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { type, dump, context, msgs: [], interrupted: false, resolve, reject });
      this.updateRef();
      if (opts.slow) {
        this.asyncSends++;
        this.io.sendAsync(msg, (err) => {
          this.asyncSends--;
          if (this.closedFlag) {
            if (this.asyncSends === 0) this.io.close();
            return;
          }
          // A reply that arrived before this callback was already picked up by the watcher.
          if (err) this.settle(seq, sendError(err, type, context));
        });
        return;
      }
      try {
        this.io.send(msg);
      } catch (err) {
        this.settle(seq, sendError(err as Error, type, context));
        return;
      }
      // The kernel answered inside send(): read it now (no loop turn). Reading stops once this
      // request is settled, which saves the final EAGAIN `recv`; anything still queued wakes the
      // level-triggered watcher.
      this.drain(seq);
    });
  }

  /**
   * Reads queued datagrams and dispatches their messages: all of them, or only until request `until`
   * is settled — and no longer than the loop slice allows. A dump of thousands of links is read
   * inside this call (the kernel refills the queue as it is read, netlink_dump() from
   * netlink_recvmsg()), ≈ 20 µs a link: past the slice the rest is read after a loop turn.
   */
  private drain(until?: number): void {
    while (!this.closedFlag && (until === undefined || this.pending.has(until))) {
      let n: number;
      try {
        n = this.io.recv(this.rbuf);
      } catch (err) {
        this.failAll(err as Error);
        // ENOBUFS: the queue overflowed and replies were lost; the socket itself is fine.
        if (err instanceof KernelError && err.errno === ENOBUFS) continue;
        return;
      }
      if (n < 0) return;
      const seq = n >= NLMSG_HDRLEN ? this.rbuf.readUInt32LE(8) : undefined;
      if (n > this.rbuf.length) {
        // MSG_TRUNC made recv report the real length: the tail of this datagram is lost.
        if (seq !== undefined) {
          const p = this.pending.get(seq);
          this.settle(seq, new KernelError("recv", EMSGSIZE, p?.context ?? "netlink receive"));
        }
        this.rbuf = Buffer.alloc(Math.max(n, this.rbuf.length * 2));
        continue;
      }
      let msgs: NlMsg[];
      try {
        msgs = decodeMessages(this.rbuf.subarray(0, n));
      } catch (err) {
        if (seq !== undefined) this.settle(seq, err as Error);
        continue;
      }
      for (const m of msgs) {
        try {
          this.dispatch(m);
        } catch (err) {
          this.settle(m.seq, err as Error); // a malformed NLMSG_ERROR / NLMSG_DONE
        }
      }
      if (this.pending.size > 0 && this.slice.expired()) {
        // The poll watcher would fire again too (level-triggered), but only in the poll phase;
        // two hops let timers run first, as LoopSlice.run does.
        setImmediate(() => setImmediate(() => this.drain()));
        return;
      }
    }
  }

  private dispatch(m: NlMsg): void {
    const p = this.pending.get(m.seq);
    if (!p) return; // the answer to a request that already failed
    switch (m.type) {
      case NLMSG_NOOP:
        return;
      case NLMSG_ERROR: {
        const e = decodeError(m);
        if (e.errno === 0) {
          if (!p.dump) this.settle(m.seq, undefined, true);
        } else {
          this.settle(m.seq, this.kernelError(p, e), true);
        }
        return;
      }
      case NLMSG_DONE: {
        if (!p.dump) return;
        // netlink_dump_done() checks consistency too, so the flag can come on DONE alone.
        if (m.flags & NLM_F_DUMP_INTR) p.interrupted = true;
        const e = decodeDone(m);
        this.settle(m.seq, e.errno === 0 ? undefined : this.kernelError(p, e));
        return;
      }
      case NLMSG_OVERRUN:
        this.settle(m.seq, new KernelError(messageTypeName(p.type), ENOBUFS, p.context, "NLMSG_OVERRUN"));
        return;
      default:
        if (m.flags & NLM_F_DUMP_INTR) p.interrupted = true;
        p.msgs.push(m);
    }
  }

  private kernelError(p: Pending, e: NlError): KernelError {
    return new KernelError(messageTypeName(p.type), e.errno, p.context, e.message);
  }

  /** @param answered true when `err` (or success) is the kernel's answer to this very request. */
  private settle(seq: number, err?: Error, answered = false): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    // The kernel answered the last request of a datagram: the ones before it that sent no answer
    // succeeded. Anything else (a failed send, close) fails them with it.
    if (p.covers) for (const s of p.covers) this.settle(s, answered ? undefined : err);
    this.updateRef();
    // Most answers are read inside send(): the caller resumes at once unless the loop has been held
    // for a slice already (a caller making requests back to back would otherwise hold it for the
    // whole batch: 500 TAPs ≈ 0.6 s, bench/suites/tap.ts).
    this.slice.run(() => (err ? p.reject(err) : p.resolve({ msgs: p.msgs, interrupted: p.interrupted })));
  }

  private failAll(err: Error): void {
    for (const seq of [...this.pending.keys()]) this.settle(seq, err);
  }

  private updateRef(): void {
    if (!this.watcher) return;
    if (this.pending.size > 0) this.watcher.ref();
    else this.watcher.unref();
  }
}

let shared: NetlinkSocket | undefined;

/**
 * The process-wide socket, opened on first use (and again after someone closed it). It lives in the
 * network namespace of the thread that first calls this.
 * @throws as {@link NetlinkSocket.open}.
 */
export function defaultSocket(): NetlinkSocket {
  if (!shared || shared.closed) shared = NetlinkSocket.open();
  return shared;
}
