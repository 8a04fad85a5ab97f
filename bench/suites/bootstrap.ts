// bootstrap() / bootstrap() again / teardown(): ours (one nft transaction, sysctl through /proc) against
// the seed's Bootstrap / Teardown (sysctl and iptables processes).
import { bootstrap, teardown } from "../../src/index.js";
import type { Config } from "../config.js";
import { once, rounds } from "../phase.js";
import type { Recorder, RowSpec } from "../record.js";
import { iptablesClear, seedBootstrap, seedTeardown } from "../seed.js";
import { available } from "../spawn.js";

const rows: Record<"fresh" | "again" | "teardown", RowSpec> = {
  fresh: {
    id: "bootstrap.fresh",
    section: "bootstrap",
    what: "bootstrap() on a clean host",
    stat: "p50",
    unit: "ms",
    ours: "bootstrap(): sysctl + state file + one nft transaction",
    baseline: "seed Bootstrap(): 2 sysctl -w + 6 iptables -A",
  },
  again: {
    id: "bootstrap.again",
    section: "bootstrap",
    what: "bootstrap() again (ours: no change; the seed duplicates its rules)",
    stat: "p50",
    unit: "ms",
    ours: "bootstrap()",
    baseline: "seed Bootstrap()",
  },
  teardown: {
    id: "bootstrap.teardown",
    section: "bootstrap",
    what: "teardown()",
    stat: "p50",
    unit: "ms",
    ours: "teardown(): one nft transaction, sysctl restored",
    baseline: "seed Teardown(): 6 iptables -D",
  },
};

/** One run of the bootstrap measurements. */
export async function bootstrapSuite(cfg: Config, rec: Recorder): Promise<void> {
  // Opens the process-wide nftables context (as any earlier call of a long-lived process would).
  await teardown();
  // The first bootstrap of a run also pays one-time costs (first use of the NAT hooks in this
  // namespace; in a fresh process koffi's first async call): recorded apart, not in the rows.
  const first = await once(() => bootstrap());
  rec.fact("ours_bootstrap_first_ms", first.ops.total);
  rec.fact("ours_bootstrap_first_loop_lag_worst_ms", first.lag.worst);
  await teardown();
  const ours = await rounds(cfg.bootstrapRounds, {
    fresh: () => bootstrap(),
    again: () => bootstrap(),
    teardown: () => teardown(),
  });
  for (const k of ["fresh", "again", "teardown"] as const) rec.add(rows[k], "ours", ours[k]);

  if (!(available("iptables") && available("sysctl"))) return;
  iptablesClear();
  const seed = await rounds(cfg.bootstrapRounds, {
    fresh: () => seedBootstrap("eth0"),
    again: () => seedBootstrap("eth0"),
    teardown: () => seedTeardown("eth0"),
    // Not recorded: removes the second copy of the rules the repeated Bootstrap left.
    cleanup: () => iptablesClear(),
  });
  for (const k of ["fresh", "again", "teardown"] as const) rec.add(rows[k], "baseline", seed[k]);
}
