/**
 * Check: nf_tables through libnftables, and the NAT and filter features our table uses. Only
 * transactions the kernel aborts are sent (see ./nft-probe.ts), so the ruleset is never changed.
 */
import { DEFAULT_SUBNET } from "../core/defaults.js";
import { FirewallError } from "../core/errors.js";
import type { NftApplier } from "../firewall/nft.js";
import { readBootstrapState } from "../store/bootstrap-state.js";
import { finding, messageOf } from "./finding.js";
import {
  NFT_FEATURES,
  type ProbeOutcome,
  probeOutcome,
  renderFeatureProbe,
  renderRulesetProbe,
} from "./nft-probe.js";
import type { DoctorContext, Finding } from "./types.js";

/**
 * Runs one probe transaction. A probe that nft *applies* would be a bug in the probe (the sentinel
 * must fail); it is reported as unsupported rather than trusted.
 */
async function probe(nft: NftApplier, text: string): Promise<ProbeOutcome> {
  try {
    await nft.run(text);
    return { supported: false, errors: ["the probe transaction was not refused as expected"] };
  } catch (e) {
    if (e instanceof FirewallError) return probeOutcome(e.detail);
    throw e;
  }
}

function subnetOf(ctx: DoctorContext): string {
  try {
    return readBootstrapState(ctx.stateDir)?.subnet ?? DEFAULT_SUBNET;
  } catch {
    return DEFAULT_SUBNET; // a corrupt record is the bootstrap check's finding
  }
}

/**
 * Check `kernel.nftables*`: which applier is in use (warn for the `nft` process fallback, fail
 * when there is none or nftables refuses to list), then one probe per feature of
 * {@link NFT_FEATURES} (`kernel.nftables.features`) and one of the whole bootstrap ruleset
 * (`kernel.nftables.ruleset`).
 */
export async function checkNftables(ctx: DoctorContext): Promise<Finding[]> {
  const nft = ctx.nft;
  if (!nft) {
    return [
      finding("kernel.nftables", "fail", "nftables cannot be used: neither libnftables nor nft was found", {
        fix: "apt-get install libnftables1 (or nftables)",
      }),
    ];
  }
  const out: Finding[] = [];
  try {
    await nft.run("list tables\n");
  } catch (e) {
    const permission = /Operation not permitted|Permission denied/.test(messageOf(e));
    return [
      finding("kernel.nftables", "fail", "nftables refuses to list tables", {
        detail: messageOf(e),
        fix: permission
          ? "run mvnet as root or with CAP_NET_ADMIN in this network namespace"
          : "load nf_tables (modprobe nf_tables; CONFIG_NF_TABLES) or apt-get install libnftables1",
        data: { applier: nft.kind },
      }),
    ];
  }
  if (nft.kind === "libnftables") {
    out.push(
      finding("kernel.nftables", "ok", "nf_tables usable through libnftables", {
        data: { applier: nft.kind },
      }),
    );
  } else {
    out.push(
      finding(
        "kernel.nftables",
        "warn",
        "libnftables is missing: using `nft -f -` (slower, one process a change)",
        {
          fix: "apt-get install libnftables1",
          data: { applier: nft.kind },
        },
      ),
    );
  }

  const missing: Record<string, string[]> = {};
  for (const feature of Object.keys(NFT_FEATURES)) {
    const r = await probe(nft, renderFeatureProbe(feature));
    if (!r.supported) missing[feature] = r.errors;
  }
  const names = Object.keys(NFT_FEATURES);
  const absent = Object.keys(missing);
  if (absent.length > 0) {
    out.push(
      finding("kernel.nftables.features", "fail", `nftables lacks: ${absent.join(", ")}`, {
        detail: absent.map((f) => `${f}: ${(missing[f] ?? []).join("; ")}`).join("\n"),
        fix: "enable the nf_tables NAT modules (CONFIG_NF_TABLES_IPV4, CONFIG_NFT_NAT, CONFIG_NFT_MASQ, CONFIG_NFT_FIB_IPV4, CONFIG_NFT_CT, CONFIG_NFT_REJECT)",
        data: { missing, checked: names },
      }),
    );
    return out; // the ruleset probe would only repeat the same refusal
  }
  out.push(
    finding("kernel.nftables.features", "ok", `nftables has ${names.join(", ")}`, {
      data: { checked: names },
    }),
  );
  const whole = await probe(nft, renderRulesetProbe(subnetOf(ctx), ctx.tapGroup));
  out.push(
    whole.supported
      ? finding(
          "kernel.nftables.ruleset",
          "ok",
          "the kernel accepts our whole bootstrap ruleset (checked, not applied)",
        )
      : finding("kernel.nftables.ruleset", "fail", "the kernel refuses our bootstrap ruleset", {
          detail: whole.errors.join("\n"),
          data: { errors: whole.errors },
        }),
  );
  return out;
}
