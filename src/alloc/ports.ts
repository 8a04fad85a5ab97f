import ipaddr from "ipaddr.js";
import {
  ConflictError,
  ExhaustedError,
  MvnetError,
  UnsupportedError,
  ValidationError,
} from "../core/errors.js";
import { type Protocol, validateIfName, validateIPv4, validateProtocol } from "../core/validate.js";

/**
 * What the PortManager needs to know about the host. The kernel layer provides the real one;
 * tests pass a fake. Both methods may be called concurrently.
 */
export interface HostProbe {
  /**
   * True when a socket of `protocol` could bind (`address`, `port`) right now, i.e. no other
   * process holds a conflicting socket. `address` is `0.0.0.0`, `::`, or a specific IPv4/IPv6
   * address in canonical form; `port` is 1–65535.
   */
  isPortFree(protocol: Protocol, address: string, port: number): Promise<boolean>;
  /**
   * Addresses currently assigned to the interface called `name` (IPv4 dotted quads and/or IPv6,
   * an IPv6 zone suffix `%…` is allowed), or `[]` when it has none or does not exist.
   */
  interfaceAddresses(name: string): Promise<string[]>;
}

/** One held (protocol, host address, port) and the VM it belongs to. */
export interface PortAllocation {
  /** Host port, 1–65535. */
  port: number;
  protocol: Protocol;
  /** Host address the port is held on: `0.0.0.0` (any IPv4), `::` (any), or a specific address. */
  address: string;
  vmId: string;
  /** The interface name the caller gave, when the address came from resolving it. */
  interface?: string;
}

/** An inclusive range of ports. */
export interface PortRange {
  start: number;
  end: number;
}

/**
 * Default range for ephemeral (port 0) allocations: 30000–32767, 2768 ports.
 *
 * It lies just below Linux's default `net.ipv4.ip_local_port_range` (32768–60999, see
 * Documentation/networking/ip-sysctl.rst), so the kernel does not pick these as source ports of
 * the host's own outgoing connections, whose replies a DNAT on the same port would divert to a
 * guest. It is also Kubernetes' default NodePort range: on a Kubernetes node, pass another range.
 * A host with a widened `ip_local_port_range` needs a range chosen against it.
 */
export const DEFAULT_PORT_RANGE: Readonly<PortRange> = Object.freeze({ start: 30000, end: 32767 });

/**
 * How many candidate ports one ephemeral allocation may find busy on the host (per the probe)
 * before it gives up with ExhaustedError (fewer when the range itself is smaller). Bounds the cost of one call when the host uses much
 * of the range.
 */
export const MAX_PROBE_ATTEMPTS = 64;

const ANY4 = "0.0.0.0";
const ANY6 = "::";

/** A parsed `hostInterface`: a canonical address, or an interface name still to be resolved. */
type HostSpec = { kind: "address"; address: string } | { kind: "interface"; name: string };

interface Entry {
  protocol: Protocol;
  port: number;
  /** Canonical address, or the interface name as given. Part of the key. */
  host: string;
  iface: string | undefined;
  /** The bind-level addresses this allocation occupies. */
  addresses: string[];
  vmId: string;
  /** Set while the host probe runs; settles (never rejects) when the entry becomes live or is dropped. */
  pending: Promise<void> | undefined;
}

/**
 * Host port bookkeeping for published VM ports, in memory.
 *
 * An allocation is keyed by (protocol, host address, port). Two allocations clash exactly when
 * bind(2) would refuse the second socket: same protocol and port, and the addresses equal, or one
 * is `0.0.0.0` and the other IPv4, or one is `::`, which on Linux covers IPv4 too unless the socket
 * is IPV6_V6ONLY (`net.ipv6.bindv6only` defaults to 0) — see `inet_rcv_saddr_equal()` and
 * `ipv6_rcv_saddr_equal()` in net/ipv4/inet_connection_sock.c. `0.0.0.0` and a specific IPv6
 * address do not clash. tcp and udp are independent. An IPv4-mapped IPv6 address
 * (`::ffff:a.b.c.d`) is treated as the IPv4 address.
 *
 * Not persistent and not shared between processes: the durable store is the source of truth
 * across restarts and processes; this class orders allocations within one process.
 */
export class PortManager {
  readonly #start: number;
  readonly #end: number;
  readonly #probe: HostProbe | undefined;
  /** By `protocol host port`. */
  readonly #entries = new Map<string, Entry>();
  /** By `protocol port`: every entry (live or pending) on that port, for the clash check. */
  readonly #byPort = new Map<string, Entry[]>();
  /** Next ephemeral candidate, per protocol: tcp and udp are separate spaces. */
  readonly #cursor: Record<Protocol, number>;

  /**
   * @param start first port of the ephemeral range (1–65535), default 30000 (see DEFAULT_PORT_RANGE).
   * @param end last port of the ephemeral range, inclusive, ≥ start, default 32767.
   * @param probe host checks; `undefined` means none: ports bound by other processes are not
   *   detected and interface names cannot be resolved.
   * @throws ValidationError (field `start` or `end`).
   */
  constructor(
    start: number = DEFAULT_PORT_RANGE.start,
    end: number = DEFAULT_PORT_RANGE.end,
    probe?: HostProbe,
  ) {
    for (const [field, v] of [
      ["start", start],
      ["end", end],
    ] as const) {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) {
        throw new ValidationError(field, `${String(v)} is not a port number in 1-65535`, "ERR_INVALID_PORT");
      }
    }
    if (start > end) {
      throw new ValidationError("end", `range ${start}-${end} is empty (end < start)`, "ERR_INVALID_PORT");
    }
    this.#start = start;
    this.#end = end;
    this.#probe = probe;
    this.#cursor = { tcp: start, udp: start };
  }

  /** The ephemeral range, inclusive. */
  get range(): PortRange {
    return { start: this.#start, end: this.#end };
  }

  /**
   * Allocates a host port for a VM.
   *
   * @param requestedPort 0 for any free port of the ephemeral range (next-fit from just past the
   *   previous ephemeral port of the same protocol, wrapping; a port just released is not handed
   *   out again at once), or a specific port 1–65535, inside the range or not.
   * @param protocol `tcp` or `udp` (any case).
   * @param hostInterface where the port is published: `""` or `0.0.0.0` (every IPv4 address),
   *   an IPv4 address, an IPv6 address without zone (`::` is every address), or an interface name,
   *   which the probe resolves to its current addresses (the allocation then holds the port on
   *   each). A string of only digits and dots is always read as an IPv4 address.
   * @param vmId owner, non-empty.
   * @returns the port.
   *
   * The same vmId asking again for the same (protocol, hostInterface, port) gets the port back
   * without a new host check. Port 0 always allocates a new port.
   *
   * @throws ValidationError (field `port`, `protocol`, `hostInterface` or `vmId`) on bad input,
   *   before anything else; also when an interface name resolves to no address.
   * @throws UnsupportedError when `hostInterface` is an interface name and there is no probe.
   * @throws ConflictError when another allocation clashes (message and `owner` give its vmId), or
   *   when the probe says another process on the host holds the port (`owner` undefined).
   * @throws ExhaustedError when port 0 finds no free port in the range, or when the probe reports
   *   min(MAX_PROBE_ATTEMPTS, range size) candidates busy during this call.
   * @throws MvnetError (code `ERR_CANCELLED`) when the allocation was released (release or
   *   releaseVm) while its host check was still running.
   * Errors from the probe itself propagate unchanged, with the reservation rolled back.
   */
  async allocate(
    requestedPort: number,
    protocol: string,
    hostInterface: string,
    vmId: string,
  ): Promise<number> {
    if (
      typeof requestedPort !== "number" ||
      !Number.isInteger(requestedPort) ||
      requestedPort < 0 ||
      requestedPort > 65535
    ) {
      throw new ValidationError(
        "port",
        `${String(requestedPort)} is not 0 (any) or a port number in 1-65535`,
        "ERR_INVALID_PORT",
      );
    }
    const proto = validateProtocol(protocol);
    const spec = parseHost(hostInterface);
    if (typeof vmId !== "string" || vmId.trim() === "") {
      throw new ValidationError("vmId", `${JSON.stringify(vmId)} is not a non-empty VM id`);
    }

    const host = spec.kind === "address" ? spec.address : spec.name;
    const iface = spec.kind === "interface" ? spec.name : undefined;
    // Resolve before reserving: the set of clashing allocations depends on the addresses.
    const addresses = spec.kind === "address" ? [spec.address] : await this.#resolve(spec.name);

    if (requestedPort !== 0) {
      return this.#allocateExact(proto, requestedPort, host, iface, addresses, vmId);
    }
    return this.#allocateEphemeral(proto, host, iface, addresses, vmId);
  }

  /**
   * Releases exactly the allocation (port, protocol, hostInterface). An interface name is matched
   * as given, not resolved again. Releasing something not held does nothing. Releasing an
   * allocation whose host check is still running cancels it (its allocate() rejects).
   * @returns true when something was released.
   * @throws ValidationError (field `port`, `protocol` or `hostInterface`).
   */
  release(port: number, protocol: string, hostInterface = ""): boolean {
    const entry = this.#entries.get(this.#keyOf(port, protocol, hostInterface));
    if (!entry) return false;
    this.#remove(entry);
    return true;
  }

  /**
   * Releases every allocation of a VM, including ones whose host check is still running.
   * @returns how many allocations (allocate() calls) were released.
   */
  releaseVm(vmId: string): number {
    let n = 0;
    for (const entry of [...this.#entries.values()]) {
      if (entry.vmId === vmId) {
        this.#remove(entry);
        n++;
      }
    }
    return n;
  }

  /**
   * Live allocations (host check done), one record per held address, sorted by protocol, port and
   * address. An allocation made with an interface name yields one record per address it resolved
   * to, each with `interface` set.
   * @param vmId only this VM's allocations.
   */
  list(vmId?: string): PortAllocation[] {
    const out: PortAllocation[] = [];
    for (const e of this.#entries.values()) {
      if (e.pending || (vmId !== undefined && e.vmId !== vmId)) continue;
      for (const address of e.addresses) {
        const rec: PortAllocation = { port: e.port, protocol: e.protocol, address, vmId: e.vmId };
        if (e.iface !== undefined) rec.interface = e.iface;
        out.push(rec);
      }
    }
    return out.sort(
      (a, b) =>
        a.protocol.localeCompare(b.protocol) ||
        a.port - b.port ||
        a.address.localeCompare(b.address) ||
        a.vmId.localeCompare(b.vmId),
    );
  }

  /**
   * True when exactly (port, protocol, hostInterface) is allocated, live or with its host check
   * running. It does not report clashes with other keys (allocate() does).
   * @throws ValidationError (field `port`, `protocol` or `hostInterface`).
   */
  isAllocated(port: number, protocol: string, hostInterface = ""): boolean {
    return this.#entries.has(this.#keyOf(port, protocol, hostInterface));
  }

  #keyOf(port: number, protocol: string, hostInterface: string): string {
    if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new ValidationError(
        "port",
        `${String(port)} is not a port number in 1-65535`,
        "ERR_INVALID_PORT",
      );
    }
    const proto = validateProtocol(protocol);
    const spec = parseHost(hostInterface);
    return entryKey(proto, spec.kind === "address" ? spec.address : spec.name, port);
  }

  async #allocateExact(
    protocol: Protocol,
    port: number,
    host: string,
    iface: string | undefined,
    addresses: string[],
    vmId: string,
  ): Promise<number> {
    for (;;) {
      const existing = this.#entries.get(entryKey(protocol, host, port));
      if (!existing) break;
      if (existing.vmId !== vmId) throw clashError(existing, protocol, port);
      if (!existing.pending) return port;
      // The same request is already in flight: share its outcome, then look again.
      await existing.pending;
    }
    const clash = this.#clash(protocol, port, addresses);
    if (clash) throw clashError(clash, protocol, port);
    const entry = this.#add(protocol, port, host, iface, addresses, vmId);
    if (await this.#hostCheck(entry)) return port;
    throw new ConflictError(
      `${protocol} port ${port} on ${hostLabel(host, iface, addresses)} is already in use by another process on the host`,
    );
  }

  async #allocateEphemeral(
    protocol: Protocol,
    host: string,
    iface: string | undefined,
    addresses: string[],
    vmId: string,
  ): Promise<number> {
    const limit = Math.min(MAX_PROBE_ATTEMPTS, this.#end - this.#start + 1);
    for (let busy = 0; ; ) {
      const port = this.#nextCandidate(protocol, addresses);
      if (port === 0) {
        throw new ExhaustedError(
          `no free ${protocol} port in ${this.#start}-${this.#end} on ${hostLabel(host, iface, addresses)}`,
        );
      }
      // Move the cursor before awaiting so that concurrent callers start further on.
      this.#cursor[protocol] = port === this.#end ? this.#start : port + 1;
      const entry = this.#add(protocol, port, host, iface, addresses, vmId);
      if (await this.#hostCheck(entry)) return port;
      if (++busy >= limit) {
        throw new ExhaustedError(
          `no free ${protocol} port in ${this.#start}-${this.#end} on ${hostLabel(host, iface, addresses)}: ` +
            `${busy} candidates were in use by other processes on the host`,
        );
      }
    }
  }

  /** First port from the cursor, wrapping once round the range, that clashes with nothing held; 0 if none. */
  #nextCandidate(protocol: Protocol, addresses: string[]): number {
    const n = this.#end - this.#start + 1;
    for (let i = 0, p = this.#cursor[protocol]; i < n; i++, p = p === this.#end ? this.#start : p + 1) {
      if (!this.#clash(protocol, p, addresses)) return p;
    }
    return 0;
  }

  /** An entry (live or pending) on (protocol, port) that bind(2) would not let coexist with `addresses`. */
  #clash(protocol: Protocol, port: number, addresses: string[]): Entry | undefined {
    const held = this.#byPort.get(`${protocol} ${port}`);
    if (!held) return undefined;
    for (const e of held) {
      for (const a of e.addresses) {
        for (const b of addresses) if (bindClash(a, b)) return e;
      }
    }
    return undefined;
  }

  /**
   * Runs the probe for a freshly reserved entry. Resolves true when the entry is now live, false
   * when the host holds the port (entry rolled back).
   */
  async #hostCheck(entry: Entry): Promise<boolean> {
    const probe = this.#probe;
    let settle: () => void = () => {};
    entry.pending = new Promise<void>((resolve) => {
      settle = resolve;
    });
    try {
      const free = probe
        ? (
            await Promise.all(entry.addresses.map((a) => probe.isPortFree(entry.protocol, a, entry.port)))
          ).every(Boolean)
        : true;
      if (this.#entries.get(entryKey(entry.protocol, entry.host, entry.port)) !== entry) {
        throw new MvnetError(
          "ERR_CANCELLED",
          `${entry.protocol} port ${entry.port} for VM "${entry.vmId}" was released while its host check was running`,
        );
      }
      if (!free) {
        this.#remove(entry);
        return false;
      }
      entry.pending = undefined;
      return true;
    } catch (err) {
      this.#remove(entry);
      throw err;
    } finally {
      settle();
    }
  }

  async #resolve(name: string): Promise<string[]> {
    if (!this.#probe) {
      throw new UnsupportedError(
        `hostInterface "${name}" is an interface name, and resolving it to addresses needs a HostProbe`,
      );
    }
    const raw = await this.#probe.interfaceAddresses(name);
    const addresses = [...new Set(raw.map((a) => canonicalAddress(a.replace(/%.*$/, ""))))];
    if (addresses.some((a) => a === "")) {
      throw new ValidationError(
        "hostInterface",
        `interface "${name}" reported an unparsable address: ${raw.join(", ")}`,
      );
    }
    if (addresses.length === 0) {
      throw new ValidationError("hostInterface", `interface "${name}" does not exist or has no address`);
    }
    return addresses.sort();
  }

  #add(
    protocol: Protocol,
    port: number,
    host: string,
    iface: string | undefined,
    addresses: string[],
    vmId: string,
  ): Entry {
    const entry: Entry = { protocol, port, host, iface, addresses, vmId, pending: undefined };
    this.#entries.set(entryKey(protocol, host, port), entry);
    const pk = `${protocol} ${port}`;
    const list = this.#byPort.get(pk);
    if (list) list.push(entry);
    else this.#byPort.set(pk, [entry]);
    return entry;
  }

  #remove(entry: Entry): void {
    const key = entryKey(entry.protocol, entry.host, entry.port);
    if (this.#entries.get(key) === entry) this.#entries.delete(key);
    const pk = `${entry.protocol} ${entry.port}`;
    const list = this.#byPort.get(pk);
    if (!list) return;
    const i = list.indexOf(entry);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#byPort.delete(pk);
  }
}

function entryKey(protocol: Protocol, host: string, port: number): string {
  return `${protocol} ${host} ${port}`;
}

/** Whether bind(2) refuses a second socket on `b` while one holds `a` (same protocol and port). */
function bindClash(a: string, b: string): boolean {
  if (a === b || a === ANY6 || b === ANY6) return true;
  const a4 = !a.includes(":");
  const b4 = !b.includes(":");
  return a4 && b4 && (a === ANY4 || b === ANY4);
}

function clashError(holder: Entry, protocol: Protocol, port: number): ConflictError {
  return new ConflictError(
    `${protocol} port ${port} is already allocated to VM "${holder.vmId}" on ` +
      hostLabel(holder.host, holder.iface, holder.addresses),
    holder.vmId,
  );
}

function hostLabel(host: string, iface: string | undefined, addresses: string[]): string {
  if (iface !== undefined) return `interface ${iface} (${addresses.join(", ")})`;
  if (host === ANY4) return "every IPv4 address (0.0.0.0)";
  if (host === ANY6) return "every address (::)";
  return host;
}

/** Canonical text of an IPv4 or IPv6 address (IPv4-mapped IPv6 becomes IPv4), or "" if unparsable. */
function canonicalAddress(value: string): string {
  if (ipaddr.IPv4.isValidFourPartDecimal(value)) return ipaddr.IPv4.parse(value).toString();
  if (value.includes(":") && ipaddr.IPv6.isValid(value)) {
    const v6 = ipaddr.IPv6.parse(value);
    return v6.isIPv4MappedAddress() ? v6.toIPv4Address().toString() : v6.toRFC5952String();
  }
  return "";
}

/**
 * `""`/`0.0.0.0` → any IPv4; a dotted quad → that address; anything with `:` → an IPv6 address;
 * otherwise an interface name (never formatted into an address).
 */
function parseHost(value: unknown): HostSpec {
  if (value === "" || value === ANY4) return { kind: "address", address: ANY4 };
  if (typeof value !== "string") {
    throw new ValidationError(
      "hostInterface",
      `${JSON.stringify(value)} is not an address or interface name`,
    );
  }
  // Digits and dots only is an IPv4 attempt (`10.1`, `300.1.1.1`), never taken as an interface name.
  if (/^[\d.]+$/.test(value)) return { kind: "address", address: validateIPv4(value, "hostInterface") };
  if (value.includes(":")) {
    const address = value.includes("%") ? "" : canonicalAddress(value);
    if (address === "") {
      throw new ValidationError("hostInterface", `"${value}" is not an IPv6 address`, "ERR_INVALID_ADDRESS");
    }
    return { kind: "address", address };
  }
  return { kind: "interface", name: validateIfName(value, "hostInterface") };
}
