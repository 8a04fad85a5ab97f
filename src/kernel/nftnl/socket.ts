/**
 * A NETLINK_NETFILTER socket used synchronously. nfnetlink handles a request inside the sender's
 * `send()` (netlink_unicast_kernel() calls nfnetlink_rcv() in the calling thread, and a batch is
 * applied or aborted before it returns, nfnetlink_rcv_batch() in net/netfilter/nfnetlink.c), so every
 * answer is queued when `send()` returns: one `send` and the `recv`s that drain the queue are the
 * whole exchange — no poll, no thread-pool hop. A set-element transaction holds the loop for tens
 * of µs. (This is also how libnftables reads its batch errors: a zero-timeout select after sending.)
 *
 * Its syscalls are ffi.ts's and its framing is netlink/codec.ts's, as for the rtnetlink socket.
 */
import { endianness, constants as osConstants } from "node:os";
import { KernelError, UnsupportedError } from "../../core/errors.js";
import { sysBind, sysClose, sysRecv, sysSend, sysSetsockoptInt, sysSocket } from "../ffi.js";
import { decodeError, decodeMessages, type NlMsg } from "../netlink/codec.js";
import {
  AF_NETLINK,
  MSG_TRUNC,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NLM_F_ACK,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSG_NOOP,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOL_NETLINK,
  SOL_SOCKET,
} from "../netlink/constants.js";
import { NETLINK_NETFILTER, SO_SNDBUF, SO_SNDBUFFORCE } from "./constants.js";

const { EMSGSIZE, EPROTO } = osConstants.errno;

/** Room for the answers of a large transaction (each ACK's skb costs ~1 KiB of receive queue). */
const BUF_BYTES = 4 * 1024 * 1024;

/** What the kernel answered to one exchange. */
export interface Answer {
  /** Non-ACK messages (e.g. NFT_MSG_NEWSETELEM of a get), in kernel order. */
  msgs: NlMsg[];
}

/**
 * One NETLINK_NETFILTER socket (NETLINK_EXT_ACK and NETLINK_CAP_ACK on). It acts in the network
 * namespace of the thread that opened it. Not thread-safe and not re-entrant; every call completes
 * before it returns.
 */
export class NftnlSocket {
  /** File descriptor (diagnostics). */
  readonly fd: number;
  private seq = 0;
  private rbuf = Buffer.alloc(64 * 1024);
  private closedFlag = false;
  /** An exchange stopped before reading every answer: drop leftovers before the next one. */
  private dirty = false;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /**
   * Opens a socket in the calling thread's network namespace.
   * @throws UnsupportedError on a big-endian host; KernelError (`socket`, `setsockopt(<n>)`, `bind`),
   *   e.g. EPROTONOSUPPORT without nfnetlink.
   */
  static open(): NftnlSocket {
    if (endianness() !== "LE")
      throw new UnsupportedError("the netlink codec supports little-endian hosts only");
    const ctx = "opening the nf_tables netlink socket";
    const fd = sysSocket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_NETFILTER, ctx);
    try {
      sysSetsockoptInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1, ctx);
      sysSetsockoptInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1, ctx);
      for (const [force, plain] of [
        [SO_SNDBUFFORCE, SO_SNDBUF],
        [SO_RCVBUFFORCE, SO_RCVBUF],
      ] as const) {
        try {
          sysSetsockoptInt(fd, SOL_SOCKET, force, BUF_BYTES, ctx);
        } catch {
          sysSetsockoptInt(fd, SOL_SOCKET, plain, BUF_BYTES, ctx); // capped by net.core.[rw]mem_max
        }
      }
      const addr = Buffer.alloc(12); // sockaddr_nl, pid 0: the kernel picks our port id
      addr.writeUInt16LE(AF_NETLINK, 0);
      sysBind(fd, addr, ctx);
      return new NftnlSocket(fd);
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
   * Reserves `count` consecutive sequence numbers and returns the first (never 0, so a stale answer
   * to an earlier exchange can never match).
   */
  reserveSeq(count: number): number {
    if (this.seq + count >= 0xffffffff) this.seq = 0;
    const first = this.seq + 1;
    this.seq += count;
    return first;
  }

  /**
   * Sends `buf` (one or more messages numbered `firstSeq`…`lastSeq`) and reads every answer. Each
   * message that asked for an ACK must be acknowledged or refused; answers outside the range (left
   * from an earlier exchange that failed half-way) are dropped.
   * @param what names the operation in errors, e.g. `add element ip microvm_net pm_any`.
   * @throws KernelError with `syscall` = `what`'s message type, the errno and the kernel's extended-ack
   *   text of the first refusal (in a batch, the whole transaction was then aborted); EPROTO when an
   *   ACK is missing; ENOBUFS when answers were lost (the outcome is then unknown).
   * @throws MvnetError (`ERR_NETLINK_CLOSED`) after close().
   */
  exchange(buf: Buffer, firstSeq: number, lastSeq: number, what: string, syscall: string): Answer {
    if (this.closedFlag) throw new KernelError(syscall, osConstants.errno.EBADF, `${what} (socket closed)`);
    const wantAck = new Set<number>();
    for (let off = 0; off + NLMSG_HDRLEN <= buf.length; ) {
      const len = buf.readUInt32LE(off);
      if (buf.readUInt16LE(off + 6) & NLM_F_ACK) wantAck.add(buf.readUInt32LE(off + 8));
      off += (len + 3) & ~3;
    }
    if (this.dirty) this.drainStale();
    this.dirty = true;
    sysSend(this.fd, buf, what);
    const msgs: NlMsg[] = [];
    let failure: KernelError | undefined;
    // Each message asking for an ACK gets exactly one answer (ACK or error), sent after any reply
    // data; once all are in, nothing more is coming, which saves the final empty recv. A batch whose
    // commit failed gets one error on BEGIN instead (its per-message ACKs are dropped), and the
    // loop then reads until the queue is empty.
    while (wantAck.size > 0 || failure) {
      const n = sysRecv(this.fd, this.rbuf, MSG_TRUNC, what);
      if (n < 0) break;
      if (n > this.rbuf.length) {
        this.rbuf = Buffer.alloc(Math.max(n, this.rbuf.length * 2));
        failure ??= new KernelError(syscall, EMSGSIZE, what, "an answer was larger than the receive buffer");
        continue;
      }
      for (const m of decodeMessages(this.rbuf.subarray(0, n))) {
        if (m.seq < firstSeq || m.seq > lastSeq || m.type === NLMSG_NOOP || m.type === NLMSG_DONE) continue;
        if (m.type !== NLMSG_ERROR) {
          msgs.push(m);
          continue;
        }
        const e = decodeError(m);
        wantAck.delete(m.seq);
        if (e.errno !== 0) failure ??= new KernelError(syscall, e.errno, what, e.message);
      }
    }
    this.dirty = false;
    if (failure) throw failure;
    if (wantAck.size > 0) {
      throw new KernelError(syscall, EPROTO, what, `no answer to ${wantAck.size} message(s)`);
    }
    return { msgs };
  }

  /** Reads and drops whatever an earlier, failed exchange left queued. */
  private drainStale(): void {
    try {
      while (sysRecv(this.fd, this.rbuf, MSG_TRUNC, "nf_tables netlink receive") >= 0);
    } catch {
      // ENOBUFS from an earlier overflow is cleared by reading; nothing else to do here.
    }
  }

  /** Closes the descriptor. Idempotent. */
  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    sysClose(this.fd);
  }
}

let shared: NftnlSocket | undefined;

/**
 * The process-wide socket, opened on first use (and again after someone closed it), in the network
 * namespace of the thread that first calls this.
 * @throws as {@link NftnlSocket.open}.
 */
export function defaultNftnlSocket(): NftnlSocket {
  if (!shared || shared.closed) shared = NftnlSocket.open();
  return shared;
}
