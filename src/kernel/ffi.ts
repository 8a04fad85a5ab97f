/**
 * Every foreign-function declaration of the project, in one place (GUIDE §2). Only `kernel/` may
 * import this module. Each wrapper throws {@link KernelError} with the errno the C library set.
 *
 * Buffers are passed to C as `void *` in place; a caller that reuses a receive buffer must copy the
 * bytes it keeps before the next call.
 */
import { createRequire } from "node:module";
import { KernelError, UnsupportedError } from "../core/errors.js";

type Koffi = typeof import("koffi");

function loadKoffi(): Koffi {
  try {
    return createRequire(import.meta.url)("koffi") as Koffi;
  } catch (cause) {
    throw new UnsupportedError(
      "the native FFI module (koffi) could not be loaded; reinstall with `npm ci` (optional dependencies must not be omitted)",
      { cause },
    );
  }
}

/** The koffi module itself, for the few callers that need `koffi.node.poll` or `.async`. */
export const koffi: Koffi = loadKoffi();

const libc = koffi.load("libc.so.6");

const c = {
  open: libc.func("int open(const char *path, int flags)"),
  close: libc.func("int close(int fd)"),
  ioctlPtr: libc.func("int ioctl(int fd, unsigned long req, void *arg)"),
  ioctlInt: libc.func("int ioctl(int fd, unsigned long req, unsigned long arg)"),
  socket: libc.func("int socket(int domain, int type, int protocol)"),
  bind: libc.func("int bind(int fd, void *addr, unsigned int len)"),
  setsockopt: libc.func("int setsockopt(int fd, int level, int name, void *val, unsigned int len)"),
  send: libc.func("long send(int fd, void *buf, unsigned long len, int flags)"),
  recv: libc.func("long recv(int fd, void *buf, unsigned long len, int flags)"),
  read: libc.func("long read(int fd, void *buf, unsigned long len)"),
  ifNameToIndex: libc.func("unsigned int if_nametoindex(const char *name)"),
  write: libc.func("long write(int fd, void *buf, unsigned long len)"),
};

/** Raw async `send` (runs on libuv's pool; bounded in time for netlink, see GUIDE §3). */
export const sendAsync = c.send.async as (
  fd: number,
  buf: Buffer,
  len: number,
  flags: number,
  cb: (err: unknown, res: number) => void,
) => void;

/** `open(2)` flags used here. */
export const O_RDWR = 0o2;
export const O_WRONLY = 0o1;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/** Last errno of the calling thread (valid right after a failed sync call). */
export function lastErrno(): number {
  return koffi.errno();
}

function check(ret: number | bigint, syscall: string, context: string): number {
  const n = Number(ret);
  if (n < 0) throw new KernelError(syscall, koffi.errno(), context);
  return n;
}

/** `open(2)`. @returns the file descriptor. @throws KernelError. */
export function sysOpen(path: string, flags: number, context: string): number {
  return check(c.open(path, flags), `open(${path})`, context);
}

/** `close(2)`; errors are ignored, as the descriptor is gone either way on Linux. */
export function sysClose(fd: number): void {
  c.close(fd);
}

/** `ioctl(2)` with a pointer argument. @throws KernelError naming `ioctl(<name>)`. */
export function sysIoctlPtr(fd: number, req: number, arg: Buffer, name: string, context: string): void {
  check(c.ioctlPtr(fd, req, arg), `ioctl(${name})`, context);
}

/** `ioctl(2)` with an integer argument. @throws KernelError naming `ioctl(<name>)`. */
export function sysIoctlInt(fd: number, req: number, arg: number, name: string, context: string): void {
  check(c.ioctlInt(fd, req, arg), `ioctl(${name})`, context);
}

/** `socket(2)`. @returns the file descriptor. @throws KernelError. */
export function sysSocket(domain: number, type: number, protocol: number, context: string): number {
  return check(c.socket(domain, type, protocol), "socket", context);
}

/** `bind(2)` with a raw sockaddr. @throws KernelError. */
export function sysBind(fd: number, addr: Buffer, context: string): void {
  check(c.bind(fd, addr, addr.length), "bind", context);
}

/** `setsockopt(2)` with a 32-bit integer value. @throws KernelError. */
export function sysSetsockoptInt(
  fd: number,
  level: number,
  name: number,
  value: number,
  context: string,
): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  check(c.setsockopt(fd, level, name, v, 4), `setsockopt(${name})`, context);
}

/** `send(2)`. @returns bytes sent. @throws KernelError. */
export function sysSend(fd: number, buf: Buffer, context: string): number {
  return check(c.send(fd, buf, buf.length, 0), "send", context);
}

/**
 * `recv(2)` into `buf`. @returns bytes received, or -1 when the socket is non-blocking and empty
 * (EAGAIN). @throws KernelError for any other failure.
 */
export function sysRecv(fd: number, buf: Buffer, flags: number, context: string): number {
  const n = Number(c.recv(fd, buf, buf.length, flags));
  if (n < 0) {
    const errno = koffi.errno();
    if (errno === 11) return -1;
    throw new KernelError("recv", errno, context);
  }
  return n;
}

/** `read(2)`. @returns bytes read, or -1 on EAGAIN. @throws KernelError. */
export function sysRead(fd: number, buf: Buffer, context: string): number {
  const n = Number(c.read(fd, buf, buf.length));
  if (n < 0) {
    const errno = koffi.errno();
    if (errno === 11) return -1;
    throw new KernelError("read", errno, context);
  }
  return n;
}

/** `write(2)`. @returns bytes written. @throws KernelError. */
export function sysWrite(fd: number, buf: Buffer, context: string): number {
  return check(c.write(fd, buf, buf.length), "write", context);
}

/**
 * `if_nametoindex(3)`: the ifindex of an interface name, in a few microseconds (one ioctl, no
 * netlink round trip). @throws KernelError (ENODEV when there is no such interface).
 */
export function sysIfNameToIndex(name: string, context: string): number {
  const index = Number(c.ifNameToIndex(name));
  if (index === 0) throw new KernelError(`if_nametoindex(${name})`, koffi.errno() || 19, context);
  return index;
}

const getsockoptFn = libc.func(
  "int getsockopt(int fd, int level, int name, void *val, _Inout_ unsigned int *len)",
);

/**
 * `getsockopt(2)` into `buf` (in and out: some options, such as x_tables' IPT_SO_GET_ENTRIES, read
 * a request from the buffer and overwrite it with the answer).
 * @returns the length the kernel wrote. @throws KernelError.
 */
export function sysGetsockopt(fd: number, level: number, name: number, buf: Buffer, context: string): number {
  const len = [buf.length];
  check(getsockoptFn(fd, level, name, buf, len), `getsockopt(${name})`, context);
  return len[0] as number;
}
