/**
 * Feature probes for nftables that change nothing: each probe is one transaction that builds a
 * throw-away table using one feature and ends with `create table` of that same table, which the
 * kernel must refuse (EEXIST, NLM_F_EXCL). The kernel checks every message of a batch, reports each
 * failure, and aborts the whole batch when any fails (net/netfilter/nfnetlink.c
 * nfnetlink_rcv_batch), so nothing is ever committed. A probe whose only error is that EEXIST shows
 * every message before it was accepted: the feature (its expression module, chain type, map type)
 * is present. Hook-placement rules are checked only at commit, so they are not covered — they
 * concern our ruleset's correctness, not the host.
 */
import { renderBootstrap } from "../firewall/ruleset.js";

/** Name of the probe table (family ip). It never exists after a probe. */
export const PROBE_TABLE = "mvnet_doctor_probe";

const T = `ip ${PROBE_TABLE}`;

const BASE = [
  `add table ${T}`,
  `add chain ${T} p_pre { type nat hook prerouting priority dstnat; policy accept; }`,
  `add chain ${T} p_post { type nat hook postrouting priority srcnat; policy accept; }`,
  `add chain ${T} p_raw { type filter hook prerouting priority raw; policy accept; }`,
  `add chain ${T} p_fwd { type filter hook forward priority filter; policy accept; }`,
  `add chain ${T} p_in { type filter hook input priority filter; policy accept; }`,
];

/** The last command of every probe: must fail with EEXIST, which aborts the transaction. */
export const PROBE_SENTINEL = `create table ${T}`;

/** The features our table uses, each with the commands that need it (see firewall/ruleset.ts). */
export const NFT_FEATURES: Readonly<Record<string, readonly string[]>> = {
  "nat chains": [],
  masquerade: [`add rule ${T} p_post ip saddr 10.0.0.0/8 masquerade`],
  "dnat via map": [
    `add map ${T} m { type inet_proto . inet_service : ipv4_addr . inet_service; }`,
    `add rule ${T} p_pre meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @m`,
  ],
  fib: [
    `add rule ${T} p_pre fib daddr type local counter`,
    `add rule ${T} p_raw fib saddr . iif oif missing drop`,
  ],
  ct: [
    `add rule ${T} p_fwd ct state established,related accept`,
    `add rule ${T} p_fwd ct status dnat accept`,
  ],
  reject: [`add rule ${T} p_in ip saddr 10.0.0.0/8 reject`],
};

/** The probe transaction of one feature of {@link NFT_FEATURES}. */
export function renderFeatureProbe(feature: string): string {
  const lines = NFT_FEATURES[feature];
  if (!lines) throw new Error(`unknown nftables feature ${feature}`);
  return `${[...BASE, ...lines, PROBE_SENTINEL].join("\n")}\n`;
}

/**
 * Our whole bootstrap ruleset rendered into the probe table, then the sentinel: shows the kernel
 * accepts every rule bootstrap would install.
 */
export function renderRulesetProbe(subnet: string, tapGroup: number): string {
  return `${renderBootstrap({ table: PROBE_TABLE, subnet, tapGroup })}${PROBE_SENTINEL}\n`;
}

/** What a probe's failure says. */
export interface ProbeOutcome {
  /** True when the only error was the sentinel's EEXIST. */
  supported: boolean;
  /** The other errors, as nft printed them (first line of each). */
  errors: string[];
}

/**
 * Reads nft's error text of a probe run. nft prints one `Error: …` block per refused message; the
 * sentinel's reads "Could not process rule: File exists".
 * @param detail the FirewallError's detail (nft's stderr or libnftables' error buffer).
 */
export function probeOutcome(detail: string): ProbeOutcome {
  const blocks = detail
    .split(/^(?=(?:\S+:\d+:\d+(?:-\d+)?: )?Error: )/m)
    .map((b) => b.trim())
    .filter((b) => /Error: /.test(b));
  const sentinel = blocks.filter((b) => /Error: Could not process rule: File exists/.test(b));
  const others = blocks.filter((b) => !sentinel.includes(b)).map((b) => b.split("\n")[0] ?? b);
  if (blocks.length === 0)
    return { supported: false, errors: [detail.trim() || "nft failed without a message"] };
  return { supported: sentinel.length === 1 && others.length === 0, errors: others };
}
