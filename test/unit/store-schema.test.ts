// The state database's schema: a new file gets schema 2 (WITHOUT ROWID tables), a schema 1 file is
// migrated in place with every row kept, once, even by two processes opening it at the same moment.
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MvnetError } from "../../src/core/errors.js";
import { HostState, type VmRecord } from "../../src/store/host-state.js";
import { openStateDb, SCHEMA_VERSION } from "../../src/store/state-db.js";

const root = new URL("../..", import.meta.url).pathname;

// Schema 1 exactly as src/store/state-db.ts created it before schema 2 (commit b2a1f20).
const V1_SCHEMA = `
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

const TABLES = { meta: "key", vms: "vm_id", ports: "protocol, host_port, host_ip", cursors: "name" };

const vm = (vmId: string, n: number, extra: Partial<VmRecord> = {}): VmRecord => ({
  vmId,
  state: "attached",
  tap: `mvtap-${vmId}`,
  guestIp: `10.200.0.${n}`,
  guestMac: `06:00:0a:c8:00:${n.toString(16).padStart(2, "0")}`,
  mtu: 1500,
  dns: [],
  request: JSON.stringify({ vmId, n }),
  ports: [],
  createdAt: 1_700_000_000_000 + n,
  updatedAt: 1_700_000_000_500 + n,
  ...extra,
});

const RECORDS: VmRecord[] = [
  vm("alpha", 2, {
    uid: 1000,
    gid: 1001,
    dns: ["192.0.2.53"],
    ports: [
      { protocol: "tcp", hostIp: "0.0.0.0", hostPort: 30000, guestPort: 80, ephemeral: true },
      { protocol: "udp", hostIp: "127.0.0.1", hostPort: 5353, guestPort: 53, ephemeral: false },
    ],
  }),
  vm("beta", 3, { state: "attaching", owner: { pid: 4242, start: "12345" } }),
  vm("gamma", 4, {
    state: "detaching",
    mtu: 9000,
    owner: { pid: 4343, start: "67890" },
    ports: [{ protocol: "tcp", hostIp: "0.0.0.0", hostPort: 8080, guestPort: 8080, ephemeral: false }],
  }),
];

/** Writes a schema 1 database at `path` holding {@link RECORDS}, cursors and a meta value; closed (no -wal left). */
function makeV1(path: string, tamper?: (db: Database.Database) => void): void {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("foreign_keys = ON");
  db.exec(V1_SCHEMA);
  db.pragma("user_version = 1");
  const st = new HostState(db, path);
  for (const r of RECORDS) st.insert(r);
  st.setCursor("ip", 167_772_165);
  st.setCursor("port:tcp", 30000);
  st.setMeta("subnet", "10.200.0.0/16");
  tamper?.(db);
  db.close();
}

/** Every row of every table, in primary-key order. */
function rows(db: Database.Database): Record<string, unknown[]> {
  return Object.fromEntries(
    Object.entries(TABLES).map(([t, key]) => [t, db.prepare(`SELECT * FROM ${t} ORDER BY ${key}`).all()]),
  );
}

/** A table's shape as SQLite reports it: columns, indexes (unique or not, their columns), foreign keys. */
function shape(db: Database.Database, table: string) {
  const indexes = (
    db.pragma(`index_list(${table})`) as Array<{ name: string; unique: number; origin: string }>
  )
    .map((i) => ({
      unique: i.unique,
      origin: i.origin,
      cols: (db.pragma(`index_info(${i.name})`) as Array<{ name: string }>).map((c) => c.name).join(","),
    }))
    .sort((a, b) => a.cols.localeCompare(b.cols));
  return {
    columns: db.pragma(`table_info(${table})`),
    indexes,
    foreignKeys: db.pragma(`foreign_key_list(${table})`),
  };
}

const tableSql = (db: Database.Database) =>
  db.prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'table' ORDER BY name").all() as Array<{
    name: string;
    sql: string;
  }>;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "mvnet-schema-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("schema 2", () => {
  it("a new database gets WITHOUT ROWID tables, UNIQUE tap and guest_ip but not mac", () => {
    const st = HostState.open(join(dir, "new.db"));
    try {
      expect(SCHEMA_VERSION).toBe(2);
      expect(st.db.pragma("user_version", { simple: true })).toBe(2);
      const tables = tableSql(st.db);
      expect(tables.map((t) => t.name)).toEqual(["cursors", "meta", "ports", "vms"]);
      for (const t of tables) expect(t.sql).toMatch(/\)\s*WITHOUT ROWID$/);
      const unique = shape(st.db, "vms")
        .indexes.filter((i) => i.unique === 1)
        .map((i) => i.cols);
      expect(unique.sort()).toEqual(["guest_ip", "tap", "vm_id"]);
      expect(shape(st.db, "ports").indexes.map((i) => [i.cols, i.unique])).toEqual([
        ["protocol,host_port,host_ip", 1],
        ["vm_id", 0],
      ]);
      expect(st.db.pragma("foreign_keys", { simple: true })).toBe(1);
    } finally {
      st.close();
    }
  });
});

describe("migration from schema 1", () => {
  it("keeps every row, makes the same tables a new database has, and the records read back equal", () => {
    const path = join(dir, "v1.db");
    makeV1(path);
    const v1 = new Database(path, { readonly: true });
    const before = rows(v1);
    v1.close();
    expect(before.vms).toHaveLength(3);
    expect(before.ports).toHaveLength(3);

    const st = HostState.open(path);
    const fresh = HostState.open(join(dir, "fresh.db"));
    try {
      expect(st.db.pragma("user_version", { simple: true })).toBe(2);
      expect(rows(st.db)).toEqual(before);
      expect(st.list()).toEqual([...RECORDS].sort((a, b) => a.vmId.localeCompare(b.vmId)));
      expect(st.cursor("port:tcp")).toBe(30000);
      expect(st.getMeta("subnet")).toBe("10.200.0.0/16");
      // Same tables as a database created at schema 2, and nothing of the migration left behind.
      expect(tableSql(st.db).map((t) => t.name)).toEqual(["cursors", "meta", "ports", "vms"]);
      for (const t of tableSql(st.db)) expect(t.sql).toMatch(/\)\s*WITHOUT ROWID$/);
      for (const t of Object.keys(TABLES)) expect(shape(st.db, t)).toEqual(shape(fresh.db, t));
      expect(st.db.pragma("integrity_check", { simple: true })).toBe("ok");
    } finally {
      st.close();
      fresh.close();
    }
  });

  it("leaves foreign keys on and cascading: deleting a VM deletes its ports, an orphan port is refused", () => {
    const path = join(dir, "v1.db");
    makeV1(path);
    const st = HostState.open(path);
    try {
      expect(st.db.pragma("foreign_keys", { simple: true })).toBe(1);
      expect(st.delete("alpha")).toBe(true);
      expect(st.db.prepare("SELECT vm_id FROM ports ORDER BY vm_id").all()).toEqual([{ vm_id: "gamma" }]);
      expect(() =>
        st.db
          .prepare(
            "INSERT INTO ports (vm_id, protocol, host_ip, host_port, guest_port, ephemeral) VALUES ('nobody', 'tcp', '0.0.0.0', 1234, 80, 0)",
          )
          .run(),
      ).toThrow(/FOREIGN KEY/);
      // The constraints kept across the copy still bite.
      expect(() => st.insert(vm("delta", 9, { tap: "mvtap-beta" }))).toThrow(/UNIQUE.*tap/);
      expect(() => st.insert(vm("delta", 3))).toThrow(/UNIQUE.*guest_ip/);
      expect(() => st.setState("beta", "gone" as never)).toThrow(/CHECK/);
    } finally {
      st.close();
    }
  });

  it("opening a migrated file again changes nothing (no schema change, same rows)", () => {
    const path = join(dir, "v1.db");
    makeV1(path);
    const first = HostState.open(path);
    const cookie = first.db.pragma("schema_version", { simple: true }) as number;
    const before = rows(first.db);
    first.close();
    const again = HostState.open(path);
    try {
      expect(again.db.pragma("schema_version", { simple: true })).toBe(cookie);
      expect(rows(again.db)).toEqual(before);
    } finally {
      again.close();
    }
  });

  it("two processes opening a schema 1 file at once: exactly one migrates", async () => {
    const path = join(dir, "v1.db");
    makeV1(path);
    // How much one migration moves the schema cookie (every CREATE, DROP and RENAME bumps it).
    const v1Cookie = (() => {
      const db = new Database(path, { readonly: true });
      const c = db.pragma("schema_version", { simple: true }) as number;
      db.close();
      return c;
    })();
    const alone = join(dir, "alone.db");
    copyFileSync(path, alone);
    const one = openStateDb(alone);
    const perMigration = (one.pragma("schema_version", { simple: true }) as number) - v1Cookie;
    one.close();
    expect(perMigration).toBeGreaterThan(0);

    // Both children are started while this process holds the write lock, so both get as far as
    // their IMMEDIATE transaction before either can migrate.
    const child = join(dir, "child.mts");
    writeFileSync(
      child,
      `import { writeFileSync } from "node:fs";
import { openStateDb } from ${JSON.stringify(join(root, "src/store/state-db.ts"))};
const [db, name] = process.argv.slice(2);
writeFileSync(db + ".ready." + name, "");
openStateDb(db).close();
`,
    );
    const lock = new Database(path);
    lock.exec("BEGIN IMMEDIATE");
    const run = (name: string) =>
      promisify(execFile)(join(root, "node_modules", ".bin", "tsx"), [child, path, name], { cwd: root });
    const children = Promise.all([run("a"), run("b")]);
    while (!existsSync(`${path}.ready.a`) || !existsSync(`${path}.ready.b`)) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 300)); // into openStateDb, waiting for the lock
    lock.exec("ROLLBACK");
    lock.close();
    await children;

    const st = HostState.open(path);
    try {
      expect(st.db.pragma("schema_version", { simple: true })).toBe(v1Cookie + perMigration);
      expect(st.list()).toEqual([...RECORDS].sort((a, b) => a.vmId.localeCompare(b.vmId)));
    } finally {
      st.close();
    }
  }, 30_000);

  it("a file whose ports name a missing VM is refused and left as it was", () => {
    const path = join(dir, "v1.db");
    makeV1(path, (db) => {
      // Only something bypassing the foreign key can write this.
      db.pragma("foreign_keys = OFF");
      db.prepare(
        "INSERT INTO ports (vm_id, protocol, host_ip, host_port, guest_port, ephemeral) VALUES ('nobody', 'tcp', '0.0.0.0', 31000, 80, 1)",
      ).run();
    });
    const peek = () => {
      const db = new Database(path, { readonly: true });
      const out = { version: db.pragma("user_version", { simple: true }), sql: tableSql(db), rows: rows(db) };
      db.close();
      return out;
    };
    const before = peek();
    let err: unknown;
    try {
      openStateDb(path).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MvnetError);
    expect((err as MvnetError).code).toBe("ERR_STATE_SCHEMA");
    expect((err as Error).message).toMatch(/1 row\(s\) of ports name a VM with no record/);
    expect(peek()).toEqual(before);
    expect(before.version).toBe(1);
  });
});
