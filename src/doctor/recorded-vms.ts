/**
 * The VMs HostNetwork recorded, read without changing the database: opened read-only, no schema
 * migration, no WAL set-up (openStateDb would do both).
 */
import { existsSync } from "node:fs";
import Database from "better-sqlite3";
import { MvnetError } from "../core/errors.js";
import { HostState, type VmRecord } from "../store/host-state.js";
import { SCHEMA_VERSION } from "../store/state-db.js";

/**
 * Every VM record in the state database at `path`.
 * @returns undefined when there is no file at `path`; [] for a database without our schema yet.
 * @throws MvnetError (`ERR_STATE_SCHEMA`) for a newer schema; better-sqlite3's SqliteError when the
 *   file is not a database.
 */
export function readRecordedVms(path: string): VmRecord[] | undefined {
  if (!existsSync(path)) return undefined;
  const db = new Database(path, { readonly: true, fileMustExist: true });
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
