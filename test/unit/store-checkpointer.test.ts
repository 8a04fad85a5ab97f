// WAL checkpoints on a worker thread (src/store/checkpointer.ts): with the main connection's own
// automatic checkpoint pushed to the backstop, pages written reach the database file only through
// the worker — shown by the file's size, against a control database without the worker.
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BACKSTOP_PAGES, Checkpointer } from "../../src/store/checkpointer.js";
import { openStateDb, type StateDb } from "../../src/store/state-db.js";

let dir: string;
const open: StateDb[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "mvnet-ckpt-"));
});

afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A database with the main connection's automatic checkpoint at the backstop, as HostNetwork sets it. */
function database(name: string): { db: StateDb; path: string } {
  const path = join(dir, name);
  const db = openStateDb(path);
  db.pragma(`wal_autocheckpoint = ${BACKSTOP_PAGES}`);
  open.push(db);
  return { db, path };
}

/** 200 commits of 2 KiB each: ≈ 400 KiB of WAL frames, far below the backstop. */
function write(db: StateDb): void {
  const put = db.prepare("INSERT INTO meta (key, value) VALUES (?, ?)");
  for (let i = 0; i < 200; i++) put.run(`k${i}`, "x".repeat(2048));
}

const size = (path: string) => statSync(path).size;

async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

describe("Checkpointer", () => {
  it("copies committed pages into the database file from its worker; without it they stay in the WAL", async () => {
    const control = database("control.db");
    const mine = database("state.db");
    const before = size(mine.path);
    const ckpt = Checkpointer.start(mine.db, mine.path, 20);
    expect(mine.db.pragma("wal_autocheckpoint", { simple: true })).toBe(BACKSTOP_PAGES);
    write(control.db);
    write(mine.db);
    expect(await until(() => size(mine.path) > before + 300_000)).toBe(true);
    // The control's file kept its size: nothing but the worker moved pages.
    expect(size(control.path)).toBeLessThan(100_000);
    await ckpt.close();
    await ckpt.close(); // idempotent
    expect(ckpt.lastError).toBeUndefined();
    // The main connection still works and sees everything.
    expect(
      (mine.db.prepare("SELECT count(*) AS n FROM meta WHERE key LIKE 'k%'").get() as { n: number }).n,
    ).toBe(200);
  });

  it("close() resolves when the worker could not even open the database", async () => {
    const { db } = database("state.db");
    const ckpt = Checkpointer.start(db, join(dir, "missing", "nowhere.db"), 20);
    await ckpt.close();
    expect(ckpt.lastError).toMatch(/directory|unable to open|SQLITE_CANTOPEN/i);
  });
});
