/**
 * The records HostNetwork keeps per VM (its TAP, address, MAC, ports and how far its attach or detach
 * got) and the primitives allocation is made of. Every change goes through {@link HostState.write},
 * an IMMEDIATE transaction: the database is the lock between processes.
 */

import { resolve } from "node:path";
import type Database from "better-sqlite3";
import type { Protocol } from "../core/validate.js";
import { intToIPv4, ipv4ToInt } from "../core/validate.js";
import type { ProcessIdentity } from "../kernel/proc.js";
import { DEFAULT_STATE_DB, openStateDb, type StateDb } from "./state-db.js";

/** How far a VM's attachment got: being attached, attached, or being detached. */
export type VmState = "attaching" | "attached" | "detaching";

/** One published host port of a VM. */
export interface PortRecord {
  protocol: Protocol;
  /** Host address the port is published on; `0.0.0.0` for every address of the host. */
  hostIp: string;
  hostPort: number;
  guestPort: number;
  /** True when the host port was picked by us (not asked for). */
  ephemeral: boolean;
}

/** Everything recorded about one VM. */
export interface VmRecord {
  vmId: string;
  state: VmState;
  /** TAP name (≤ 15 bytes). */
  tap: string;
  guestIp: string;
  guestMac: string;
  /** MTU in bytes. */
  mtu: number;
  uid?: number;
  gid?: number;
  dns: string[];
  /** The normalised attach request (JSON), to tell a retried attach from a different one. */
  request: string;
  /** The process working on an `attaching` / `detaching` record. */
  owner?: ProcessIdentity;
  ports: PortRecord[];
  /** ms since the epoch. */
  createdAt: number;
  updatedAt: number;
}

interface VmRow {
  vm_id: string;
  state: VmState;
  tap: string;
  guest_ip: number;
  mac: string;
  mtu: number;
  uid: number | null;
  gid: number | null;
  dns: string;
  request: string;
  owner_pid: number | null;
  owner_start: string | null;
  created_at: number;
  updated_at: number;
}

interface PortRow {
  vm_id: string;
  protocol: Protocol;
  host_ip: string;
  host_port: number;
  guest_port: number;
  ephemeral: number;
}

function toPort(r: PortRow): PortRecord {
  return {
    protocol: r.protocol,
    hostIp: r.host_ip,
    hostPort: r.host_port,
    guestPort: r.guest_port,
    ephemeral: r.ephemeral === 1,
  };
}

function toRecord(r: VmRow, ports: PortRecord[]): VmRecord {
  const rec: VmRecord = {
    vmId: r.vm_id,
    state: r.state,
    tap: r.tap,
    guestIp: intToIPv4(r.guest_ip),
    guestMac: r.mac,
    mtu: r.mtu,
    dns: JSON.parse(r.dns) as string[],
    request: r.request,
    ports,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
  if (r.uid !== null) rec.uid = r.uid;
  if (r.gid !== null) rec.gid = r.gid;
  if (r.owner_pid !== null) rec.owner = { pid: r.owner_pid, start: r.owner_start ?? "" };
  return rec;
}

const byPort = (a: PortRecord, b: PortRecord) =>
  a.protocol.localeCompare(b.protocol) || a.hostPort - b.hostPort || a.hostIp.localeCompare(b.hostIp);

/** Records of `rows`, in their order, each with its ports from `portRows` (sorted as {@link HostState.get} sorts them). */
function withPorts(rows: readonly VmRow[], portRows: readonly PortRow[]): VmRecord[] {
  const ports = new Map<string, PortRecord[]>();
  for (const p of portRows) {
    const list = ports.get(p.vm_id);
    if (list) list.push(toPort(p));
    else ports.set(p.vm_id, [toPort(p)]);
  }
  return rows.map((r) => toRecord(r, (ports.get(r.vm_id) ?? []).sort(byPort)));
}

/**
 * The VM records in one state database. Methods are synchronous (better-sqlite3); outside
 * {@link write} each statement is its own transaction.
 */
export class HostState {
  readonly db: StateDb;
  readonly path: string;
  /** Prepared statements by SQL text: compiling one costs more than running it. */
  readonly #stmts = new Map<string, Database.Statement>();

  /** Wraps an open database (see {@link HostState.open}). */
  constructor(db: StateDb, path: string) {
    this.db = db;
    this.path = path;
  }

  /**
   * Opens the database at `path` (default `/var/lib/microvm-net/state.db`; a relative path is resolved
   * against the working directory now), creating it when needed.
   * @throws as openStateDb.
   */
  static open(path: string = DEFAULT_STATE_DB): HostState {
    // Absolute from here on: a checkpoint worker started later (store/checkpointer.ts) must open the
    // same file even if the process has changed its working directory since.
    const abs = path === ":memory:" ? path : resolve(path);
    return new HostState(openStateDb(abs), abs);
  }

  #sql(text: string): Database.Statement {
    let st = this.#stmts.get(text);
    if (!st) {
      st = this.db.prepare(text);
      this.#stmts.set(text, st);
    }
    return st;
  }

  /** Closes the database. */
  close(): void {
    if (this.db.open) this.db.close();
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction (the write lock is taken at BEGIN, so reads inside see
   * what no other process can change until COMMIT). A throw rolls everything back. Nested calls
   * become savepoints of the outer transaction.
   */
  write<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /** A value of the meta table, or undefined. */
  getMeta(key: string): string | undefined {
    const r = this.#sql("SELECT value FROM meta WHERE key = ?").get(key) as { value: string } | undefined;
    return r?.value;
  }

  /** Sets a value of the meta table. */
  setMeta(key: string, value: string): void {
    this.#sql(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    ).run(key, value);
  }

  /** The record of `vmId`, or undefined. */
  get(vmId: string): VmRecord | undefined {
    const row = this.#sql("SELECT * FROM vms WHERE vm_id = ?").get(vmId) as VmRow | undefined;
    if (!row) return undefined;
    const ports = (this.#sql("SELECT * FROM ports WHERE vm_id = ?").all(vmId) as PortRow[]).map(toPort);
    return toRecord(row, ports.sort(byPort));
  }

  /**
   * The records of `vmIds` that exist, in one pass: two statements whatever the count (json_each
   * over the ids, https://sqlite.org/json1.html#jeach), not two per VM — detaching hundreds of VMs
   * at once must not hold the event loop for a statement pair per VM.
   * @returns records by VM id; ids without a record are absent.
   */
  getMany(vmIds: readonly string[]): Map<string, VmRecord> {
    const ids = JSON.stringify(vmIds);
    const rows = this.#sql("SELECT * FROM vms WHERE vm_id IN (SELECT value FROM json_each(?))").all(
      ids,
    ) as VmRow[];
    const ports = this.#sql("SELECT * FROM ports WHERE vm_id IN (SELECT value FROM json_each(?))").all(
      ids,
    ) as PortRow[];
    return new Map(withPorts(rows, ports).map((r) => [r.vmId, r]));
  }

  /**
   * State and owner of each of `vmIds` that has a record, in one statement of four columns: what
   * deciding whether a VM may be detached needs, at a fraction of a full record's cost (a full row
   * is ≈ 5–10 µs to materialise; a batch of a thousand must not hold the event loop for that).
   */
  statesOf(vmIds: readonly string[]): Map<string, { state: VmState; owner?: ProcessIdentity }> {
    const rows = this.#sql(
      "SELECT vm_id, state, owner_pid, owner_start FROM vms WHERE vm_id IN (SELECT value FROM json_each(?))",
    ).all(JSON.stringify(vmIds)) as Array<Pick<VmRow, "vm_id" | "state" | "owner_pid" | "owner_start">>;
    return new Map(
      rows.map((r) => [
        r.vm_id,
        r.owner_pid === null
          ? { state: r.state }
          : { state: r.state, owner: { pid: r.owner_pid, start: r.owner_start ?? "" } },
      ]),
    );
  }

  /** Every record, by VM id. */
  list(): VmRecord[] {
    const rows = this.#sql("SELECT * FROM vms ORDER BY vm_id").all() as VmRow[];
    return withPorts(rows, this.#sql("SELECT * FROM ports").all() as PortRow[]);
  }

  /** Number of records. */
  count(): number {
    return (this.#sql("SELECT count(*) AS n FROM vms").get() as { n: number }).n;
  }

  /**
   * Inserts a new record with its ports.
   * @throws better-sqlite3's SqliteError (SQLITE_CONSTRAINT_*) when the VM, TAP name, address, MAC
   *   or a port is already recorded — callers check first, inside the same transaction.
   */
  insert(rec: VmRecord): void {
    this.#sql(
      `INSERT INTO vms (vm_id, state, tap, guest_ip, mac, mtu, uid, gid, dns, request, owner_pid, owner_start,
                          created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      rec.vmId,
      rec.state,
      rec.tap,
      ipv4ToInt(rec.guestIp),
      rec.guestMac,
      rec.mtu,
      rec.uid ?? null,
      rec.gid ?? null,
      JSON.stringify(rec.dns),
      rec.request,
      rec.owner?.pid ?? null,
      rec.owner?.start ?? null,
      rec.createdAt,
      rec.updatedAt,
    );
    const add = this.#sql(
      "INSERT INTO ports (vm_id, protocol, host_ip, host_port, guest_port, ephemeral) VALUES (?, ?, ?, ?, ?, ?)",
    );
    for (const p of rec.ports)
      add.run(rec.vmId, p.protocol, p.hostIp, p.hostPort, p.guestPort, p.ephemeral ? 1 : 0);
  }

  /** Sets the state and the owner (none when `owner` is undefined). @returns false when there is no such record. */
  setState(vmId: string, state: VmState, owner?: ProcessIdentity): boolean {
    const r = this.#sql(
      "UPDATE vms SET state = ?, owner_pid = ?, owner_start = ?, updated_at = ? WHERE vm_id = ?",
    ).run(state, owner?.pid ?? null, owner?.start ?? null, Date.now(), vmId);
    return r.changes === 1;
  }

  /**
   * {@link setState} for several records in one statement.
   * @returns how many records changed.
   */
  setStateMany(vmIds: readonly string[], state: VmState, owner?: ProcessIdentity): number {
    return this.#sql(
      "UPDATE vms SET state = ?, owner_pid = ?, owner_start = ?, updated_at = ? WHERE vm_id IN (SELECT value FROM json_each(?))",
    ).run(state, owner?.pid ?? null, owner?.start ?? null, Date.now(), JSON.stringify(vmIds)).changes;
  }

  /** Renames the TAP of a record. */
  setTap(vmId: string, tap: string): void {
    this.#sql("UPDATE vms SET tap = ?, updated_at = ? WHERE vm_id = ?").run(tap, Date.now(), vmId);
  }

  /** Deletes a record and its ports. @returns false when there was none. */
  delete(vmId: string): boolean {
    return this.#sql("DELETE FROM vms WHERE vm_id = ?").run(vmId).changes === 1;
  }

  /**
   * Deletes several records and their ports in one statement.
   * @returns how many records were deleted.
   */
  deleteMany(vmIds: readonly string[]): number {
    return this.#sql("DELETE FROM vms WHERE vm_id IN (SELECT value FROM json_each(?))").run(
      JSON.stringify(vmIds),
    ).changes;
  }

  /** The VM whose TAP is called `name`, or undefined. */
  tapHolder(name: string): string | undefined {
    const r = this.#sql("SELECT vm_id FROM vms WHERE tap = ?").get(name) as { vm_id: string } | undefined;
    return r?.vm_id;
  }

  /** The VM holding guest address `ip` (as an unsigned 32-bit integer), or undefined. */
  ipHolder(ip: number): string | undefined {
    const r = this.#sql("SELECT vm_id FROM vms WHERE guest_ip = ?").get(ip) as { vm_id: string } | undefined;
    return r?.vm_id;
  }

  /**
   * Held guest addresses ≥ `from` (unsigned 32-bit integers), ascending, at most `limit` of them
   * (for a next-fit search that stops at the first gap).
   */
  ipsFrom(from: number, limit: number): number[] {
    return (
      this.#sql("SELECT guest_ip FROM vms WHERE guest_ip >= ? ORDER BY guest_ip LIMIT ?").all(
        from,
        limit,
      ) as Array<{ guest_ip: number }>
    ).map((r) => r.guest_ip);
  }

  /** Every recorded (VM, host address) on `protocol`/`port`. */
  portHolders(protocol: Protocol, port: number): Array<{ vmId: string; hostIp: string }> {
    return (
      this.#sql("SELECT vm_id, host_ip FROM ports WHERE protocol = ? AND host_port = ?").all(
        protocol,
        port,
      ) as Array<{
        vm_id: string;
        host_ip: string;
      }>
    ).map((r) => ({ vmId: r.vm_id, hostIp: r.host_ip }));
  }

  /** A next-fit cursor (`ip`, `port:tcp`, `port:udp`), or undefined before its first use. */
  cursor(name: string): number | undefined {
    const r = this.#sql("SELECT value FROM cursors WHERE name = ?").get(name) as
      | { value: number }
      | undefined;
    return r?.value;
  }

  /** Moves a next-fit cursor. */
  setCursor(name: string, value: number): void {
    this.#sql(
      "INSERT INTO cursors (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
    ).run(name, value);
  }
}
