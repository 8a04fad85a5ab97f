// A guest's policy elements (firewall/guest-policy.ts) and a VM's map elements (host/nft-elements.ts)
// sent through our nf_tables netlink messages, against the real kernel in the runner's private
// network namespace: they must be exactly the elements nft makes from the text renderers (read back
// through `nft -j list set`, an independent path), and each path must remove what the other added.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import {
  buildPolicy,
  type GuestPolicySpec,
  parsePolicies,
  policyElemChanges,
  policyElementKeys,
  renderPolicyAdd,
  renderPolicyRemove,
} from "../../src/firewall/guest-policy.js";
import { bootstrapFirewall, listMappings, type NftApplier, openNft } from "../../src/firewall/index.js";
import { activeElementPath, setElementPath } from "../../src/firewall/portmap.js";
import { HostNetwork } from "../../src/host/index.js";
import { mappingChanges } from "../../src/host/nft-elements.js";
import { NftnlSocket, setElemTransaction } from "../../src/kernel/nftnl/index.js";
import { kernelDescribe, kernelErrno, sh } from "../helpers/kernel.js";

const T = "hpe_t";

function listPolicies(table = T): Map<string, GuestPolicySpec> {
  const sets = ["guest_allow_exact", "guest_allow", "guest_host_exact", "guest_host", "tap_bound", "tap_mac"];
  return parsePolicies(sets.map((s) => sh("nft", ["-j", "list", "set", "ip", table, s])));
}

/** nft prints an index with no interface behind it (ours: 42, 43) as the text "42". */
function keysOf(p: GuestPolicySpec | undefined): string[] {
  return p ? [...policyElementKeys(p, (n) => (/^\d+$/.test(n) ? Number(n) : undefined))].sort() : [];
}

/** Every shape: exact and interval allow entries, a resolver, host ports, a binding. */
const spec = buildPolicy("10.200.0.7", {
  allow: ["169.254.169.254:80/tcp", "10.0.0.0/8:53/udp", "192.0.2.0/24:8000-8010", "198.51.100.0/24"],
  hostPorts: [{ protocol: "tcp", port: 9000 }],
  dns: ["10.200.0.1"],
  bind: { tap: 42, mac: "02:00:0a:c8:00:07" },
});
const other = buildPolicy("10.200.0.8", {
  allow: ["10.0.0.0/8:53/udp"],
  bind: { tap: 43, mac: "02:00:0a:c8:00:08" },
});

kernelDescribe("policy and map elements over our netlink match nft's", () => {
  let sock: NftnlSocket;
  let nft: NftApplier;
  beforeAll(async () => {
    sock = NftnlSocket.open();
    nft = await openNft();
  });
  afterAll(() => sock.close());
  beforeEach(async () => {
    sh("nft", ["-f", "-"], `add table ip ${T}\ndelete table ip ${T}\n`);
    await bootstrapFirewall(nft, { table: T });
  });

  it("adding over netlink makes exactly the elements the nft text makes", async () => {
    setElemTransaction(sock, policyElemChanges(T, spec, "add") ?? []);
    const viaNetlink = listPolicies();
    expect(keysOf(viaNetlink.get(spec.guestIp))).toEqual(keysOf(spec));
    expect(keysOf(spec).length).toBeGreaterThan(8);
    sh("nft", ["-f", "-"], `flush set ip ${T} guest_allow\nflush set ip ${T} guest_host\n`);
    sh("nft", ["-f", "-"], `flush set ip ${T} guest_allow_exact\nflush set ip ${T} guest_host_exact\n`);
    sh("nft", ["-f", "-"], `flush set ip ${T} tap_bound\nflush set ip ${T} tap_mac\n`);
    await nft.run(renderPolicyAdd(T, spec));
    expect(keysOf(listPolicies().get(spec.guestIp))).toEqual(keysOf(viaNetlink.get(spec.guestIp)));
  });

  it("removal over netlink takes what the text added, leaves another guest alone, and is a no-op when absent", async () => {
    await nft.run(renderPolicyAdd(T, spec) + renderPolicyAdd(T, other));
    setElemTransaction(sock, policyElemChanges(T, spec, "remove") ?? []);
    const left = listPolicies();
    expect(left.has(spec.guestIp)).toBe(false);
    expect(keysOf(left.get(other.guestIp))).toEqual(keysOf(other));
    setElemTransaction(sock, policyElemChanges(T, spec, "remove") ?? []);
    expect(keysOf(listPolicies().get(other.guestIp))).toEqual(keysOf(other));
  });

  it("the text removes what netlink added (the interval ends are the same)", async () => {
    setElemTransaction(sock, policyElemChanges(T, spec, "add") ?? []);
    await nft.run(renderPolicyRemove(T, spec));
    expect(listPolicies().size).toBe(0);
  });

  it("a binding known only by name cannot be encoded (the caller keeps the text path)", () => {
    const named = { ...spec, bind: { tap: "vm7", mac: "02:00:0a:c8:00:07" } };
    expect(policyElemChanges(T, named, "add")).toBeUndefined();
  });

  it("map elements: create, EEXIST for any present key, all-or-nothing with the policy; remove leaves another guest's key", async () => {
    const m = {
      protocol: "tcp" as const,
      host: { kind: "any" as const },
      hostPort: 30001,
      guestIp: "10.200.0.7",
      guestPort: 80,
    };
    const a = {
      protocol: "udp" as const,
      host: { kind: "address" as const, ip: "192.0.2.1" },
      hostPort: 53,
      guestIp: "10.200.0.7",
      guestPort: 5353,
    };
    const i = {
      protocol: "tcp" as const,
      host: { kind: "interface" as const, name: "eth0" },
      hostPort: 8080,
      guestIp: "10.200.0.7",
      guestPort: 8080,
    };
    setElemTransaction(sock, mappingChanges(T, [m, a, i], "create"));
    expect(await listMappings(nft, T)).toHaveLength(3);
    // The same key for another guest, in one transaction with a policy: nothing of it is applied.
    const clash = { ...m, guestIp: "10.200.0.8" };
    const changes = [...mappingChanges(T, [clash], "create"), ...(policyElemChanges(T, other, "add") ?? [])];
    expect(kernelErrno(() => setElemTransaction(sock, changes))).toBe("EEXIST");
    expect(listPolicies().size).toBe(0);
    // Removing the other guest's mapping fails (add of a different value is EEXIST) and changes nothing.
    expect(kernelErrno(() => setElemTransaction(sock, mappingChanges(T, [clash], "remove")))).toBe("EEXIST");
    expect(await listMappings(nft, T)).toHaveLength(3);
    setElemTransaction(sock, mappingChanges(T, [m, a, i], "remove"));
    expect(await listMappings(nft, T)).toEqual([]);
  });
});

kernelDescribe("HostNetwork attach/detach: the same elements over netlink and through libnftables", () => {
  const table = "hpe_hn";
  afterAll(() => setElementPath("auto"));

  for (const path of ["auto", "libnftables"] as const) {
    it(`${path}: attach adds the mapping and every policy element (interval ones too), detach removes them`, async () => {
      setElementPath(path);
      expect(activeElementPath()).toBe(path === "auto" ? "netlink" : "libnftables");
      const dir = mkdtempSync(join(tmpdir(), "hpe-"));
      const nft = await openNft();
      const hn = await HostNetwork.open({ statePath: join(dir, "s.db"), table, nft });
      try {
        const a = await hn.attach("vm-a", {
          publish: ["127.0.0.1:8080:80", "53/udp"],
          dns: ["10.200.0.1"],
          allow: ["10.0.0.0/8:53/udp", "192.0.2.0/24:8000-8010", "169.254.169.254:80/tcp"],
          hostPorts: [{ protocol: "tcp", port: 9000 }],
        });
        const got = listPolicies(table).get(a.guestIp);
        const tapIndex = Number(sh("cat", [`/sys/class/net/${a.tap}/ifindex`]).trim());
        const want = buildPolicy(a.guestIp, {
          allow: ["10.0.0.0/8:53/udp", "192.0.2.0/24:8000-8010", "169.254.169.254:80/tcp"],
          hostPorts: [{ protocol: "tcp", port: 9000 }],
          dns: ["10.200.0.1"],
          bind: { tap: tapIndex, mac: a.guestMac },
        });
        const byName = (n: string) => (n === a.tap ? tapIndex : undefined);
        expect([...policyElementKeys(got ?? want, byName)].sort()).toEqual(
          [...policyElementKeys(want)].sort(),
        );
        expect(got).toBeDefined();
        const maps = (await listMappings(nft, table)).map((m) => `${m.protocol} ${m.hostPort} ${m.guestIp}`);
        expect(maps.sort()).toEqual(a.ports.map((p) => `${p.protocol} ${p.hostPort} ${a.guestIp}`).sort());
        expect(await hn.detach("vm-a")).toBe(true);
        expect(listPolicies(table).size).toBe(0);
        expect(await listMappings(nft, table)).toEqual([]);
      } finally {
        await hn.close();
        rmSync(dir, { recursive: true, force: true });
        sh("nft", ["-f", "-"], `add table ip ${table}\ndelete table ip ${table}\n`);
      }
    });
  }
});
