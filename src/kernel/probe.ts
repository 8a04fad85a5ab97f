/**
 * Host probes the pure allocators (alloc/) need, passed in from here so that allocation logic stays
 * testable without a kernel.
 */
import { createSocket } from "node:dgram";
import { createServer } from "node:net";
import ipaddr from "ipaddr.js";
import { ValidationError } from "../core/errors.js";
import { type Protocol, validatePort, validateProtocol } from "../core/validate.js";

/**
 * Tells whether `protocol` port `port` could be bound on `address` right now, by binding a TCP
 * listener or a UDP socket there (`exclusive: true`, so Node's cluster never shares it) and closing
 * it at once.
 *
 * This is a check, not a reservation: another process may take the port the moment after. Callers
 * that publish a port must still handle the conflict when the real listener or DNAT rule appears.
 * Binding uses the kernel's own rules (net/ipv4/inet_connection_sock.c): `0.0.0.0` (or `::`)
 * means every address, and conflicts with any listener on that port; Node sets SO_REUSEADDR on
 * TCP listeners, so ports in TIME_WAIT count as free.
 *
 * Binds run on the calling thread (libuv binds synchronously), so the answer concerns the caller's
 * network namespace.
 *
 * @param protocol `tcp` or `udp`.
 * @param address an IPv4 or IPv6 address of this host, or `0.0.0.0` / `::` for all.
 * @param port 1–65535.
 * @returns true when the bind succeeded, false on EADDRINUSE.
 * @throws ValidationError for a bad protocol, port or address, or (field `address`, code
 *   `ERR_ADDRESS_NOT_LOCAL`) when the kernel says EADDRNOTAVAIL: the address is not on this host.
 * @throws Error (the system error from Node, with its `code`) for anything else, e.g. EACCES.
 */
export async function isPortFree(protocol: Protocol, address: string, port: number): Promise<boolean> {
  const proto = validateProtocol(protocol);
  validatePort(port);
  // IPv4 only as a dotted quad: ipaddr.isValid would also take "10.1" or "0x0a000001".
  const v4 = typeof address === "string" && ipaddr.IPv4.isValidFourPartDecimal(address);
  if (!v4 && !(typeof address === "string" && ipaddr.IPv6.isValid(address))) {
    throw new ValidationError("address", `${JSON.stringify(address)} is not an IP address`);
  }
  const family = v4 ? "udp4" : "udp6";
  try {
    if (proto === "tcp") await bindTcp(address, port);
    else await bindUdp(family, address, port);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") return false;
    if (code === "EADDRNOTAVAIL") {
      throw new ValidationError(
        "address",
        `${address} is not an address of this host (bind: EADDRNOTAVAIL)`,
        "ERR_ADDRESS_NOT_LOCAL",
      );
    }
    throw err;
  } finally {
    // Node completes a bind and close to an address literal in process.nextTick callbacks, so a
    // caller probing port after port (1 000 allocations) would otherwise hold the event loop for
    // the whole batch (60-300 ms measured, bench/suites/alloc.ts). One loop turn lets timers and
    // I/O run.
    await new Promise((r) => setImmediate(r));
  }
}

function bindTcp(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen({ host, port, exclusive: true, ipv6Only: false }, () => {
      server.close(() => resolve());
    });
  });
}

function bindUdp(type: "udp4" | "udp6", address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type, reuseAddr: false });
    socket.once("error", (err) => {
      socket.close();
      reject(err);
    });
    socket.bind({ address, port, exclusive: true }, () => {
      socket.close(() => resolve());
    });
  });
}
