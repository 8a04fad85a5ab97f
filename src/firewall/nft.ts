/**
 * The appliers: the only code that talks to nftables (GUIDE §1). Both take nft command text and
 * apply it as one transaction — through libnftables in this process (one long-lived context), or by
 * piping the same text to `nft -f -` when the library is missing.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FirewallError, UnsupportedError } from "../core/errors.js";

/** Options of {@link NftApplier.run}. */
export interface RunOptions {
  /** Ask for JSON output (libnftables-json(5)); for `list` commands. Default false (text). */
  json?: boolean;
}

/** Something that applies nft command text. */
export interface NftApplier {
  /** Which implementation this is. */
  readonly kind: "libnftables" | "nft-process";
  /**
   * Applies `commands` (nft syntax, one command a line) as one atomic transaction: all of it or
   * nothing (libnftables(3), nft(8) "-f").
   * @returns what nft printed (text, or JSON with `json`), `""` for commands that print nothing.
   * @throws FirewallError with nft's own error text as `detail` (classify it with {@link nftErrno});
   *   UnsupportedError when the nft executable is missing (process applier), or after close().
   */
  run(commands: string, opts?: RunOptions): Promise<string>;
  /** Releases the context; runs already queued finish first. Idempotent. */
  close(): void;
}

/**
 * The errno behind a FirewallError, read from nft's message (libnftables gives text only, no errno):
 * `EEXIST` for "File exists" (element key or object already there), `ENOENT` for "No such file or
 * directory" (table, chain, map or element absent).
 * @returns the errno name, or undefined for any other error (or a non-FirewallError).
 */
export function nftErrno(error: unknown): "EEXIST" | "ENOENT" | undefined {
  if (!(error instanceof FirewallError)) return undefined;
  if (/\bFile exists\b/.test(error.detail)) return "EEXIST";
  if (/\bNo such file or directory\b/.test(error.detail)) return "ENOENT";
  return undefined;
}

// Output flags of nft_ctx_output_set_flags (include/nftables/libnftables.h).
const NFT_CTX_OUTPUT_JSON = 1 << 4;

type Koffi = typeof import("koffi");
type Fn = ((...args: unknown[]) => unknown) & { async: (...args: unknown[]) => void };

interface Lib {
  ctxNew: Fn;
  ctxFree: Fn;
  bufferOutput: Fn;
  bufferError: Fn;
  getOutput: Fn;
  getError: Fn;
  setFlags: Fn;
  runCmd: Fn;
}

let boundLib: Lib | undefined;

function bindLib(koffi: Koffi): Lib {
  let lib: ReturnType<Koffi["load"]>;
  try {
    // Only the versioned name exists without the -dev package.
    lib = koffi.load("libnftables.so.1");
  } catch (cause) {
    throw new UnsupportedError("libnftables.so.1 is not installed (Debian: apt-get install libnftables1)", {
      cause,
    });
  }
  // Opaque `struct nft_ctx *`: only ever passed back to the library.
  const ctx = koffi.pointer(koffi.opaque());
  return {
    ctxNew: lib.func("nft_ctx_new", ctx, ["uint32_t"]) as Fn,
    ctxFree: lib.func("nft_ctx_free", "void", [ctx]) as Fn,
    bufferOutput: lib.func("nft_ctx_buffer_output", "int", [ctx]) as Fn,
    bufferError: lib.func("nft_ctx_buffer_error", "int", [ctx]) as Fn,
    getOutput: lib.func("nft_ctx_get_output_buffer", "const char *", [ctx]) as Fn,
    getError: lib.func("nft_ctx_get_error_buffer", "const char *", [ctx]) as Fn,
    setFlags: lib.func("nft_ctx_output_set_flags", "void", [ctx, "uint32_t"]) as Fn,
    runCmd: lib.func("nft_run_cmd_from_buffer", "int", [ctx, "const char *"]) as Fn,
  };
}

/**
 * libnftables in this process: one `nft_ctx` for the applier's life, so a change costs ~0.1 ms
 * and no process exit (a process that committed a delete waits ~15 ms on exit, research
 * native-access.md §1b). Runs go through koffi `.async` (libuv pool; a run is bounded — it never
 * waits for a packet) and are serialized, as an nft_ctx is not thread-safe (libnftables(3)).
 * The context acts in the network namespace of the process.
 */
export class LibNftables implements NftApplier {
  readonly kind = "libnftables" as const;
  readonly #lib: Lib;
  readonly #ctx: unknown;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(lib: Lib, ctx: unknown) {
    this.#lib = lib;
    this.#ctx = ctx;
  }

  /**
   * Loads libnftables and makes a context (`nft_ctx_new(NFT_CTX_DEFAULT)`) with buffered output
   * and error streams.
   * @throws UnsupportedError when koffi or libnftables.so.1 cannot be loaded.
   */
  static async open(): Promise<LibNftables> {
    // Imported here, not at the top, so a missing koffi leaves the process applier usable.
    const { koffi } = await import("../kernel/ffi.js");
    boundLib ??= bindLib(koffi);
    const lib = boundLib;
    const ctx = lib.ctxNew(0);
    if (!ctx) throw new UnsupportedError("nft_ctx_new failed");
    if (lib.bufferOutput(ctx) !== 0 || lib.bufferError(ctx) !== 0) {
      lib.ctxFree(ctx);
      throw new UnsupportedError("libnftables could not buffer its output");
    }
    return new LibNftables(lib, ctx);
  }

  /** See {@link NftApplier.run}; queued behind earlier runs of this context. */
  run(commands: string, opts: RunOptions = {}): Promise<string> {
    if (this.#closed) return Promise.reject(new UnsupportedError("the libnftables context is closed"));
    const p = this.#queue.then(() => this.#runNow(commands, opts.json === true));
    this.#queue = p.catch(() => undefined);
    return p;
  }

  async #runNow(commands: string, json: boolean): Promise<string> {
    const lib = this.#lib;
    // JSON output also makes libnftables try the input as JSON first, so it is set per run.
    lib.setFlags(this.#ctx, json ? NFT_CTX_OUTPUT_JSON : 0);
    const rc = await new Promise<number>((resolve, reject) => {
      lib.runCmd.async(this.#ctx, commands, (err: unknown, res: number) =>
        err ? reject(err) : resolve(res),
      );
    });
    // Both buffers are rewound by each get, so they are read right after every run.
    const out = String(lib.getOutput(this.#ctx) ?? "");
    const err = String(lib.getError(this.#ctx) ?? "");
    if (rc !== 0) throw new FirewallError("nftables refused the transaction", err || `return code ${rc}`);
    return out;
  }

  /** Refuses new runs; frees the context (`nft_ctx_free`) once the queued runs are done. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Freed only after queued runs: a worker thread may still be inside the context.
    void this.#queue.then(() => this.#lib.ctxFree(this.#ctx));
  }
}

/**
 * Fallback applier: pipes the same text to `nft -f -` (with `-j` for JSON output), one process per
 * run. Slower (~4 ms a change, ~15 ms more for a delete), same semantics.
 */
export class NftProcess implements NftApplier {
  readonly kind = "nft-process" as const;
  readonly #path: string;
  #closed = false;

  /** @param path the nft executable (default `nft`, looked up in PATH). */
  constructor(path = "nft") {
    this.#path = path;
  }

  /** See {@link NftApplier.run}; one `nft` process per call. */
  async run(commands: string, opts: RunOptions = {}): Promise<string> {
    if (this.#closed) throw new UnsupportedError("the nft applier is closed");
    if (!opts.json) return this.#spawn(["-f", "-"], commands);
    // With -j, nft 1.0.6 first parses the input file as JSON through jansson, which opens
    // /dev/stdin by path; Node's stdin pipe is a socket, which cannot be opened that way (ENXIO).
    // So JSON runs read their commands from a private temporary file.
    const dir = await mkdtemp(join(tmpdir(), "mvnet-nft-"));
    try {
      const file = join(dir, "commands.nft");
      await writeFile(file, commands, { mode: 0o600 });
      return await this.#spawn(["-j", "-f", file], "");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  #spawn(args: string[], input: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.#path, args, { stdio: ["pipe", "pipe", "pipe"] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (b: Buffer) => out.push(b));
      child.stderr.on("data", (b: Buffer) => err.push(b));
      child.on("error", (e: NodeJS.ErrnoException) =>
        reject(
          e.code === "ENOENT"
            ? new UnsupportedError(`${this.#path} is not installed (Debian: apt-get install nftables)`, {
                cause: e,
              })
            : e,
        ),
      );
      child.on("close", (code) => {
        const stderr = Buffer.concat(err).toString();
        if (code === 0) resolve(Buffer.concat(out).toString());
        else
          reject(new FirewallError("nftables refused the transaction", stderr || `nft exited with ${code}`));
      });
      // nft may exit early on a bad first line; its stdin then closes under us.
      child.stdin.on("error", () => undefined);
      child.stdin.end(input);
    });
  }

  /** Refuses further runs (there is nothing to free). */
  close(): void {
    this.#closed = true;
  }
}

/** Options of {@link openNft}. */
export interface OpenNftOptions {
  /** Implementation to use. Default `libnftables`, falling back to `nft-process` when it is missing. */
  prefer?: "libnftables" | "nft-process";
}

/**
 * Opens an applier: libnftables when it loads, otherwise `nft -f -` (see `kind` for which).
 * Only the library's absence falls back; with `prefer: "nft-process"` the library is not tried.
 */
export async function openNft(opts: OpenNftOptions = {}): Promise<NftApplier> {
  if (opts.prefer === "nft-process") return new NftProcess();
  try {
    return await LibNftables.open();
  } catch (e) {
    if (e instanceof UnsupportedError) return new NftProcess();
    throw e;
  }
}
