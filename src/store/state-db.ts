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
 *
 * Schema 2 (PRAGMA user_version = 2): every table is `WITHOUT ROWID`
 * (https://sqlite.org/withoutrowid.html), so a table with a TEXT or composite primary key is one
 * B-tree ordered by that key instead of a rowid table plus an automatic index, and the MAC has no
 * UNIQUE index (it is derived from the guest address, see {@link tablesV2}). A commit writes one WAL
 * frame per B-tree page it changed: an attach publishing one port wrote 9.2 frames in its allocation
 * transaction with schema 1 and 7.0 with schema 2 (averages over 200 attaches into an empty
 * database; 9.8 and 7.6 with 1 000 VMs recorded). The `vms` rows (≈ 250 bytes, mostly the request
 * JSON) are above the ≈ 1/20 of a page that page advises for WITHOUT ROWID rows, and VM ids
 * arrive in no key order, so its leaves split often: `vms` alone writes ≈ 2 frames per attach, what
 * the rowid table and its vm_id index wrote together; the saving is in `ports` (one tree instead of
 * two) and the MAC index. Nothing in src/ reads a rowid or relies on rowid order: queries sort
 * (`ORDER BY`, or in code) or collect rows into maps.
 *
 * Schema 1 (the same columns in rowid tables, with `mac UNIQUE`) is migrated in place when a file is
 * opened, following SQLite's procedure for changing a table's schema
 * (https://sqlite.org/lang_altertable.html#otheralter, see {@link migrateV1}); all rows are kept.
 * A process still running the previous version keeps working on its open connection (same columns),
 * but that version refuses to open the migrated file anew (its schema is newer).
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { MvnetError } from "../core/errors.js";

/** Default path of the state database. */
export const DEFAULT_STATE_DB = "/var/lib/microvm-net/state.db";

/** Schema version this code writes (PRAGMA user_version). */
export const SCHEMA_VERSION = 2;

/** How long a statement waits for another process's write lock before failing with SQLITE_BUSY, ms. */
const BUSY_TIMEOUT_MS = 15_000;

/**
 * The tables of schema 2, each named `<table><suffix>`: the migration from schema 1 creates them
 * beside the old ones first (suffix `_v2`), a fresh database under their own names (suffix "").
 * `ports.vm_id` references `vms` by its final name in both cases: the old `vms` is dropped, and the
 * new one renamed to it, before anything is checked against that reference.
 */
function tablesV2(suffix: string): string {
  return `
CREATE TABLE meta${suffix} (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE vms${suffix} (
  vm_id       TEXT PRIMARY KEY,
  state       TEXT NOT NULL CHECK (state IN ('attaching', 'attached', 'detaching')),
  tap         TEXT NOT NULL UNIQUE,
  guest_ip    INTEGER NOT NULL UNIQUE,
  -- Not UNIQUE: the MAC is derived from guest_ip (allocateVm stores guestMac(guestIp), guest/mac.ts:
  -- 06:00 and the address's four bytes, an injective mapping), so guest_ip's UNIQUE already makes it
  -- unique; an index of its own would only cost another B-tree page written per attach.
  mac         TEXT NOT NULL,
  mtu         INTEGER NOT NULL,
  uid         INTEGER,
  gid         INTEGER,
  dns         TEXT NOT NULL,
  request     TEXT NOT NULL,
  owner_pid   INTEGER,
  owner_start TEXT,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE ports${suffix} (
  vm_id      TEXT NOT NULL REFERENCES vms(vm_id) ON DELETE CASCADE,
  protocol   TEXT NOT NULL CHECK (protocol IN ('tcp', 'udp')),
  host_ip    TEXT NOT NULL,
  host_port  INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
  guest_port INTEGER NOT NULL CHECK (guest_port BETWEEN 1 AND 65535),
  ephemeral  INTEGER NOT NULL,
  PRIMARY KEY (protocol, host_port, host_ip)
) WITHOUT ROWID;
CREATE TABLE cursors${suffix} (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
`;
}

/** Indexes of schema 2 beyond those of PRIMARY KEY and UNIQUE (deleting a VM cascades to its ports by vm_id). */
const INDEXES_V2 = "CREATE INDEX ports_by_vm ON ports (vm_id);";

/** Tables of both schemas with the columns copied by the migration, in the order the copy runs (parents first). */
const COLUMNS: ReadonlyArray<readonly [table: string, columns: string]> = [
  ["meta", "key, value"],
  [
    "vms",
    "vm_id, state, tap, guest_ip, mac, mtu, uid, gid, dns, request, owner_pid, owner_start, created_at, updated_at",
  ],
  ["ports", "vm_id, protocol, host_ip, host_port, guest_port, ephemeral"],
  ["cursors", "name, value"],
];

/**
 * Rebuilds schema 1's tables as schema 2's inside the caller's transaction, which must run with
 * foreign keys OFF (https://sqlite.org/lang_altertable.html#otheralter: with them on, dropping the old
 * `vms` would cascade into `ports`, and the pragma is a no-op inside a transaction): new tables
 * created beside the old, rows copied, old tables dropped (their indexes with them), new ones renamed,
 * the index recreated, then `PRAGMA foreign_key_check` must find nothing.
 * @throws MvnetError (`ERR_STATE_SCHEMA`) when a port row names a VM that has no record (written by
 *   something that bypassed the foreign key), leaving the caller's transaction to roll back;
 *   SqliteError (SQLITE_CONSTRAINT_*) when a row breaks a constraint schema 1 did not enforce (a NULL
 *   primary key, which a rowid table accepts).
 */
function migrateV1(db: Database.Database, path: string): void {
  db.exec(tablesV2("_v2"));
  for (const [table, cols] of COLUMNS)
    db.exec(`INSERT INTO ${table}_v2 (${cols}) SELECT ${cols} FROM ${table}`);
  // Children before parents, though with foreign keys off the order only keeps the intent plain.
  for (const [table] of [...COLUMNS].reverse()) db.exec(`DROP TABLE ${table}`);
  for (const [table] of COLUMNS) db.exec(`ALTER TABLE ${table}_v2 RENAME TO ${table}`);
  db.exec(INDEXES_V2);
  const broken = db.pragma("foreign_key_check") as Array<{
    table: string;
    rowid: number | null;
    parent: string;
  }>;
  if (broken.length > 0) {
    throw new MvnetError(
      "ERR_STATE_SCHEMA",
      `${path}: cannot migrate schema 1 to ${SCHEMA_VERSION}: ${broken.length} row(s) of ${broken[0]?.table} ` +
        `name a VM with no record in ${broken[0]?.parent} (the file was changed with foreign keys off); nothing was changed`,
    );
  }
}

/** The handle type the store works with. */
export type StateDb = Database.Database;

/**
 * Opens (creating when needed) the state database at `path`, in WAL mode with foreign keys on, and
 * brings its schema to {@link SCHEMA_VERSION}: a new file gets schema 2 directly, a schema 1 file is
 * migrated in place (rows kept). The version is read inside the IMMEDIATE transaction that would
 * migrate, so of two processes opening a schema 1 file at once the second waits for the first's
 * write lock, then finds version 2 and changes nothing. The directory is created with mode 0700.
 * @throws MvnetError (`ERR_STATE_SCHEMA`) when the file was written by a newer version of this
 *   library, or is a schema 1 file whose ports name missing VMs (nothing changed, see migrateV1);
 *   better-sqlite3's SqliteError when the file is not a database or cannot be opened.
 */
export function openStateDb(path: string = DEFAULT_STATE_DB): StateDb {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
  try {
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    // Off while the schema may be rebuilt (see migrateV1): the pragma cannot change inside a transaction.
    db.pragma("foreign_keys = OFF");
    const migrate = db.transaction(() => {
      const version = db.pragma("user_version", { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        throw new MvnetError(
          "ERR_STATE_SCHEMA",
          `${path} has schema version ${version}, newer than this library's ${SCHEMA_VERSION}`,
        );
      }
      if (version === SCHEMA_VERSION) return;
      if (version === 0) db.exec(tablesV2("") + INDEXES_V2);
      else migrateV1(db, path);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
    migrate.immediate();
    db.pragma("foreign_keys = ON");
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}
