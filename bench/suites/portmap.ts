// Port mapping add / remove: ours (one element in an nftables map, written with our own nf_tables
// netlink messages) against the seed's three iptables processes per change, at 0, 1 000 and 10 000
// existing mappings; and, in the same run, against our libnftables path (the fallback, which was the
// only path before kernel/nftnl).

import { type NftApplier, openNft } from "../../src/firewall/index.js";
import { setElementPath } from "../../src/firewall/portmap.js";
import {
  addPortMapping,
  bootstrap,
  createPointToPointTap,
  DEFAULT_TABLE,
  deleteTap,
  removePortMapping,
  teardown,
} from "../../src/index.js";
import type { Config } from "../config.js";
import { rssMiB } from "../machine.js";
import { once, phase } from "../phase.js";
import type { Recorder, RowSpec } from "../record.js";
import { iptablesClear, seedBootstrap, seedPortMapping, seedRestoreText } from "../seed.js";
import { available, run } from "../spawn.js";
import { guestIp } from "./tap.js";

/** The guest of the timed mappings; it has a TAP, so add takes the whole path (route_localnet too). */
const SAMPLE_GUEST = "10.200.255.250";
const SAMPLE_TAP = "mvbenchpm";
/** Background mappings use host ports 1…size; the timed ones start here. */
const SAMPLE_PORT = 40000;

function row(kind: "add" | "remove" | "fill", size: number): RowSpec {
  if (kind === "fill") {
    return {
      id: `portmap.fill.${size}`,
      section: "portmap",
      what: `put ${size} mappings in place in one batch, total`,
      stat: "total",
      unit: "ms",
      ours: `one nft transaction through our applier (add element … { ${size} elements })`,
      baseline: "iptables-restore --noflush (3 rules per mapping)",
    };
  }
  return {
    id: `portmap.${kind}.${size}`,
    section: "portmap",
    what: `port mapping ${kind}, per call, ${size} existing`,
    stat: "p50",
    unit: "ms",
    ours: `${kind === "add" ? "addPortMapping" : "removePortMapping"}("", port, guest, 80, "tcp")`,
    baseline: `iptables ${kind === "add" ? "-A" : "-D"} ×3 (seed's nat PREROUTING + OUTPUT DNAT, FORWARD ACCEPT)`,
    target: kind === "add" ? 0.2 : 1,
  };
}

/** The same calls with mapping changes through libnftables (setElementPath), as the baseline. */
function rowVsLibnftables(kind: "add" | "remove", size: number): RowSpec {
  return {
    ...row(kind, size),
    id: `portmap.${kind}.${size}.vs-libnftables`,
    what: `port mapping ${kind}, per call, ${size} existing, vs our libnftables path`,
    baseline: "the same call with element changes as nft text through libnftables (the fallback)",
  };
}

const background = (size: number) =>
  Array.from({ length: size }, (_, i) => ({ hostPort: i + 1, guestIp: guestIp(i), guestPort: 80 }));

async function ours(
  cfg: Config,
  rec: Recorder,
  nft: NftApplier,
  size: number,
  largest: boolean,
): Promise<void> {
  const opts = { nft };
  await teardown(opts);
  await bootstrap(opts);
  await createPointToPointTap(SAMPLE_TAP, "10.200.0.1", SAMPLE_GUEST, cfg.uid, cfg.uid);
  if (size > 0) {
    const elements = background(size).map((m) => `tcp . ${m.hostPort} : ${m.guestIp} . ${m.guestPort}`);
    const text = `add element ip ${DEFAULT_TABLE} pm_any { ${elements.join(", ")} }\n`;
    rec.add(row("fill", size), "ours", await once(() => nft.run(text)));
  }
  if (largest) rec.fact(`rss_mib_${size}_mappings`, rssMiB());
  const k = cfg.mapSample;
  const port = (j: number) => SAMPLE_PORT + j;
  const add = await phase(k, (j) => addPortMapping("", port(j), SAMPLE_GUEST, 80, "tcp", opts));
  const remove = await phase(k, (j) => removePortMapping("", port(j), SAMPLE_GUEST, 80, "tcp", opts));
  rec.add(row("add", size), "ours", add);
  rec.add(row("remove", size), "ours", remove);
  rec.add(rowVsLibnftables("add", size), "ours", add);
  rec.add(rowVsLibnftables("remove", size), "ours", remove);
  setElementPath("libnftables");
  try {
    rec.add(
      rowVsLibnftables("add", size),
      "baseline",
      await phase(k, (j) => addPortMapping("", port(j), SAMPLE_GUEST, 80, "tcp", opts)),
    );
    rec.add(
      rowVsLibnftables("remove", size),
      "baseline",
      await phase(k, (j) => removePortMapping("", port(j), SAMPLE_GUEST, 80, "tcp", opts)),
    );
  } finally {
    setElementPath("auto");
  }
  await teardown(opts);
  await deleteTap(SAMPLE_TAP);
}

async function seed(cfg: Config, rec: Recorder, size: number): Promise<void> {
  iptablesClear();
  seedBootstrap("eth0");
  if (size > 0) {
    const text = seedRestoreText(background(size));
    rec.add(row("fill", size), "baseline", await once(() => run("iptables-restore", ["--noflush"], text)));
  }
  const k = cfg.seedMapSample;
  const port = (j: number) => SAMPLE_PORT + j;
  rec.add(
    row("add", size),
    "baseline",
    await phase(k, (j) => seedPortMapping("-A", port(j), SAMPLE_GUEST, 80)),
  );
  rec.add(
    row("remove", size),
    "baseline",
    await phase(k, (j) => seedPortMapping("-D", port(j), SAMPLE_GUEST, 80)),
  );
  iptablesClear();
}

/** One run of the port-mapping measurements; the side that goes first alternates between runs. */
export async function portmapSuite(cfg: Config, rec: Recorder): Promise<void> {
  const withSeed = available("iptables") && available("iptables-restore");
  if (!withSeed) console.log("portmap: iptables is not installed, measuring our side only");
  const nft = await openNft();
  try {
    const largest = Math.max(...cfg.mapSizes);
    for (const size of cfg.mapSizes) {
      const sides = rec.run % 2 === 0 ? ["ours", "seed"] : ["seed", "ours"];
      for (const side of sides) {
        if (side === "ours") await ours(cfg, rec, nft, size, size === largest);
        else if (withSeed) await seed(cfg, rec, size);
      }
    }
  } finally {
    nft.close();
  }
}
