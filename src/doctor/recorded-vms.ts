/**
 * The VMs HostNetwork recorded, read without changing any file: no schema migration and no WAL
 * set-up (openStateDb does both), and no -wal/-shm files created (a read-only SQLite connection to a
 * WAL database creates them when absent).
 */
import { existsSync, readFileSync } from "node:fs";
import Database from "better-sqlite3";
import { MvnetError } from "../core/errors.js";
import { HostState, type VmRecord } from "../store/host-state.js";
import { SCHEMA_VERSION } from "../store/state-db.js";

/**
 * Opens the database at `path` for reading only. Without a `-wal` file every committed transaction is
 * in the main file (the last connection checkpoints and removes the WAL on close), so a copy in
 * memory is read; its header's read/write versions (bytes 18–19, https://sqlite.org/fileformat.html
 * §1.3.3) are set from 2 (WAL) to 1 (rollback journal), as SQLite cannot open an in-memory copy in
 * WAL mode. With a `-wal` file (a process has it open) the files exist already and a read-only
 * connection uses them.
 */
function openForReading(path: string): Database.Database {
  if (existsSync(`${path}-wal`)) return new Database(path, { readonly: true, fileMustExist: true });
  const bytes = readFileSync(path);
  if (bytes.length >= 20 && bytes[18] === 2 && bytes[19] === 2) {
    bytes[18] = 1;
    bytes[19] = 1;
  }
  return new Database(bytes);
}

/**
 * Every VM record in the state database at `path`.
 * @returns undefined when there is no file at `path`; [] for a database without our schema yet.
 * @throws MvnetError (`ERR_STATE_SCHEMA`) for a newer schema; better-sqlite3's SqliteError when the
 *   file is not a database.
 */
export function readRecordedVms(path: string): VmRecord[] | undefined {
  if (!existsSync(path)) return undefined;
  const db = openForReading(path);
  try {
    const version = db.pragma("user_version", { simple: true }) as number;
    if (version === 0) return [];
    if (version > SCHEMA_VERSION) {
      throw new MvnetError(
        "ERR_STATE_SCHEMA",
        `${path} has schema version ${version}, newer than ${SCHEMA_VERSION}`,
      );
    }
    return new HostState(db, path).list();
  } finally {
    db.close();
  }
}
