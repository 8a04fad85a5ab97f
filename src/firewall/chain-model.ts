/**
 * A small model of a firewall's forward path — chains of rules reduced to their verdicts — and the
 * walk that decides whether guest traffic certainly passes it (pure; shared by the nftables and
 * iptables readers in foreign.ts).
 *
 * Netfilter semantics (nft(8) "VERDICT STATEMENT", iptables(8) "TARGETS"): `accept` ends this base
 * chain only (the next base chain at the hook, or another table, still judges the packet); `drop`
 * and `reject` are final for the packet; `jump` returns after the called chain ends or says
 * `return`; `goto` does not return; a base chain that ends applies its policy.
 */

/** What a rule does when it matches, as far as the walk cares. */
export type Verdict = "accept" | "drop" | "reject" | "jump" | "goto" | "return" | "other";

/** The two kinds of guest traffic: arriving from one of our TAPs, or leaving through one. */
export type GuestDirection = "from-tap" | "to-tap";

/** One rule, reduced. */
export interface ModelRule {
  verdict: Verdict;
  /** Chain named by `jump` / `goto`. */
  target?: string;
  /** The rule matches every packet of this direction and only tests the TAP group (one of ours). */
  ours?: GuestDirection;
  /** The rule may drop without saying so in `verdict` (e.g. a verdict map holding `drop`). */
  mayDrop?: boolean;
}

/** One chain, reduced; `policy` only for base chains. */
export interface ModelChain {
  rules: ModelRule[];
  policy?: "accept" | "drop";
}

/** Outcome of a walk: certainly accepted, possibly dropped, or fell off the chain (return/end). */
export type WalkResult = "accept" | "block" | "fallthrough";

const MAX_DEPTH = 16;

/**
 * Walks `chain` for a packet of which only its direction is known (`undefined`: nothing is known):
 * a rule that matches that direction unconditionally (one of ours) decides; any other rule may or may
 * not match, so a `drop`/`reject` anywhere on the way means the packet may be dropped.
 * Loops and depth beyond 16 calls count as "block" (nftables refuses loops; this is only a guard).
 */
export function walkChain(
  chains: ReadonlyMap<string, ModelChain>,
  chain: string,
  direction: GuestDirection | undefined,
  depth = 0,
): WalkResult {
  const c = chains.get(chain);
  if (!c || depth > MAX_DEPTH) return "block";
  for (const r of c.rules) {
    if (r.mayDrop) return "block";
    if (direction !== undefined && r.ours === direction && r.verdict === "accept") return "accept";
    switch (r.verdict) {
      case "drop":
      case "reject":
        return "block";
      case "jump":
      case "goto": {
        const sub = walkChain(chains, r.target ?? "", direction, depth + 1);
        if (sub !== "fallthrough") return sub;
        if (r.verdict === "goto") return depth === 0 ? policyResult(c) : "fallthrough";
        break;
      }
      case "return":
        // A conditional return may or may not match; an unconditional one is not told apart here,
        // so the walk continues, which can only make it more cautious.
        break;
      default:
        break;
    }
  }
  return depth === 0 ? policyResult(c) : "fallthrough";
}

function policyResult(c: ModelChain): WalkResult {
  return c.policy === "drop" ? "block" : "accept";
}

/** Why a base chain can drop guest traffic, in words; undefined when it cannot. */
export function blockReason(chains: ReadonlyMap<string, ModelChain>, base: string): string | undefined {
  if (walkChain(chains, base, undefined) !== "block") return undefined;
  const c = chains.get(base);
  const parts: string[] = [];
  if (c?.policy === "drop") parts.push("its policy is drop");
  if (hasDropRule(chains, base, new Set())) parts.push("it holds drop/reject rules (or jumps to some)");
  return parts.length > 0 ? parts.join(" and ") : "it may drop";
}

function hasDropRule(chains: ReadonlyMap<string, ModelChain>, name: string, seen: Set<string>): boolean {
  if (seen.has(name)) return false;
  seen.add(name);
  return (chains.get(name)?.rules ?? []).some((r) => ruleCanDrop(chains, r, seen));
}

/** True when the rule (or a chain it jumps to) can drop or reject. */
export function ruleCanDrop(
  chains: ReadonlyMap<string, ModelChain>,
  r: ModelRule,
  seen: Set<string> = new Set(),
): boolean {
  return (
    r.mayDrop === true ||
    r.verdict === "drop" ||
    r.verdict === "reject" ||
    ((r.verdict === "jump" || r.verdict === "goto") && hasDropRule(chains, r.target ?? "", seen))
  );
}

/** True when guest traffic of both directions certainly passes the base chain. */
export function passesBothWays(chains: ReadonlyMap<string, ModelChain>, base: string): boolean {
  return walkChain(chains, base, "from-tap") === "accept" && walkChain(chains, base, "to-tap") === "accept";
}
