// Port-mapping cost per change, at 0 and 10 000 existing mappings, through each applier (libnftables
// in-process against the `nft -f -` fallback). Not part of `npm run bench`; run it inside a private
// namespace:
//   unshare -n -m --propagation private scripts/netns-setup.sh node_modules/.bin/tsx bench/firewall.ts
// (netns-setup.sh sets MVNET_TEST_NETNS; without it the script refuses to touch any ruleset).
import { readlinkSync } from "node:fs";
import { performance } from "node:perf_hooks";
import {
  addMapping,
  bootstrapFirewall,
  type Mapping,
  type NftApplier,
  openNft,
  removeMapping,
  teardownFirewall,
} from "../src/firewall/index.js";

if (!process.env.MVNET_TEST_NETNS || readlinkSync("/proc/self/ns/net") !== process.env.MVNET_TEST_NETNS) {
  console.error("refusing to run outside a private network namespace (see the header of this file)");
  process.exit(2);
}

const TABLE = "microvm_net";
const mapping = (port: number, i: number): Mapping => ({
  protocol: "tcp",
  host: { kind: "any" },
  hostPort: port,
  guestIp: `10.200.${Math.floor(i / 250) % 250}.${(i % 250) + 2}`,
  guestPort: 80,
});

async function prefill(nft: NftApplier, n: number): Promise<void> {
  // Ports 1–10000 hold the background mappings; the measured ones use 20000 and up.
  for (let start = 0; start < n; start += 1000) {
    const elems: string[] = [];
    for (let i = start; i < Math.min(n, start + 1000); i++) {
      const m = mapping(i + 1, i);
      elems.push(`tcp . ${m.hostPort} : ${m.guestIp} . 80`);
    }
    await nft.run(`add element ip ${TABLE} pm_any { ${elems.join(", ")} }\n`);
  }
}

function stats(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => (s[Math.min(s.length - 1, Math.floor(p * s.length))] as number).toFixed(3);
  const mean = (s.reduce((a, b) => a + b, 0) / s.length).toFixed(3);
  return `mean ${mean}  p50 ${q(0.5)}  p95 ${q(0.95)}  max ${q(1)} ms`;
}

async function measure(kind: "libnftables" | "nft-process", existing: number, ops: number): Promise<void> {
  const nft = await openNft({ prefer: kind });
  await teardownFirewall(nft);
  await bootstrapFirewall(nft);
  await prefill(nft, existing);
  let maxLag = 0;
  let last = performance.now();
  const tick = setInterval(() => {
    const now = performance.now();
    maxLag = Math.max(maxLag, now - last - 1);
    last = now;
  }, 1);
  const add: number[] = [];
  const remove: number[] = [];
  for (let i = 0; i < ops; i++) {
    const t0 = performance.now();
    await addMapping(nft, TABLE, mapping(20000 + i, i));
    add.push(performance.now() - t0);
  }
  for (let i = 0; i < ops; i++) {
    const t0 = performance.now();
    const r = await removeMapping(nft, TABLE, mapping(20000 + i, i));
    remove.push(performance.now() - t0);
    if (r !== "removed") throw new Error(`remove ${i}: ${r}`);
  }
  clearInterval(tick);
  console.log(`${kind.padEnd(11)} existing=${String(existing).padStart(5)} ops=${ops}`);
  console.log(`  addMapping    ${stats(add)}`);
  console.log(`  removeMapping ${stats(remove)}`);
  console.log(`  event loop max delay ${maxLag.toFixed(1)} ms`);
  await teardownFirewall(nft);
  nft.close();
}

for (const existing of [0, 10_000]) await measure("libnftables", existing, 1000);
for (const existing of [0, 10_000]) await measure("nft-process", existing, 100);
