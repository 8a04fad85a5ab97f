/**
 * Other firewalls on the host that would drop forwarded guest traffic. Every base chain at a hook
 * judges a packet on its own: an `accept` in our table does not override a `drop` (policy or rule)
 * in another table or in iptables (nft(8) "VERDICT STATEMENT": accept ends only the current base
 * chain; drop is final). Docker sets iptables' FORWARD policy to DROP, which silently drops every
 * guest packet unless our traffic is let through there as well.
 *
 * Three places are read: iptables-nft tables (`ip filter|mangle|security`, base chain `FORWARD`),
 * native nftables tables (family ip / inet, any forward-hook base chain, not ours), and the legacy
 * x_tables ruleset (through `iptables-legacy-save`, read-only; see iptables.ts).
 */
import { UnsupportedError } from "../core/errors.js";
import { readXtTable } from "../kernel/xtables.js";
import { blockReason, type ModelChain, type ModelRule, passesBothWays, ruleCanDrop } from "./chain-model.js";
import { INTEGRATION_COMMENT, legacySave, legacyTableNames, parseIptablesSave } from "./iptables.js";
import type { NftApplier } from "./nft.js";
import { parseXtTable } from "./xt-parse.js";

/** Where a foreign firewall lives. */
export type ForeignKind = "iptables-nft" | "nftables" | "iptables-legacy";

/** One base chain that can drop forwarded guest traffic. */
export interface ForeignBlock {
  kind: ForeignKind;
  /** nftables family (`ip`, `inet`); `ip` for iptables-legacy. */
  family: string;
  /** Table name (`filter` for iptables). */
  table: string;
  /** The base chain at the forward hook that can drop (`FORWARD` for iptables). */
  chain: string;
  /** The chain where our accept rules go (or were found): `DOCKER-USER` when Docker's is used. */
  target: string;
  /** Why it drops guest traffic, e.g. "its policy is drop". */
  reason: string;
  /** True when our two accept rules sit in `target` before anything that can drop. */
  integrated: boolean;
  /** True when the ruleset could not be read (then `integrated` is false and `reason` says why). */
  unreadable?: boolean;
  /**
   * True when the table is owned by another process (nft table flag `owner`, e.g. firewalld): the
   * kernel refuses changes from anyone else, so the integration leaves it to that tool.
   */
  owned?: boolean;
  /** What an operator can do, in words and commands. */
  fix: string;
}

/** Options of {@link findForeignBlocks}. */
export interface ForeignOptions {
  /** Our own table's name (skipped in any family). */
  table: string;
  /** Interface group of our TAPs (IFLA_GROUP). */
  tapGroup: number;
}

interface NftChainJson {
  family: string;
  table: string;
  name: string;
  hook?: string;
  policy?: string;
}

interface NftRuleJson {
  family: string;
  table: string;
  chain: string;
  handle: number;
  comment?: string;
  expr?: Array<Record<string, unknown>>;
}

interface NftTableJson {
  family: string;
  name: string;
  flags?: string | string[];
}

/** A native nftables ruleset, as read from `list ruleset` JSON. */
export interface NftRuleset {
  tables: NftTableJson[];
  chains: NftChainJson[];
  rules: NftRuleJson[];
}

/** Families whose forward hook sees routed IPv4 guest traffic. IPv6 is off on our TAPs. */
const FAMILIES = new Set(["ip", "inet"]);
/** iptables-nft tables that hook FORWARD with a base chain of that name. */
const IPTABLES_TABLES = new Set(["filter", "mangle", "security"]);
/** Docker's chain for the operator's rules: evaluated first from FORWARD, never flushed by Docker. */
export const DOCKER_USER = "DOCKER-USER";

/**
 * Reads `list ruleset` through the applier as JSON (libnftables-json(5)).
 * @throws FirewallError when nft refuses.
 */
export async function readNftRuleset(nft: NftApplier): Promise<NftRuleset> {
  const out = await nft.run("list ruleset\n", { json: true });
  const items = (JSON.parse(out || '{"nftables":[]}') as { nftables: Array<Record<string, unknown>> })
    .nftables;
  const tables: NftTableJson[] = [];
  const chains: NftChainJson[] = [];
  const rules: NftRuleJson[] = [];
  for (const it of items) {
    if (it.table) tables.push(it.table as NftTableJson);
    else if (it.chain) chains.push(it.chain as NftChainJson);
    else if (it.rule) rules.push(it.rule as NftRuleJson);
  }
  return { tables, chains, rules };
}

/** True when the table is iptables-nft's: family ip, an iptables table name, base chain `FORWARD`. */
export function isIptablesNftTable(family: string, table: string, chains: readonly NftChainJson[]): boolean {
  return (
    family === "ip" &&
    IPTABLES_TABLES.has(table) &&
    chains.some(
      (c) => c.family === family && c.table === table && c.name === "FORWARD" && c.hook === "forward",
    )
  );
}

function groupValue(v: unknown): number {
  return typeof v === "number" ? v : Number(v);
}

/** Reduces one JSON rule: its verdict, and whether it is one of our accepts (`meta iifgroup G accept`). */
export function nftRuleModel(rule: NftRuleJson, tapGroup: number): ModelRule {
  const expr = (rule.expr ?? []).filter((e) => !("counter" in e));
  const out: ModelRule = { verdict: "other" };
  for (const e of expr) {
    if ("accept" in e) out.verdict = "accept";
    else if ("drop" in e) out.verdict = "drop";
    else if ("reject" in e) out.verdict = "reject";
    else if ("return" in e) out.verdict = "return";
    else if ("jump" in e || "goto" in e) {
      out.verdict = "jump" in e ? "jump" : "goto";
      const v = (e.jump ?? e.goto) as { target?: string } | undefined;
      out.target = String(v?.target ?? "");
    } else if ("xt" in e) {
      const xt = e.xt as { type?: string; name?: string };
      if (xt.type === "target" && xt.name === "REJECT") out.verdict = "reject";
    } else if (/"(drop|reject)"/.test(JSON.stringify(e))) {
      // A verdict map or similar that can drop.
      out.mayDrop = true;
    }
  }
  if (expr.length === 2 && out.verdict === "accept") {
    const m = (expr[0] as { match?: { op?: string; left?: { meta?: { key?: string } }; right?: unknown } })
      .match;
    if (m && (m.op === "==" || m.op === "in") && groupValue(m.right) === tapGroup) {
      if (m.left?.meta?.key === "iifgroup") out.ours = "from-tap";
      else if (m.left?.meta?.key === "oifgroup") out.ours = "to-tap";
    }
  }
  return out;
}

/**
 * Our accept rules in iptables-nft chains are xt `devgroup` matches, whose JSON form carries no group
 * (`{"xt":{"type":"match","name":"devgroup"}}`); libnftables' text output translates them
 * (`iifgroup 0x6d76 counter … accept`). The text's rule lines of a chain are matched to its JSON
 * rules by position, and only when their counts agree.
 */
export function markXtOurs(
  jsonRules: readonly NftRuleJson[],
  model: ModelRule[],
  textLines: readonly string[],
  tapGroup: number,
): void {
  if (textLines.length !== jsonRules.length) return;
  jsonRules.forEach((r, i) => {
    const names = (r.expr ?? [])
      .filter((e) => "xt" in e)
      .map((e) => (e.xt as { type?: string; name?: string }).name);
    const rule = model[i];
    if (rule?.verdict !== "accept") return;
    if (names[0] !== "devgroup") return;
    if (!names.every((n) => n === "devgroup" || n === "comment") || names.length > 2) return;
    const others = (r.expr ?? []).filter((e) => !("xt" in e) && !("counter" in e) && !("accept" in e));
    if (others.length > 0) return;
    const m = /^(iif|oif)group (0x[0-9a-f]+|\d+)\s/.exec(`${(textLines[i] ?? "").trim()} `);
    if (!m || Number(m[2]) !== tapGroup) return;
    rule.ours = m[1] === "iif" ? "from-tap" : "to-tap";
  });
}

/** Rule lines per chain of an `nft list table` text output (one rule per line; `type …` skipped). */
export function textRuleLines(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const open = /^chain (\S+) \{$/.exec(line);
    if (open) {
      current = [];
      out.set((open[1] as string).replace(/^"|"$/g, ""), current);
    } else if (line === "}") current = undefined;
    else if (
      current &&
      line &&
      !line.startsWith("type ") &&
      !line.startsWith("#") &&
      !line.startsWith("policy ")
    )
      current.push(line);
  }
  return out;
}

function chainModels(
  rs: NftRuleset,
  family: string,
  table: string,
  tapGroup: number,
): Map<string, ModelChain> {
  const chains = new Map<string, ModelChain>();
  for (const c of rs.chains) {
    if (c.family !== family || c.table !== table) continue;
    const m: ModelChain = { rules: [] };
    if (c.hook) m.policy = c.policy === "drop" ? "drop" : "accept";
    chains.set(c.name, m);
  }
  for (const r of rs.rules) {
    if (r.family !== family || r.table !== table) continue;
    chains.get(r.chain)?.rules.push(nftRuleModel(r, tapGroup));
  }
  return chains;
}

function hexGroup(g: number): string {
  return `0x${g.toString(16)}`;
}

function nftFix(family: string, table: string, chain: string, g: number): string {
  // Quoted: chain names such as "forward" or "fwd" are nft keywords otherwise.
  const at = `${family} ${table} ${JSON.stringify(chain)}`;
  return (
    "mvnet bootstrap --integrate, or by hand: " +
    `nft 'insert rule ${at} meta oifgroup ${g} accept comment "${INTEGRATION_COMMENT}"'; ` +
    `nft 'insert rule ${at} meta iifgroup ${g} accept comment "${INTEGRATION_COMMENT}"'`
  );
}

function iptablesFix(tool: string, target: string, g: number): string {
  const c = `-m comment --comment ${INTEGRATION_COMMENT} -j ACCEPT`;
  return (
    "mvnet bootstrap --integrate, or by hand: " +
    `${tool} -I ${target} -m devgroup --dst-group ${hexGroup(g)} ${c}; ` +
    `${tool} -I ${target} -m devgroup --src-group ${hexGroup(g)} ${c}`
  );
}

/**
 * Where the integration goes in an iptables table: DOCKER-USER when FORWARD jumps to it before any
 * rule that can drop (as Docker sets it up), else the top of FORWARD — accepts in DOCKER-USER would
 * come too late behind an earlier drop.
 */
export function iptablesTarget(chains: ReadonlyMap<string, ModelChain>, table: string): string {
  if (table !== "filter") return "FORWARD";
  for (const r of chains.get("FORWARD")?.rules ?? []) {
    if (r.verdict === "jump" && r.target === DOCKER_USER) return DOCKER_USER;
    if (ruleCanDrop(chains, r)) return "FORWARD";
  }
  return "FORWARD";
}

/**
 * Every base chain that would drop forwarded guest traffic, and whether our integration (two accepts
 * matching only our TAP group, see integrate.ts) is already in place there:
 * (a) iptables-nft `ip filter|mangle|security FORWARD` with policy drop or drop/reject rules (Docker's
 *     DOCKER-USER is where the integration goes when FORWARD jumps to it);
 * (b) native nftables forward-hook base chains in family ip/inet, other than our table and
 *     iptables-nft's, with policy drop or drop/reject rules (also through jumps);
 * (c) the legacy x_tables ruleset, when /proc/net/ip_tables_names is not empty: read from the kernel
 *     by getsockopt(IPT_SO_GET_INFO / IPT_SO_GET_ENTRIES) through koffi (needs CAP_NET_ADMIN and
 *     CAP_NET_RAW); without them by spawning `iptables-legacy-save` (read-only); when that is missing
 *     too, one `unreadable` block is returned.
 * A chain's rules that may not match guest traffic (e.g. `ip saddr X drop`) still count: the reader
 * does not evaluate matches, so "would drop" means "can drop".
 * @returns the blocks, natives first; empty when nothing drops guest traffic.
 * @throws FirewallError when nft refuses to list the ruleset.
 */
export async function findForeignBlocks(nft: NftApplier, opts: ForeignOptions): Promise<ForeignBlock[]> {
  const g = opts.tapGroup;
  const rs = await readNftRuleset(nft);
  const blocks: ForeignBlock[] = [];
  const tables = new Map<string, { family: string; table: string }>();
  for (const c of rs.chains) {
    if (c.hook === "forward" && FAMILIES.has(c.family) && c.table !== opts.table) {
      tables.set(`${c.family} ${c.table}`, { family: c.family, table: c.table });
    }
  }
  for (const { family, table } of tables.values()) {
    const models = chainModels(rs, family, table, g);
    if (isIptablesNftTable(family, table, rs.chains)) {
      if (!blockReason(models, "FORWARD")) continue;
      // Our devgroup rules are recognisable only in the text form (see markXtOurs).
      const text = textRuleLines(await nft.run(`list table ${family} ${table}\n`));
      for (const [name, m] of models) {
        const json = rs.rules.filter((r) => r.family === family && r.table === table && r.chain === name);
        markXtOurs(json, m.rules, text.get(name) ?? [], g);
      }
      const target = iptablesTarget(models, table);
      blocks.push({
        kind: "iptables-nft",
        family,
        table,
        chain: "FORWARD",
        target,
        reason: `iptables-nft ${table} FORWARD: ${blockReason(models, "FORWARD")}`,
        integrated: passesBothWays(models, "FORWARD"),
        fix: iptablesFix("iptables-nft", target, g),
      });
      continue;
    }
    const flags = rs.tables.find((t) => t.family === family && t.name === table)?.flags ?? [];
    const owned = (Array.isArray(flags) ? flags : [flags]).includes("owner");
    for (const c of rs.chains) {
      if (c.family !== family || c.table !== table || c.hook !== "forward") continue;
      const reason = blockReason(models, c.name);
      if (!reason) continue;
      const block: ForeignBlock = {
        kind: "nftables",
        family,
        table,
        chain: c.name,
        target: c.name,
        reason: `nftables ${family} ${table} ${c.name} (forward hook): ${reason}`,
        integrated: passesBothWays(models, c.name),
        fix: nftFix(family, table, c.name, g),
      };
      if (owned) {
        block.owned = true;
        block.fix =
          `the table is owned by another process (e.g. firewalld), which alone may change it: let ` +
          `interface group ${g} (our TAPs) through the forward path with that tool`;
      }
      blocks.push(block);
    }
  }
  blocks.sort((a, b) => (a.kind === "nftables" ? 0 : 1) - (b.kind === "nftables" ? 0 : 1));
  blocks.push(...(await legacyBlocks(g)));
  return blocks;
}

/**
 * The legacy tables' chains: read from the kernel (getsockopt, src/kernel/xtables.ts) when this
 * process may; else by spawning iptables-legacy-save (read-only). Only tables the kernel lists in
 * /proc/net/ip_tables_names are asked for, so none is instantiated by asking.
 */
async function legacyModels(g: number): Promise<Map<string, Map<string, ModelChain>>> {
  const names = legacyTableNames().filter((n) => IPTABLES_TABLES.has(n));
  if (names.length === 0) return new Map();
  try {
    return new Map(names.map((n) => [n, parseXtTable(readXtTable(n), g)]));
  } catch {
    // EPERM without CAP_NET_RAW/CAP_NET_ADMIN, or a table that vanished: the tool's reading decides.
  }
  const text = await legacySave();
  return text === undefined ? new Map() : parseIptablesSave(text, g);
}

async function legacyBlocks(g: number): Promise<ForeignBlock[]> {
  let tables: Map<string, Map<string, ModelChain>>;
  try {
    tables = await legacyModels(g);
  } catch (e) {
    if (!(e instanceof UnsupportedError)) throw e;
    return [
      {
        kind: "iptables-legacy",
        family: "ip",
        table: legacyTableNames().join(","),
        chain: "FORWARD",
        target: "FORWARD",
        reason: `${e.message}; their FORWARD policy cannot be read`,
        integrated: false,
        unreadable: true,
        fix: "install iptables (iptables-legacy-save), then run mvnet doctor again",
      },
    ];
  }
  const out: ForeignBlock[] = [];
  for (const [table, models] of tables) {
    if (!IPTABLES_TABLES.has(table) || !models.has("FORWARD")) continue;
    const reason = blockReason(models, "FORWARD");
    if (!reason) continue;
    const target = iptablesTarget(models, table);
    out.push({
      kind: "iptables-legacy",
      family: "ip",
      table,
      chain: "FORWARD",
      target,
      reason: `iptables-legacy ${table} FORWARD: ${reason}`,
      integrated: passesBothWays(models, "FORWARD"),
      fix: iptablesFix("iptables-legacy", target, g),
    });
  }
  return out;
}
