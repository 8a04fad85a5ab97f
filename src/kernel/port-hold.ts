/**
 * Holding a host port: a socket bound to (address, port) and kept open, so no other process can bind
 * it while we publish it to a guest. A TCP socket is bound but never listens, so it accepts nothing
 * and a stray SYN gets a reset as if the port were closed; published traffic is translated to the
 * guest before it could reach the socket anyway (nat prerouting/output). No SO_REUSEADDR: a socket
 * that sets it (as Node's and most servers' listeners do) still cannot share the port with ours,
 * because sharing needs the option on both sockets (inet_csk_bind_conflict() in
 * net/ipv4/inet_connection_sock.c; udp_lib_lport_inuse() in net/ipv4/udp.c).
 */
import { constants as osConstants } from "node:os";
import { KernelError, ValidationError } from "../core/errors.js";
import { type Protocol, validateIPv4, validatePort, validateProtocol } from "../core/validate.js";
import { sysBind, sysClose, sysSocket } from "./ffi.js";

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const { EADDRNOTAVAIL } = osConstants.errno;

/** `struct sockaddr_in` (16 bytes): family (host order), port (network order), address, zero pad. */
export function sockaddrIn(address: string, port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_INET, 0);
  b.writeUInt16BE(port, 2);
  validateIPv4(address)
    .split(".")
    .forEach((o, i) => {
      b.writeUInt8(Number(o), 4 + i);
    });
  return b;
}

/**
 * Binds a socket of `protocol` to `address`:`port` (IPv4; `0.0.0.0` is every address) and keeps it.
 * @returns the file descriptor; give it to {@link releasePort}.
 * @throws ValidationError for bad arguments, or (field `hostIp`, code `ERR_ADDRESS_NOT_LOCAL`) when
 *   the address is not one of this host's (EADDRNOTAVAIL).
 * @throws KernelError (`bind`): EADDRINUSE (errno 98) when another socket holds the port; EACCES
 *   for a port below 1024 without CAP_NET_BIND_SERVICE.
 */
export function holdPort(protocol: Protocol, address: string, port: number): number {
  const proto = validateProtocol(protocol);
  const addr = sockaddrIn(address, validatePort(port));
  const context = `holding ${proto} port ${address}:${port}`;
  const fd = sysSocket(AF_INET, (proto === "tcp" ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0, context);
  try {
    sysBind(fd, addr, context);
  } catch (err) {
    sysClose(fd);
    if (err instanceof KernelError && err.errno === EADDRNOTAVAIL) {
      throw new ValidationError(
        "hostIp",
        `${address} is not an address of this host (bind: EADDRNOTAVAIL)`,
        "ERR_ADDRESS_NOT_LOCAL",
      );
    }
    throw err;
  }
  return fd;
}

/** Closes a descriptor from {@link holdPort}; the port is free again. */
export function releasePort(fd: number): void {
  sysClose(fd);
}
