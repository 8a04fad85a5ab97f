/**
 * Allocation of everything a VM gets — guest address, MAC, TAP name, host ports — against the state
 * database, meant to run inside one IMMEDIATE transaction ({@link HostState.write}): the database is
 * the lock, so two processes can never hand out the same address, port or name.
 *
 * Addresses and ephemeral ports are next-fit with wrap-around (the cursor is stored too): a value just
 * released is handed out again only after the cursor went round, so stale ARP entries and stale
 * clients of a gone VM do not reach its successor at once.
 */
import { ConflictError, ExhaustedError, ValidationError } from "../core/errors.js";
import { type Cidr, intToIPv4, ipv4ToInt, type Protocol, validateIPv4 } from "../core/validate.js";
import { guestMac } from "../guest/index.js";
import type { ProcessIdentity } from "../kernel/proc.js";
import type { HostState, PortRecord, VmRecord } from "../store/host-state.js";
import { tapNameFor } from "./names.js";
import { hostIpsClash, type PortWant } from "./publish.js";

/** How many host ports one wanted port may find busy on the host before the attach gives up. */
export const MAX_BUSY_CANDIDATES = 64;

/** How many alternative TAP names are tried before giving up. */
export const MAX_TAP_NAME_ATTEMPTS = 32;

const IP_SCAN_BATCH = 256;

/**
 * Tries to take a host port for good (a held socket, see kernel/port-hold.ts): returns a handle, or
 * undefined when another process on the host holds the port. Other failures throw.
 */
export type PortTaker = (protocol: Protocol, hostIp: string, port: number) => number | undefined;

/** The subnet guests get addresses from, as integers. */
export interface SubnetInfo {
  cidr: Cidr;
  /** Network address. */
  network: number;
  /** First and last address that can be handed out (network + 2 … broadcast − 1). */
  first: number;
  last: number;
  /** The host side of every TAP: network + 1. */
  gateway: string;
}

/** What one VM asks for, validated. */
export interface VmRequest {
  vmId: string;
  guestIp?: string;
  mtu: number;
  uid: number;
  gid: number;
  dns: string[];
  wants: PortWant[];
  /** Destinations this VM may reach beyond the host-wide rules (normalised entry texts). */
  allow: string[];
  /** Host services this VM may open. */
  hostPorts: Array<{ protocol: Protocol; port: number }>;
  /** JSON of the request, stored to recognise a retried attach. */
  json: string;
}

/** A fresh allocation: the record (already inserted) and the port handles taken for it. */
export interface Allocation {
  record: VmRecord;
  /** One handle per port of `record.ports`, same order. */
  handles: number[];
}

/**
 * The address the search starts at: the stored cursor when it lies in the subnet, else the first.
 */
function ipCursor(state: HostState, s: SubnetInfo): number {
  const c = state.cursor("ip");
  return c !== undefined && c >= s.first && c <= s.last ? c : s.first;
}

/** First address in [from, to] no record holds, or undefined. */
function firstGap(state: HostState, from: number, to: number): number | undefined {
  let want = from;
  for (;;) {
    if (want > to) return undefined;
    const held = state.ipsFrom(want, IP_SCAN_BATCH);
    for (const ip of held) {
      if (ip > want) return want;
      want = ip + 1;
      if (want > to) return undefined;
    }
    if (held.length < IP_SCAN_BATCH) return want;
  }
}

/**
 * Picks the guest address: `requested` when given and free, else next-fit from the cursor.
 * @throws ValidationError when `requested` is outside the subnet or is its network, gateway or
 *   broadcast address; ConflictError when another VM holds it; ExhaustedError when none is free.
 */
export function allocateIp(state: HostState, s: SubnetInfo, requested?: string): string {
  if (requested !== undefined) {
    const n = ipv4ToInt(validateIPv4(requested, "guestIp"));
    if (n < s.first || n > s.last) {
      throw new ValidationError(
        "guestIp",
        `${requested} is not a guest address of ${s.cidr.network}/${s.cidr.prefix} (its network, gateway and broadcast addresses are not)`,
        "ERR_INVALID_ADDRESS",
      );
    }
    const holder = state.ipHolder(n);
    if (holder !== undefined)
      throw new ConflictError(`address ${requested} is already held by VM "${holder}"`, holder);
    return requested;
  }
  const c = ipCursor(state, s);
  const found = firstGap(state, c, s.last) ?? firstGap(state, s.first, c - 1);
  if (found === undefined) {
    throw new ExhaustedError(`address pool ${s.cidr.network}/${s.cidr.prefix} is exhausted`);
  }
  state.setCursor("ip", found + 1 > s.last ? s.first : found + 1);
  return intToIPv4(found);
}

/**
 * Picks the first TAP name for `vmId` ({@link tapNameFor} attempt 0, 1, …) that no record holds and
 * that is not in `avoid`.
 * @throws ExhaustedError after {@link MAX_TAP_NAME_ATTEMPTS} taken names.
 */
export function allocateTapName(
  state: HostState,
  vmId: string,
  avoid: ReadonlySet<string> = new Set(),
): string {
  for (let k = 0; k < MAX_TAP_NAME_ATTEMPTS; k++) {
    const name = tapNameFor(vmId, k);
    if (!avoid.has(name) && state.tapHolder(name) === undefined) return name;
  }
  throw new ExhaustedError(`no free TAP name for VM "${vmId}" after ${MAX_TAP_NAME_ATTEMPTS} attempts`);
}

function recordedHolder(
  state: HostState,
  protocol: Protocol,
  hostIp: string,
  port: number,
): string | undefined {
  return state.portHolders(protocol, port).find((h) => hostIpsClash(h.hostIp, hostIp))?.vmId;
}

function pickedClash(
  picked: readonly PortRecord[],
  protocol: Protocol,
  hostIp: string,
  port: number,
): boolean {
  return picked.some((p) => p.protocol === protocol && p.hostPort === port && hostIpsClash(p.hostIp, hostIp));
}

/** Index of the first element of sorted `ports` greater than `after` (0 when none is). */
function nextIndex(ports: readonly number[], after: number): number {
  let lo = 0;
  let hi = ports.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((ports[mid] as number) <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo === ports.length ? 0 : lo;
}

/**
 * Picks host ports for every wanted port: exact ports first, then "any port of a range" (first fit),
 * then ephemeral ones (next-fit over `ephemeral`, per protocol). A candidate must clash with no
 * recorded port (bind(2) rules: same protocol and port, same address or either is 0.0.0.0), nor with
 * one picked earlier in this call, and `take` must get it (not held by another process on the host).
 * @returns the port records in the order of `wants`, and their handles.
 * @throws ConflictError when an exact port is recorded for another VM, or held by another process;
 *   ExhaustedError when a range or the ephemeral ports have no free port left, or more than
 *   {@link MAX_BUSY_CANDIDATES} candidates of one wanted port were held by other processes.
 *   Handles taken before a throw are given to `drop`.
 */
export function allocatePorts(
  state: HostState,
  wants: readonly PortWant[],
  ephemeral: readonly number[],
  take: PortTaker,
  drop: (handle: number) => void,
): { ports: PortRecord[]; handles: number[] } {
  const picked: PortRecord[] = [];
  const handles: number[] = [];
  const slots: Array<{ rec: PortRecord; handle: number } | undefined> = wants.map(() => undefined);
  const order = wants.map((w, i) => ({ w, i })).sort((a, b) => rank(a.w) - rank(b.w) || a.i - b.i);
  try {
    for (const { w, i } of order) {
      const got = pickOne(state, w, ephemeral, picked, take);
      picked.push(got.rec);
      handles.push(got.handle);
      slots[i] = got;
    }
  } catch (e) {
    for (const h of handles) drop(h);
    throw e;
  }
  const done = slots as Array<{ rec: PortRecord; handle: number }>;
  return { ports: done.map((s) => s.rec), handles: done.map((s) => s.handle) };
}

function rank(w: PortWant): number {
  return w.host.kind === "exact" ? 0 : w.host.kind === "range" ? 1 : 2;
}

function pickOne(
  state: HostState,
  w: PortWant,
  ephemeral: readonly number[],
  picked: readonly PortRecord[],
  take: PortTaker,
): { rec: PortRecord; handle: number } {
  const rec = (port: number): PortRecord => ({
    protocol: w.protocol,
    hostIp: w.hostIp,
    hostPort: port,
    guestPort: w.guestPort,
    ephemeral: w.host.kind !== "exact",
  });
  if (w.host.kind === "exact") {
    const port = w.host.port;
    const holder = recordedHolder(state, w.protocol, w.hostIp, port);
    if (holder !== undefined) {
      throw new ConflictError(
        `${w.protocol} port ${port} on ${w.hostIp} is already published by VM "${holder}"`,
        holder,
      );
    }
    const handle = take(w.protocol, w.hostIp, port);
    if (handle === undefined) {
      throw new ConflictError(
        `${w.protocol} port ${port} on ${w.hostIp} is in use by another process on this host`,
      );
    }
    return { rec: rec(port), handle };
  }
  const candidates =
    w.host.kind === "range"
      ? Array.from(
          { length: w.host.end - w.host.start + 1 },
          (_, k) => (w.host as { start: number }).start + k,
        )
      : ephemeral;
  const cursorName = `port:${w.protocol}`;
  const from = w.host.kind === "ephemeral" ? nextIndex(candidates, state.cursor(cursorName) ?? 0) : 0;
  let busy = 0;
  for (let k = 0; k < candidates.length; k++) {
    const port = candidates[(from + k) % candidates.length] as number;
    if (pickedClash(picked, w.protocol, w.hostIp, port)) continue;
    if (recordedHolder(state, w.protocol, w.hostIp, port) !== undefined) continue;
    const handle = take(w.protocol, w.hostIp, port);
    if (handle === undefined) {
      if (++busy >= MAX_BUSY_CANDIDATES) break;
      continue;
    }
    if (w.host.kind === "ephemeral") state.setCursor(cursorName, port);
    return { rec: rec(port), handle };
  }
  const where =
    w.host.kind === "range"
      ? `${w.host.start}-${w.host.end}`
      : `the ephemeral ports (${ephemeral[0]}-${ephemeral[ephemeral.length - 1]})`;
  throw new ExhaustedError(
    `no free ${w.protocol} port in ${where} on ${w.hostIp}` +
      (busy > 0 ? ` (${busy} candidates were in use by other processes on this host)` : ""),
  );
}

/**
 * The VM being allocated has a record already (a retried attach, one left half-done, or another
 * process's): the caller reads that record and decides.
 */
export class VmRecordedError extends ConflictError {
  readonly vmId: string;

  constructor(vmId: string) {
    super(`VM "${vmId}" is already recorded (attached by another process?)`);
    this.vmId = vmId;
  }
}

/**
 * Allocates a whole VM inside the caller's transaction and inserts its record in state `attaching`,
 * owned by `owner`.
 * @throws VmRecordedError (a ConflictError) when the VM is already recorded; as {@link allocateIp},
 *   {@link allocateTapName}, {@link allocatePorts}; port handles are dropped on any throw.
 */
export function allocateVm(
  state: HostState,
  s: SubnetInfo,
  req: VmRequest,
  ephemeral: readonly number[],
  owner: ProcessIdentity,
  take: PortTaker,
  drop: (handle: number) => void,
): Allocation {
  // Checked inside the transaction: another process may have recorded this VM meanwhile.
  if (state.get(req.vmId)) throw new VmRecordedError(req.vmId);
  const guestIp = allocateIp(state, s, req.guestIp);
  const tap = allocateTapName(state, req.vmId);
  const got = allocatePorts(state, req.wants, ephemeral, take, drop);
  // The order the database lists them in (see HostState.get), with each handle kept beside its port.
  const pairs = got.ports
    .map((p, i) => ({ p, h: got.handles[i] as number }))
    .sort(
      (a, b) =>
        a.p.protocol.localeCompare(b.p.protocol) ||
        a.p.hostPort - b.p.hostPort ||
        a.p.hostIp.localeCompare(b.p.hostIp),
    );
  const ports = pairs.map((x) => x.p);
  const handles = pairs.map((x) => x.h);
  const now = Date.now();
  const record: VmRecord = {
    vmId: req.vmId,
    state: "attaching",
    tap,
    guestIp,
    guestMac: guestMac(guestIp),
    mtu: req.mtu,
    uid: req.uid,
    gid: req.gid,
    dns: req.dns,
    request: req.json,
    owner,
    ports,
    createdAt: now,
    updatedAt: now,
  };
  try {
    state.insert(record);
  } catch (e) {
    for (const h of handles) drop(h);
    throw e;
  }
  return { record, handles };
}
