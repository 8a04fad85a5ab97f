/**
 * The host's own iptables tools, for the chains they manage: reading the legacy (x_tables) ruleset
 * and inserting / deleting our two accept rules.
 *
 * Why a process and not libnftables: a native nft rule (`meta iifgroup …`) placed in a chain of
 * iptables-nft's `ip filter` table makes `iptables-nft -S` and `iptables-nft-save` fail ("Parsing
 * nftables rule failed", exit 3, measured with iptables 1.8.9 in test/kernel/coexist.test.ts), and a
 * later save/restore (Docker, firewalld, iptables-persistent) silently loses every rule after it.
 * The tool itself writes an xt `devgroup` match that it reads back. The legacy x_tables ruleset has
 * no writer other than its tool's setsockopt(IPT_SO_SET_REPLACE) of the whole table. So these are
 * spawned — once per rule at integration time, never on a packet path.
 */
import { execFile } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { join } from "node:path";
import { FirewallError, UnsupportedError } from "../core/errors.js";
import type { ModelChain, ModelRule } from "./chain-model.js";

/** Which iptables backend a table belongs to. */
export type IptablesBackend = "nft" | "legacy";

/** Comment that marks our rules in foreign chains (nft rule comment, iptables `-m comment`). */
export const INTEGRATION_COMMENT = "microvm-net";

const SEARCH = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/** Finds an executable in PATH (plus the sbin directories a non-login shell may lack), or undefined. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":").filter(Boolean), ...SEARCH];
  for (const d of dirs) {
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // next directory
    }
  }
  return undefined;
}

/**
 * The tool that writes a backend's tables: `iptables-nft` / `iptables-legacy` (Debian, Fedora, Arch
 * ship both names since iptables 1.8).
 * @throws UnsupportedError when it is not installed.
 */
export function iptablesTool(backend: IptablesBackend): string {
  const name = backend === "nft" ? "iptables-nft" : "iptables-legacy";
  const path = findExecutable(name);
  if (!path)
    throw new UnsupportedError(`${name} is not installed; it is needed to edit ${backend} iptables chains`);
  return path;
}

/**
 * Runs an iptables tool with `args` (no shell) and `-w` (wait for the xtables lock instead of failing
 * when another iptables runs).
 * @returns its standard output.
 * @throws FirewallError with the tool's own message; UnsupportedError when it cannot be started.
 */
export function runIptables(tool: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(tool, ["-w", ...args], { encoding: "utf8", timeout: 30_000 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const e = err as NodeJS.ErrnoException;
      if (e.code === "ENOENT")
        return reject(new UnsupportedError(`${tool} is not installed`, { cause: err }));
      reject(new FirewallError(`${tool} ${args.join(" ")} failed`, stderr || String(err.message)));
    });
  });
}

/** The names of the loaded x_tables IPv4 tables (`/proc/net/ip_tables_names`), empty when none. */
export function legacyTableNames(): string[] {
  try {
    return readFileSync("/proc/net/ip_tables_names", "utf8").split("\n").filter(Boolean);
  } catch {
    // No ip_tables module: no legacy tables.
    return [];
  }
}

/** The arguments of our two rules for the TAP group, without `-I/-A/-D <chain>`. */
export function ourIptablesRules(tapGroup: number): string[][] {
  const g = `0x${tapGroup.toString(16)}`;
  const tail = ["-m", "comment", "--comment", INTEGRATION_COMMENT, "-j", "ACCEPT"];
  return [
    ["-m", "devgroup", "--src-group", g, ...tail],
    ["-m", "devgroup", "--dst-group", g, ...tail],
  ];
}

/** Splits an iptables-save rule line into words, honouring double quotes (comments may hold spaces). */
export function splitSaveLine(line: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) {
    words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] as string));
  }
  return words;
}

/** One table of an iptables-save dump: its chains as a model (see chain-model.ts). */
export type SavedTables = Map<string, Map<string, ModelChain>>;

const BUILTIN_VERDICTS: Record<string, ModelRule["verdict"]> = {
  ACCEPT: "accept",
  DROP: "drop",
  REJECT: "reject",
  RETURN: "return",
};

/**
 * Parses `iptables-save` output (iptables-save(8) format: `*table`, `:CHAIN POLICY [p:b]`,
 * `-A CHAIN …`, `COMMIT`) into a model per table. A rule is "ours" when it tests only
 * `-m devgroup --src-group G` (from a TAP) or `--dst-group G` (to a TAP), optionally a comment, and
 * accepts.
 */
export function parseIptablesSave(text: string, tapGroup: number): SavedTables {
  const tables: SavedTables = new Map();
  let chains: Map<string, ModelChain> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("*")) {
      chains = new Map();
      tables.set(line.slice(1), chains);
    } else if (line.startsWith(":") && chains) {
      const [name, policy] = line.slice(1).split(/\s+/);
      if (!name) continue;
      const c: ModelChain = { rules: [] };
      if (policy === "DROP") c.policy = "drop";
      else if (policy === "ACCEPT") c.policy = "accept";
      chains.set(name, c);
    } else if (line.startsWith("-A ") && chains) {
      const w = splitSaveLine(line);
      const chain = chains.get(w[1] ?? "");
      if (chain) chain.rules.push(saveRule(w.slice(2), tapGroup, chains));
    }
  }
  return tables;
}

function saveRule(w: string[], tapGroup: number, chains: ReadonlyMap<string, ModelChain>): ModelRule {
  let verdict: ModelRule["verdict"] = "other";
  let target: string | undefined;
  const j = w.indexOf("-j");
  const g = w.indexOf("-g");
  if (g >= 0) {
    verdict = "goto";
    target = w[g + 1];
  } else if (j >= 0) {
    const t = w[j + 1] ?? "";
    // Declared chains (the `:` lines come first in a dump) are jumps; other targets (LOG, MARK, …) go on.
    verdict = BUILTIN_VERDICTS[t] ?? (chains.has(t) ? "jump" : "other");
    if (verdict === "jump") target = t;
  }
  const rule: ModelRule = { verdict };
  if (target !== undefined) rule.target = target;
  // Ours: exactly "-m devgroup --src-group|--dst-group G [-m comment --comment C] -j ACCEPT".
  const rest = w.slice(0, j >= 0 ? j : w.length);
  const withoutComment =
    rest[rest.length - 4] === "-m" && rest[rest.length - 3] === "comment" ? rest.slice(0, -4) : rest;
  if (
    verdict === "accept" &&
    withoutComment.length === 4 &&
    withoutComment[0] === "-m" &&
    withoutComment[1] === "devgroup" &&
    Number(withoutComment[3]) === tapGroup
  ) {
    if (withoutComment[2] === "--src-group") rule.ours = "from-tap";
    else if (withoutComment[2] === "--dst-group") rule.ours = "to-tap";
  }
  return rule;
}

/**
 * Reads the legacy (x_tables) IPv4 ruleset by running `iptables-legacy-save` — read-only: it only
 * dumps the tables listed in /proc/net/ip_tables_names (asking for one with `-t` could make the
 * kernel instantiate it). The fallback of foreign.ts when the kernel cannot be asked directly
 * (src/kernel/xtables.ts needs CAP_NET_ADMIN and CAP_NET_RAW).
 * @returns the dump text, or undefined when no legacy table is loaded.
 * @throws UnsupportedError when tables are loaded but iptables-legacy-save is missing;
 *   FirewallError when it fails.
 */
export async function legacySave(): Promise<string | undefined> {
  if (legacyTableNames().length === 0) return undefined;
  const tool = findExecutable("iptables-legacy-save");
  if (!tool) {
    throw new UnsupportedError("legacy iptables tables are loaded but iptables-legacy-save is not installed");
  }
  return new Promise((resolve, reject) => {
    execFile(tool, [], { encoding: "utf8", timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new FirewallError("iptables-legacy-save failed", stderr || String(err.message)));
      else resolve(stdout);
    });
  });
}
