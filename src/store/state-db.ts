/**
 * The durable state database (SQLite through better-sqlite3): what HostNetwork has allocated and
 * attached, so a restarted process, or another process on the same host, sees it.
 *
 * Why SQLite in WAL mode: transactions make an allocation all-or-nothing; `BEGIN IMMEDIATE` takes the
 * database's write lock up front, so two processes allocating at once are serialised by SQLite's
 * file locks (https://sqlite.org/lockingv3.html, https://sqlite.org/wal.html) and can never both take
 * the same address or port; readers never block the writer.
 *
 * Durability (`synchronous = NORMAL` in WAL mode, https://sqlite.org/pragma.html#pragma_synchronous):
 * a committed transaction survives a crash of the process (SIGKILL included) — it is in the WAL file
 * when COMMIT returns. A power loss or kernel crash can lose the last transactions committed before
 * it (the WAL is synced at checkpoints, not at every commit), never corrupt the database. The kernel
 * loses all its TAPs and rules in a power loss anyway; `reconcile()` rebuilds them from what the
 * database kept, and `gc(liveVmIds)` drops records of VMs that did not come back.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { MvnetError } from "../core/errors.js";

/** Default path of the state database. */
export const DEFAULT_STATE_DB = "/var/lib/microvm-net/state.db";

/** Schema version this code writes (PRAGMA user_version). */
export const SCHEMA_VERSION = 1;

/** How long a statement waits for another process's write lock before failing with SQLITE_BUSY, ms. */
const BUSY_TIMEOUT_MS = 15_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vms (
  vm_id       TEXT PRIMARY KEY,
  state       TEXT NOT NULL CHECK (state IN ('attaching', 'attached', 'detaching')),
  tap         TEXT NOT NULL UNIQUE,
  guest_ip    INTEGER NOT NULL UNIQUE,
  mac         TEXT NOT NULL UNIQUE,
  mtu         INTEGER NOT NULL,
  uid         INTEGER,
  gid         INTEGER,
  dns         TEXT NOT NULL,
  request     TEXT NOT NULL,
  owner_pid   INTEGER,
  owner_start TEXT,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ports (
  vm_id      TEXT NOT NULL REFERENCES vms(vm_id) ON DELETE CASCADE,
  protocol   TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp')),
  host_ip    TEXT NOT NULL,
  host_port  INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
  guest_port INTEGER NOT NULL CHECK (guest_port BETWEEN 1 AND 65535),
  ephemeral  INTEGER NOT NULL,
  PRIMARY KEY (protocol, host_port, host_ip)
);
CREATE INDEX IF NOT EXISTS ports_by_vm ON ports (vm_id);
CREATE TABLE IF NOT EXISTS cursors (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
`;

/** The handle type the store works with. */
export type StateDb = Database.Database;

/**
 * Opens (creating when needed) the state database at `path`, in WAL mode with foreign keys on, and
 * brings its schema to {@link SCHEMA_VERSION}. The directory is created with mode 0700.
 * @throws MvnetError (`ERR_STATE_SCHEMA`) when the file was written by a newer version of this
 *   library; better-sqlite3's SqliteError when the file is not a database or cannot be opened.
 */
export function openStateDb(path: string = DEFAULT_STATE_DB): StateDb {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.pragma("foreign_keys = ON");
    const migrate = db.transaction(() => {
      const version = db.pragma("user_version", { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new MvnetError(
          "ERR_STATE_SCHEMA",
          `${path} has schema version ${version}, newer than this library's ${SCHEMA_VERSION}`,
        );
      }
      if (version < SCHEMA_VERSION) {
        db.exec(SCHEMA);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
      }
    });
    migrate.immediate();
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}
