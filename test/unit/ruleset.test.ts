import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { FirewallError, ValidationError } from "../../src/core/errors.js";
import {
  ALL_PORTS,
  buildPolicy,
  elementToEntry,
  normalizeElements,
  parseAllowEntry,
  parsePolicies,
  policyElementKeys,
  renderListPolicies,
  renderPolicyAdd,
  renderPolicyRemove,
} from "../../src/firewall/guest-policy.js";
import {
  BOOTSTRAP_CHAINS,
  type Mapping,
  nftErrno,
  parseElementValue,
  parseMappings,
  renderAddElement,
  renderBootstrap,
  renderCreateElement,
  renderGetElement,
  renderListTable,
  renderProbeAbsent,
  renderRemoveElement,
  renderSkeleton,
  renderTeardown,
  validateMapping,
  validateTableName,
} from "../../src/firewall/index.js";

const SKELETON = `add table ip microvm_net
add map ip microvm_net pm_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
add map ip microvm_net pm_addr { type inet_proto . ipv4_addr . inet_service : ipv4_addr . inet_service; }
add map ip microvm_net pm_iif { type inet_proto . ifname . inet_service : ipv4_addr . inet_service; }
add set ip microvm_net guest_allow_exact { type ipv4_addr . ipv4_addr . inet_proto . inet_service; }
add set ip microvm_net guest_allow { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags interval; }
add set ip microvm_net guest_host_exact { type ipv4_addr . ipv4_addr . inet_proto . inet_service; }
add set ip microvm_net guest_host { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags interval; }
add set ip microvm_net tap_bound { type iface_index; }
add set ip microvm_net tap_mac { type iface_index . ether_addr . ipv4_addr; }
add chain ip microvm_net nat_prerouting { type nat hook prerouting priority dstnat; policy accept; }
add chain ip microvm_net nat_output { type nat hook output priority -100; policy accept; }
add chain ip microvm_net nat_postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain ip microvm_net raw_prerouting { type filter hook prerouting priority raw; policy accept; }
flush chain ip microvm_net nat_prerouting
add rule ip microvm_net nat_prerouting meta l4proto { tcp, udp } fib daddr type local dnat ip to meta l4proto . ip daddr . th dport map @pm_addr
add rule ip microvm_net nat_prerouting meta l4proto { tcp, udp } fib daddr type local dnat ip to meta l4proto . iifname . th dport map @pm_iif
add rule ip microvm_net nat_prerouting meta l4proto { tcp, udp } fib daddr type local dnat ip to meta l4proto . th dport map @pm_any
flush chain ip microvm_net nat_output
add rule ip microvm_net nat_output meta l4proto { tcp, udp } fib daddr type local dnat ip to meta l4proto . ip daddr . th dport map @pm_addr
add rule ip microvm_net nat_output meta l4proto { tcp, udp } fib daddr type local dnat ip to meta l4proto . th dport map @pm_any
flush chain ip microvm_net nat_postrouting
add rule ip microvm_net nat_postrouting ip saddr 127.0.0.0/8 ct status dnat masquerade
flush chain ip microvm_net raw_prerouting
add rule ip microvm_net raw_prerouting iifname != "lo" ip daddr 127.0.0.0/8 drop
`;

const BOOTSTRAP_PART = `add chain ip microvm_net guest_prerouting { type filter hook prerouting priority mangle; policy accept; }
flush chain ip microvm_net guest_prerouting
add rule ip microvm_net guest_prerouting meta iifgroup 28022 fib saddr . iif oif missing drop
add rule ip microvm_net guest_prerouting meta iifgroup 28022 iif @tap_bound iif . ether saddr . ip saddr != @tap_mac drop
add chain ip microvm_net guest_forward { type filter hook forward priority filter; policy accept; }
add chain ip microvm_net guest_input { type filter hook input priority filter; policy accept; }
add chain ip microvm_net guest_postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain ip microvm_net from_guest
add chain ip microvm_net to_guest
add chain ip microvm_net guest_to_host
flush chain ip microvm_net guest_forward
flush chain ip microvm_net guest_input
flush chain ip microvm_net guest_postrouting
flush chain ip microvm_net from_guest
flush chain ip microvm_net to_guest
flush chain ip microvm_net guest_to_host
add rule ip microvm_net guest_forward ct state established,related accept
add rule ip microvm_net guest_forward meta iifgroup 28022 jump from_guest
add rule ip microvm_net guest_forward ip saddr 10.200.0.0/16 jump from_guest
add rule ip microvm_net guest_forward meta oifgroup 28022 jump to_guest
add rule ip microvm_net guest_forward ip daddr 10.200.0.0/16 jump to_guest
add rule ip microvm_net from_guest ct status dnat meta oifgroup 28022 accept
add rule ip microvm_net from_guest ct status dnat ip daddr 10.200.0.0/16 accept
add rule ip microvm_net from_guest ip saddr . ip daddr . meta l4proto . th dport @guest_allow_exact accept
add rule ip microvm_net from_guest ip saddr . ip daddr . meta l4proto . th dport @guest_allow accept
add rule ip microvm_net from_guest meta oifgroup 28022 drop
add rule ip microvm_net from_guest ip daddr 10.200.0.0/16 drop
add rule ip microvm_net from_guest ip daddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 100.64.0.0/10, 127.0.0.0/8 } drop
add rule ip microvm_net from_guest accept
add rule ip microvm_net to_guest ct status dnat accept
add rule ip microvm_net to_guest drop
add rule ip microvm_net guest_input meta iifgroup 28022 jump guest_to_host
add rule ip microvm_net guest_input ip saddr 10.200.0.0/16 jump guest_to_host
add rule ip microvm_net guest_to_host ct state established,related accept
add rule ip microvm_net guest_to_host icmp type echo-request accept
add rule ip microvm_net guest_to_host ip saddr . ip daddr . meta l4proto . th dport @guest_host_exact accept
add rule ip microvm_net guest_to_host ip saddr . ip daddr . meta l4proto . th dport @guest_host accept
add rule ip microvm_net guest_to_host meta l4proto tcp reject with tcp reset
add rule ip microvm_net guest_to_host reject
add rule ip microvm_net guest_postrouting ip saddr 10.200.0.0/16 ip daddr != 10.200.0.0/16 masquerade
add rule ip microvm_net guest_postrouting meta iifgroup 28022 meta oifgroup != 28022 ip daddr != 10.200.0.0/16 masquerade
add rule ip microvm_net guest_postrouting ip saddr 10.200.0.0/16 ct status dnat masquerade
add rule ip microvm_net guest_postrouting meta iifgroup 28022 ct status dnat masquerade
`;

const tcpAny: Mapping = {
  protocol: "tcp",
  host: { kind: "any" },
  hostPort: 8080,
  guestIp: "10.200.0.2",
  guestPort: 80,
};
const udpAddr: Mapping = {
  protocol: "udp",
  host: { kind: "address", ip: "192.0.2.2" },
  hostPort: 53,
  guestIp: "10.200.0.3",
  guestPort: 5353,
};
const tcpIif: Mapping = {
  protocol: "tcp",
  host: { kind: "interface", name: "uplink0" },
  hostPort: 2222,
  guestIp: "10.200.0.4",
  guestPort: 22,
};

describe("renderSkeleton / renderBootstrap / renderTeardown", () => {
  it("renders the skeleton exactly", () => {
    expect(renderSkeleton()).toBe(SKELETON);
    expect(renderSkeleton("other_t")).toBe(SKELETON.replaceAll("ip microvm_net", "ip other_t"));
  });

  it("renders the bootstrap as skeleton + guest chains, defaults 10.200.0.0/16", () => {
    expect(renderBootstrap()).toBe(SKELETON + BOOTSTRAP_PART);
    // Host bits of the subnet are cleared.
    expect(renderBootstrap({ subnet: "10.200.7.1/16" })).toBe(SKELETON + BOOTSTRAP_PART);
  });

  it("renders a custom subnet, allowed destinations, resolvers, host ports, and folds nested CIDRs", () => {
    const text = renderBootstrap({
      table: "t2",
      tapGroup: 77,
      subnet: "172.31.0.0/20",
      blockedDestinations: ["10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/16", "10.0.0.0/8"],
      allowedDestinations: [
        "192.168.1.53/32",
        "169.254.169.254:80/tcp",
        "10.9.0.0/16:8000-8010/udp",
        "192.168.1.53:53", // inside the first entry: dropped
      ],
      dns: ["172.31.0.1", "10.0.0.2", "172.31.0.1"],
      guestToHost: [
        { protocol: "udp", port: 53 },
        { protocol: "tcp", port: 53 },
        { protocol: "udp", port: 53 },
        { protocol: "udp", port: 123 },
      ],
    });
    const own = text.slice(renderSkeleton("t2").length);
    expect(
      own,
    ).toBe(`add chain ip t2 guest_prerouting { type filter hook prerouting priority mangle; policy accept; }
flush chain ip t2 guest_prerouting
add rule ip t2 guest_prerouting meta iifgroup 77 fib saddr . iif oif missing drop
add rule ip t2 guest_prerouting meta iifgroup 77 iif @tap_bound iif . ether saddr . ip saddr != @tap_mac drop
add chain ip t2 guest_forward { type filter hook forward priority filter; policy accept; }
add chain ip t2 guest_input { type filter hook input priority filter; policy accept; }
add chain ip t2 guest_postrouting { type nat hook postrouting priority srcnat; policy accept; }
add chain ip t2 from_guest
add chain ip t2 to_guest
add chain ip t2 guest_to_host
flush chain ip t2 guest_forward
flush chain ip t2 guest_input
flush chain ip t2 guest_postrouting
flush chain ip t2 from_guest
flush chain ip t2 to_guest
flush chain ip t2 guest_to_host
add rule ip t2 guest_forward ct state established,related accept
add rule ip t2 guest_forward meta iifgroup 77 jump from_guest
add rule ip t2 guest_forward ip saddr 172.31.0.0/20 jump from_guest
add rule ip t2 guest_forward meta oifgroup 77 jump to_guest
add rule ip t2 guest_forward ip daddr 172.31.0.0/20 jump to_guest
add rule ip t2 from_guest ct status dnat meta oifgroup 77 accept
add rule ip t2 from_guest ct status dnat ip daddr 172.31.0.0/20 accept
add rule ip t2 from_guest ip daddr { 192.168.1.53 } accept
add rule ip t2 from_guest ip daddr 169.254.169.254 tcp dport 80 accept
add rule ip t2 from_guest ip daddr 10.9.0.0/16 udp dport 8000-8010 accept
add rule ip t2 from_guest ip daddr { 172.31.0.1, 10.0.0.2 } meta l4proto { tcp, udp } th dport 53 accept
add rule ip t2 from_guest ip saddr . ip daddr . meta l4proto . th dport @guest_allow_exact accept
add rule ip t2 from_guest ip saddr . ip daddr . meta l4proto . th dport @guest_allow accept
add rule ip t2 from_guest meta oifgroup 77 drop
add rule ip t2 from_guest ip daddr 172.31.0.0/20 drop
add rule ip t2 from_guest ip daddr { 10.0.0.0/8, 192.168.0.0/16 } drop
add rule ip t2 from_guest accept
add rule ip t2 to_guest ct status dnat accept
add rule ip t2 to_guest drop
add rule ip t2 guest_input meta iifgroup 77 jump guest_to_host
add rule ip t2 guest_input ip saddr 172.31.0.0/20 jump guest_to_host
add rule ip t2 guest_to_host ct state established,related accept
add rule ip t2 guest_to_host icmp type echo-request accept
add rule ip t2 guest_to_host tcp dport { 53 } accept
add rule ip t2 guest_to_host udp dport { 53, 123 } accept
add rule ip t2 guest_to_host ip daddr { 172.31.0.1, 10.0.0.2 } meta l4proto { tcp, udp } th dport 53 accept
add rule ip t2 guest_to_host ip saddr . ip daddr . meta l4proto . th dport @guest_host_exact accept
add rule ip t2 guest_to_host ip saddr . ip daddr . meta l4proto . th dport @guest_host accept
add rule ip t2 guest_to_host meta l4proto tcp reject with tcp reset
add rule ip t2 guest_to_host reject
add rule ip t2 guest_postrouting ip saddr 172.31.0.0/20 ip daddr != 172.31.0.0/20 masquerade
add rule ip t2 guest_postrouting meta iifgroup 77 meta oifgroup != 77 ip daddr != 172.31.0.0/20 masquerade
add rule ip t2 guest_postrouting ip saddr 172.31.0.0/20 ct status dnat masquerade
add rule ip t2 guest_postrouting meta iifgroup 77 ct status dnat masquerade
`);
    expect(renderBootstrap({ blockedDestinations: [] })).not.toContain("{ 10.0.0.0/8");
  });

  it("creates every chain a rule jumps to before the first jump, and lists it in BOOTSTRAP_CHAINS", () => {
    const lines = renderBootstrap().split("\n");
    const targets = new Set(lines.flatMap((l) => l.match(/ jump (\S+)$/)?.[1] ?? []));
    expect([...targets].sort()).toEqual(["from_guest", "guest_to_host", "to_guest"]);
    for (const c of targets) {
      expect(BOOTSTRAP_CHAINS).toContain(c);
      const made = lines.indexOf(`add chain ip microvm_net ${c}`);
      expect(made).toBeGreaterThan(-1);
      expect(made).toBeLessThan(lines.findIndex((l) => l.endsWith(` jump ${c}`)));
    }
  });

  it("renders teardown as add + delete, so an absent table is success", () => {
    expect(renderTeardown()).toBe("add table ip microvm_net\ndelete table ip microvm_net\n");
  });
});

describe("element commands", () => {
  it("renders create / remove / get for each host-match kind", () => {
    expect(renderCreateElement("microvm_net", tcpAny)).toBe(
      "create element ip microvm_net pm_any { tcp . 8080 : 10.200.0.2 . 80 }\n",
    );
    expect(renderCreateElement("microvm_net", udpAddr)).toBe(
      "create element ip microvm_net pm_addr { udp . 192.0.2.2 . 53 : 10.200.0.3 . 5353 }\n",
    );
    expect(renderCreateElement("microvm_net", tcpIif)).toBe(
      'create element ip microvm_net pm_iif { tcp . "uplink0" . 2222 : 10.200.0.4 . 22 }\n',
    );
    expect(renderRemoveElement("microvm_net", tcpIif)).toBe(
      'add element ip microvm_net pm_iif { tcp . "uplink0" . 2222 : 10.200.0.4 . 22 }\n' +
        'delete element ip microvm_net pm_iif { tcp . "uplink0" . 2222 }\n',
    );
    expect(renderAddElement("microvm_net", tcpAny)).toBe(
      "add element ip microvm_net pm_any { tcp . 8080 : 10.200.0.2 . 80 }\n",
    );
    expect(renderProbeAbsent("microvm_net", udpAddr)).toBe(
      "create element ip microvm_net pm_addr { udp . 192.0.2.2 . 53 : 10.200.0.3 . 5353 }\n" +
        "delete element ip microvm_net pm_addr { udp . 192.0.2.2 . 53 }\n",
    );
    expect(renderGetElement("microvm_net", udpAddr)).toBe(
      "get element ip microvm_net pm_addr { udp . 192.0.2.2 . 53 }\n",
    );
    expect(renderListTable("microvm_net")).toBe("list table ip microvm_net\n");
  });

  it("normalises the protocol's case", () => {
    const m = { ...tcpAny, protocol: "TCP" } as unknown as Mapping;
    expect(renderCreateElement("microvm_net", m)).toContain("{ tcp . 8080 :");
  });
});

describe("no text injection", () => {
  const hostileNames = [
    'eth0" ; flush ruleset ; "',
    "eth0 }\nflush ruleset",
    "a}b",
    "a b",
    "a;b",
    "",
    "a-very-long-interface-name",
  ];
  it.each(hostileNames)("rejects interface name %j before rendering", (name) => {
    const m = { ...tcpIif, host: { kind: "interface", name } } as Mapping;
    for (const render of [
      renderCreateElement,
      renderAddElement,
      renderProbeAbsent,
      renderRemoveElement,
      renderGetElement,
    ]) {
      const err = (() => {
        try {
          render("microvm_net", m);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as ValidationError).field).toBe("host.name");
    }
  });

  it.each(["x; flush ruleset", "x\nflush ruleset", "1abc", "a-b", "", "a".repeat(65)])(
    "rejects table name %j",
    (t) => {
      expect(() => renderSkeleton(t)).toThrow(ValidationError);
      expect(() => renderTeardown(t)).toThrow(ValidationError);
      expect(() => renderCreateElement(t, tcpAny)).toThrow(ValidationError);
      expect(() => renderBootstrap({ table: t })).toThrow(ValidationError);
    },
  );

  it("rejects bad addresses, ports, protocols and host kinds with the field named", () => {
    const field = (m: unknown) => {
      try {
        validateMapping(m);
      } catch (e) {
        return (e as ValidationError).field;
      }
      return undefined;
    };
    expect(field({ ...tcpAny, guestIp: "10.200.0.2 } ; flush ruleset" })).toBe("guestIp");
    expect(field({ ...udpAddr, host: { kind: "address", ip: "192.0.2.2/24" } })).toBe("host.ip");
    expect(field({ ...tcpAny, hostPort: 0 })).toBe("hostPort");
    expect(field({ ...tcpAny, guestPort: 65536 })).toBe("guestPort");
    expect(field({ ...tcpAny, protocol: "icmp" })).toBe("protocol");
    expect(field({ ...tcpAny, host: { kind: "everything" } })).toBe("host");
    expect(field(null)).toBe("mapping");
    expect(field(tcpAny)).toBeUndefined();
  });

  it("rejects a bad subnet, destination or host port in the bootstrap", () => {
    expect(() => renderBootstrap({ subnet: "10.200.0.0/16; flush ruleset" })).toThrow(ValidationError);
    expect(() => renderBootstrap({ blockedDestinations: ["10.0.0.0/33"] })).toThrow(
      /blockedDestinations\[0\]/,
    );
    expect(() => renderBootstrap({ allowedDestinations: ["x"] })).toThrow(/allowedDestinations\[0\]/);
    expect(() => renderBootstrap({ guestToHost: [{ protocol: "sctp" as "tcp", port: 1 }] })).toThrow(
      /guestToHost\[0\]\.protocol/,
    );
    for (const tapGroup of [-1, 1.5, 2 ** 32, Number.NaN]) {
      expect(() => renderBootstrap({ tapGroup })).toThrow(/invalid tapGroup/);
    }
  });

  it("accepts ordinary table names", () => {
    expect(validateTableName("microvm_net")).toBe("microvm_net");
    expect(validateTableName("T9")).toBe("T9");
  });
});

describe("parsing nft output", () => {
  // Captured from `nft -j list table ip microvm_net` (nft 1.0.6) with three mappings, plus a map
  // that is not ours and an element of ours with a protocol we do not publish.
  const listed = JSON.stringify({
    nftables: [
      { metainfo: { version: "1.0.6", release_name: "Lester Gooch #5", json_schema_version: 1 } },
      { table: { family: "ip", name: "microvm_net", handle: 1 } },
      {
        map: {
          family: "ip",
          name: "pm_any",
          table: "microvm_net",
          type: ["inet_proto", "inet_service"],
          handle: 1,
          map: "ipv4_addr . inet_service",
          elem: [
            [{ concat: ["tcp", 8080] }, { concat: ["10.200.0.2", 80] }],
            [{ concat: ["sctp", 9] }, { concat: ["10.200.0.2", 9] }],
          ],
        },
      },
      {
        map: {
          family: "ip",
          name: "pm_addr",
          table: "microvm_net",
          type: ["inet_proto", "ipv4_addr", "inet_service"],
          handle: 2,
          map: "ipv4_addr . inet_service",
          elem: [[{ concat: ["udp", "192.0.2.2", 53] }, { concat: ["10.200.0.3", 5353] }]],
        },
      },
      {
        map: {
          family: "ip",
          name: "pm_iif",
          table: "microvm_net",
          type: ["inet_proto", "ifname", "inet_service"],
          handle: 3,
          map: "ipv4_addr . inet_service",
          elem: [[{ concat: ["tcp", "uplink0", 2222] }, { concat: ["10.200.0.4", 22] }]],
        },
      },
      { map: { family: "ip", name: "theirs", table: "microvm_net", elem: [[{ concat: ["tcp", 1] }, 2]] } },
      { chain: { family: "ip", table: "microvm_net", name: "nat_prerouting", handle: 4 } },
    ],
  });

  it("reads mappings from list JSON, skipping what is not ours", () => {
    expect(parseMappings(listed)).toEqual([tcpAny, udpAddr, tcpIif]);
    expect(parseMappings('{"nftables":[]}')).toEqual([]);
  });

  it("reads the guest side of a get-element text", () => {
    expect(
      parseElementValue(
        'table ip microvm_net {\n\tmap pm_iif {\n\t\ttype inet_proto . ifname . inet_service : ipv4_addr . inet_service\n\t\telements = { tcp . "uplink0" . 8080 : 10.200.0.2 . 80 }\n\t}\n}\n',
      ),
    ).toBe("10.200.0.2:80");
    expect(parseElementValue("table ip microvm_net {\n}\n")).toBeUndefined();
  });

  it("classifies nft error texts", () => {
    const exists = new FirewallError("x", "Error: Could not process rule: File exists\nadd element …");
    const absent = new FirewallError("x", "Error: No such file or directory\nadd element …");
    expect(nftErrno(exists)).toBe("EEXIST");
    expect(nftErrno(absent)).toBe("ENOENT");
    expect(nftErrno(new FirewallError("x", "Error: syntax error"))).toBeUndefined();
    expect(nftErrno(new Error("File exists"))).toBeUndefined();
  });
});

// `nft -c` (check mode) parses and evaluates in user space, but still reads the kernel's ruleset
// (it needs CAP_NET_ADMIN), so it runs in a throw-away user + network namespace: never the host's.
function nftCheck(text: string): { ok: boolean; stderr: string } | undefined {
  const r = spawnSync("unshare", ["-r", "-n", "nft", "-c", "-f", "-"], { input: text, encoding: "utf8" });
  if (r.error || /unshare:/.test(r.stderr ?? "")) return undefined;
  return { ok: r.status === 0, stderr: r.stderr };
}
const checkable = nftCheck("add table ip probe\n") !== undefined;
if (!checkable) console.log("nft check-mode tests skipped: nft or unprivileged user namespaces unavailable");

describe.skipIf(!checkable)("rendered text parses (nft -c in a throw-away namespace)", () => {
  it("accepts the bootstrap, a custom bootstrap and every element command", () => {
    const text =
      renderBootstrap() +
      renderBootstrap({
        subnet: "172.31.0.0/20",
        allowedDestinations: ["192.168.1.53/32"],
        guestToHost: [{ protocol: "udp", port: 53 }],
      }) +
      [tcpAny, udpAddr, tcpIif].map((m) => renderCreateElement("microvm_net", m)).join("") +
      [tcpAny, udpAddr, tcpIif].map((m) => renderAddElement("microvm_net", m)).join("") +
      [tcpAny, udpAddr, tcpIif].map((m) => renderRemoveElement("microvm_net", m)).join("") +
      [tcpAny, udpAddr, tcpIif].map((m) => renderProbeAbsent("microvm_net", m)).join("") +
      renderTeardown();
    const r = nftCheck(text);
    expect(r?.stderr).toBe("");
    expect(r?.ok).toBe(true);
  });

  it("rejects text that does not parse (the check can fail)", () => {
    const r = nftCheck(`${renderSkeleton()}add rule ip microvm_net nat_output dnat ip to @nowhere\n`);
    expect(r?.ok).toBe(false);
  });
});

describe("per-guest policy (guest-policy.ts)", () => {
  it("parses allow entries: address, CIDR, port, range, protocol, object form", () => {
    expect(parseAllowEntry("169.254.169.254")).toEqual([
      { cidr: "169.254.169.254/32", protocol: "any", ports: ALL_PORTS },
    ]);
    expect(parseAllowEntry("169.254.169.254:80/tcp")).toEqual([
      { cidr: "169.254.169.254/32", protocol: "tcp", ports: { start: 80, end: 80 } },
    ]);
    expect(parseAllowEntry("10.1.2.3/8:53")).toEqual([
      { cidr: "10.0.0.0/8", protocol: "tcp", ports: { start: 53, end: 53 } },
      { cidr: "10.0.0.0/8", protocol: "udp", ports: { start: 53, end: 53 } },
    ]);
    expect(parseAllowEntry("192.0.2.0/24/UDP")).toEqual([
      { cidr: "192.0.2.0/24", protocol: "udp", ports: ALL_PORTS },
    ]);
    expect(parseAllowEntry({ cidr: "192.0.2.9", protocol: "tcp", port: { start: 8000, end: 8010 } })).toEqual(
      [{ cidr: "192.0.2.9/32", protocol: "tcp", ports: { start: 8000, end: 8010 } }],
    );
    for (const e of parseAllowEntry("10.0.0.0/8:8000-8010/tcp"))
      expect(parseAllowEntry(elementToEntry(e))).toEqual([e]);
  });

  it.each([
    "",
    "10.0.0.0/33",
    "10.0.0.300",
    "10.0.0.1:0",
    "10.0.0.1:70000/tcp",
    "10.0.0.1:90-80/tcp",
    "10.0.0.1/icmp",
    "10.0.0.1 ; flush ruleset",
    "10.0.0.1}",
    // Whitespace is refused like everywhere else an address is taken (validateIPv4), not trimmed.
    " 10.0.0.1",
    "10.0.0.1:53 ",
  ])("refuses allow entry %j with a ValidationError", (bad) => {
    expect(() => parseAllowEntry(bad, "allow[0]")).toThrow(ValidationError);
  });

  it("drops covered entries and refuses partial overlaps", () => {
    const els = ["10.0.0.0/8", "10.1.0.0/16:80/tcp", "10.0.0.0/8", "192.0.2.1:53/udp"].flatMap((e) =>
      parseAllowEntry(e),
    );
    expect(normalizeElements(els).map(elementToEntry)).toEqual(["10.0.0.0/8", "192.0.2.1:53/udp"]);
    const partial = ["10.0.0.0/8:80-90/tcp", "10.0.0.0/16:85-95/tcp"].flatMap((e) => parseAllowEntry(e));
    expect(() => normalizeElements(partial)).toThrow(/overlap/);
    // Same ports, other protocol: disjoint.
    const apart = ["10.0.0.0/8:53/tcp", "10.0.0.0/8:53/udp"].flatMap((e) => parseAllowEntry(e));
    expect(normalizeElements(apart)).toHaveLength(2);
  });

  it("builds a guest's policy: resolvers in both sets, host ports on any host address, MAC binding", () => {
    const p = buildPolicy("10.200.0.2", {
      allow: ["169.254.169.254:80/tcp"],
      hostPorts: [{ protocol: "tcp", port: 22 }],
      dns: ["10.200.0.1"],
      bind: { tap: 7, mac: "06:00:0A:C8:00:02" },
    });
    expect(renderPolicyAdd("microvm_net", p)).toBe(
      "add element ip microvm_net guest_allow_exact { 10.200.0.2 . 169.254.169.254 . tcp . 80, 10.200.0.2 . 10.200.0.1 . tcp . 53, 10.200.0.2 . 10.200.0.1 . udp . 53 }\n" +
        "add element ip microvm_net guest_host { 10.200.0.2 . 0.0.0.0/0 . tcp . 22 }\n" +
        "add element ip microvm_net guest_host_exact { 10.200.0.2 . 10.200.0.1 . tcp . 53, 10.200.0.2 . 10.200.0.1 . udp . 53 }\n" +
        "add element ip microvm_net tap_bound { 7 }\n" +
        "add element ip microvm_net tap_mac { 7 . 06:00:0a:c8:00:02 . 10.200.0.2 }\n",
    );
    expect(
      renderPolicyRemove("microvm_net", {
        guestIp: "10.200.0.3",
        allow: [],
        host: [],
        bind: { tap: 9, mac: "06:00:0a:c8:00:03" },
      }),
    ).toBe(
      "add element ip microvm_net tap_bound { 9 }\ndelete element ip microvm_net tap_bound { 9 }\n" +
        "add element ip microvm_net tap_mac { 9 . 06:00:0a:c8:00:03 . 10.200.0.3 }\n" +
        "delete element ip microvm_net tap_mac { 9 . 06:00:0a:c8:00:03 . 10.200.0.3 }\n",
    );
    expect(renderPolicyAdd("microvm_net", buildPolicy("10.200.0.4"))).toBe("");
    expect(renderListPolicies("microvm_net")).toEqual([
      "list set ip microvm_net guest_allow_exact\n",
      "list set ip microvm_net guest_allow\n",
      "list set ip microvm_net guest_host_exact\n",
      "list set ip microvm_net guest_host\n",
      "list set ip microvm_net tap_bound\n",
      "list set ip microvm_net tap_mac\n",
    ]);
  });

  it.each([
    [{ dns: ["8.8.8"] }, "dns[0]"],
    [{ allow: "10.0.0.0/8" }, "allow"],
    [{ hostPorts: [{ protocol: "icmp", port: 1 }] }, "hostPorts[0].protocol"],
    [{ hostPorts: [{ protocol: "tcp", port: 0 }] }, "hostPorts[0].port"],
    [{ bind: { tap: 0, mac: "06:00:00:00:00:01" } }, "tap"],
    [{ bind: { tap: 'x" ; flush ruleset', mac: "06:00:00:00:00:01" } }, "tap"],
    [{ bind: { tap: 3, mac: "01:00:5e:00:00:01" } }, "mac"],
    [{ bind: { tap: 3, mac: "06:00:00:00:00:01 } ; flush ruleset" } }, "mac"],
  ])("buildPolicy refuses %j naming %s", (input, field) => {
    const err = (() => {
      try {
        buildPolicy("10.200.0.2", input as never);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).field).toBe(field);
  });

  it("reads policies back from nft's JSON, stale bindings included", () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { json_schema_version: 1 } },
        {
          set: {
            name: "guest_allow",
            elem: [
              {
                concat: [
                  "10.200.0.2",
                  { prefix: { addr: "10.0.0.0", len: 8 } },
                  { range: [0, 255] },
                  { range: [0, 65535] },
                ],
              },
              { concat: ["10.200.0.2", { prefix: { addr: "169.254.169.0", len: 24 } }, "tcp", 80] },
              { concat: ["10.200.0.3", "192.0.2.1", "udp", { range: [53, 54] }] },
            ],
          },
        },
        { set: { name: "guest_allow_exact", elem: [{ concat: ["10.200.0.2", "192.0.2.53", "udp", 53] }] } },
        {
          set: {
            name: "guest_host",
            elem: [{ concat: ["10.200.0.2", { prefix: { addr: "0.0.0.0", len: 0 } }, "tcp", 22] }],
          },
        },
        { set: { name: "tap_bound", elem: ["fc-tap0", 12] } },
        {
          set: {
            name: "tap_mac",
            elem: [
              { concat: ["fc-tap0", "06:00:0a:c8:00:02", "10.200.0.2"] },
              { concat: [12, "06:00:0a:c8:00:02", "10.200.0.2"] },
            ],
          },
        },
      ],
    });
    const all = parsePolicies(json);
    const a = all.get("10.200.0.2");
    expect(a?.allow.map(elementToEntry)).toEqual([
      "10.0.0.0/8",
      "169.254.169.0/24:80/tcp",
      "192.0.2.53:53/udp",
    ]);
    expect(a?.host.map(elementToEntry)).toEqual(["0.0.0.0/0:22/tcp"]);
    expect(a?.bind).toEqual({ tap: "fc-tap0", mac: "06:00:0a:c8:00:02" });
    expect(a?.extraBinds).toEqual([{ tap: 12, mac: "06:00:0a:c8:00:02" }]);
    expect(all.get("10.200.0.3")?.allow.map(elementToEntry)).toEqual(["192.0.2.1:53-54/udp"]);
    // With the name resolved, the listed policy compares equal to a wanted one element by element.
    const keys = policyElementKeys(a as NonNullable<typeof a>, (n) => (n === "fc-tap0" ? 5 : undefined));
    expect(keys).toContain("tap_mac: 5 . 06:00:0a:c8:00:02 . 10.200.0.2");
    expect(keys).toContain("tap_mac: 12 . 06:00:0a:c8:00:02 . 10.200.0.2");
  });
});
