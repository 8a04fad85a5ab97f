/**
 * WAL checkpoints of the state database on a worker thread, off the event loop.
 *
 * In WAL mode a commit appends pages to the `-wal` file; a checkpoint copies them back into the
 * database and, with `synchronous = NORMAL`, syncs the file (https://sqlite.org/wal.html#ckpt). By
 * default the connection that commits past 1 000 WAL pages runs it itself, inside that commit:
 * HostNetwork writes ≈ 8 pages per attach, so every hundredth attach — and the one transaction that
 * marks hundreds of VMs for a batch detach — held the event loop for the copy and the fsync (6–13 ms
 * measured here). A second connection on a worker thread checkpoints instead, PASSIVE (it never
 * waits for, nor blocks, the writer or readers), whenever the WAL file changed since its last look;
 * the main connection keeps an automatic checkpoint only as a backstop, at {@link BACKSTOP_PAGES}.
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { StateDb } from "./state-db.js";

/** How often the worker looks at the WAL file, in ms. */
export const CHECKPOINT_INTERVAL_MS = 200;

/**
 * WAL size in pages at which the main connection checkpoints by itself (SQLite's default is 1 000):
 * reached only when the worker cannot keep up or is gone; 16 384 pages of 4 KiB = 64 MiB.
 */
export const BACKSTOP_PAGES = 16_384;

// Runs in the worker (CommonJS, no TypeScript): one connection, a timer, a clean close on request.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { statSync } = require("node:fs");
const Database = require(workerData.sqlite);
const db = new Database(workerData.path, { timeout: workerData.timeoutMs });
let seen = "";
function look() {
  let now = "";
  try {
    const s = statSync(workerData.path + "-wal");
    now = s.size + ":" + s.mtimeMs;
  } catch {
    return; // no WAL (yet): nothing to copy
  }
  if (now === seen) return;
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
    seen = now;
  } catch (e) {
    parentPort.postMessage({ error: String(e && e.message) });
  }
}
const timer = setInterval(look, workerData.intervalMs);
parentPort.on("message", (m) => {
  if (m !== "close") return;
  clearInterval(timer);
  look();
  db.close();
  parentPort.close();
});
`;

/**
 * Checkpoints one database file from a worker thread. The worker is unref'd: it never keeps the
 * process alive. Its errors are kept in {@link lastError} (the backstop still bounds the WAL).
 */
export class Checkpointer {
  readonly #worker: Worker;
  #closed: Promise<void> | undefined;
  #exited = false;
  /** The worker's last checkpoint error, for diagnostics. */
  lastError: string | undefined;

  private constructor(worker: Worker) {
    this.#worker = worker;
    worker.on("message", (m: { error?: string }) => {
      if (m.error) this.lastError = m.error;
    });
    worker.on("error", (e) => {
      this.lastError = e.message;
    });
    worker.once("exit", () => {
      this.#exited = true;
    });
    worker.unref();
  }

  /**
   * Starts checkpointing `path` (a file database opened by `db`, in WAL mode) and raises `db`'s own
   * automatic checkpoint to the backstop.
   * @param intervalMs how often the worker looks at the WAL, in ms.
   * @throws Error (`ERR_WORKER_INIT_FAILED`) when no thread can be started; `db` is then unchanged.
   */
  static start(db: StateDb, path: string, intervalMs = CHECKPOINT_INTERVAL_MS): Checkpointer {
    const sqlite = createRequire(import.meta.url).resolve("better-sqlite3");
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      // Plain CommonJS: none of the parent's loaders (a TypeScript loader would cost ≈ 70 ms a start).
      execArgv: [],
      workerData: { sqlite, path, intervalMs, timeoutMs: db.pragma("busy_timeout", { simple: true }) },
    });
    // Raised only once the worker exists: if `new Worker` throws, commits keep checkpointing at 1 000 pages.
    db.pragma(`wal_autocheckpoint = ${BACKSTOP_PAGES}`);
    return new Checkpointer(worker);
  }

  /**
   * Checkpoints once more and stops the worker; resolves when it has exited. Idempotent.
   */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      if (this.#exited) return resolve();
      this.#worker.once("exit", () => resolve());
      // Referenced again, or the loop could end (and the process exit) before the worker has.
      this.#worker.ref();
      this.#worker.postMessage("close");
    });
    return this.#closed;
  }
}
