// Our nf_tables set-element client and the port mappings built on it, against the real kernel in the
// runner's private network namespace, read back through `nft -j list map` (an independent path).
import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import { ConflictError } from "../../src/core/errors.js";
import { bootstrapFirewall, type Mapping, type NftApplier, openNft } from "../../src/firewall/index.js";
import {
  activeElementPath,
  addMapping,
  listMappings,
  removeMapping,
  setElementPath,
} from "../../src/firewall/portmap.js";
import {
  type ElemField,
  NFPROTO_IPV4,
  NftnlSocket,
  setElemAdd,
  setElemDel,
  setElemGet,
  setElemTransaction,
} from "../../src/kernel/nftnl/index.js";
import { kernelDescribe, kernelErrno, sh } from "../helpers/kernel.js";

const T = "nftnl_t";
const anySet = { family: NFPROTO_IPV4, table: T, set: "pm_any" };
const iifSet = { family: NFPROTO_IPV4, table: T, set: "pm_iif" };
const macSet = { family: NFPROTO_IPV4, table: T, set: "vm_macs" };

const key = (port: number): ElemField[] => [
  { type: "inet_proto", value: 6 },
  { type: "inet_service", value: port },
];
const guest = (ip: string, port = 80): ElemField[] => [
  { type: "ipv4_addr", value: ip },
  { type: "inet_service", value: port },
];

type Json = Record<string, unknown>;

/** `nft -j list map ip <table> <name>`'s elements, as nft prints them. */
function listMap(name: string, table = T): unknown[] {
  const doc = JSON.parse(sh("nft", ["-j", "list", "map", "ip", table, name])) as { nftables: Json[] };
  const map = doc.nftables.map((o) => o.map as Json | undefined).find((m) => m?.name === name);
  return (map?.elem as unknown[] | undefined) ?? [];
}

function listSet(name: string): unknown[] {
  const doc = JSON.parse(sh("nft", ["-j", "list", "set", "ip", T, name])) as { nftables: Json[] };
  const set = doc.nftables.map((o) => o.set as Json | undefined).find((s) => s?.name === name);
  return (set?.elem as unknown[] | undefined) ?? [];
}

const elem = (proto: string, port: number, ip: string, gport = 80) => [
  { concat: [proto, port] },
  { concat: [ip, gport] },
];

kernelDescribe("nf_tables set elements through our netlink messages", () => {
  let sock: NftnlSocket;
  beforeAll(() => {
    sock = NftnlSocket.open();
  });
  afterAll(() => sock.close());
  beforeEach(() => {
    sh(
      "nft",
      ["-f", "-"],
      `add table ip ${T}\ndelete table ip ${T}\nadd table ip ${T}
add map ip ${T} pm_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
add map ip ${T} pm_iif { type inet_proto . ifname . inet_service : ipv4_addr . inet_service; }
add set ip ${T} vm_macs { type ifname . ether_addr; }
`,
    );
  });

  it("create adds an element; create again is EEXIST; add of the identical element is a no-op", () => {
    setElemAdd(sock, anySet, [{ key: key(8080), data: guest("10.200.0.2") }], { exclusive: true });
    expect(listMap("pm_any")).toEqual([elem("tcp", 8080, "10.200.0.2")]);
    expect(
      kernelErrno(() =>
        setElemAdd(sock, anySet, [{ key: key(8080), data: guest("10.200.0.2") }], { exclusive: true }),
      ),
    ).toBe("EEXIST");
    expect(
      kernelErrno(() => setElemAdd(sock, anySet, [{ key: key(8080), data: guest("10.200.0.2") }])),
    ).toBeUndefined();
    expect(listMap("pm_any")).toEqual([elem("tcp", 8080, "10.200.0.2")]);
  });

  it("add of the same key with another value is EEXIST and leaves the element alone", () => {
    setElemAdd(sock, anySet, [{ key: key(8080), data: guest("10.200.0.2") }]);
    expect(kernelErrno(() => setElemAdd(sock, anySet, [{ key: key(8080), data: guest("10.200.0.3") }]))).toBe(
      "EEXIST",
    );
    expect(listMap("pm_any")).toEqual([elem("tcp", 8080, "10.200.0.2")]);
  });

  it("get reads the value back; an absent key, map or table is undefined", () => {
    setElemAdd(sock, anySet, [{ key: key(443), data: guest("10.200.0.9", 8443) }]);
    expect(setElemGet(sock, anySet, key(443), ["ipv4_addr", "inet_service"])).toEqual({
      key: key(443),
      data: guest("10.200.0.9", 8443),
    });
    expect(setElemGet(sock, anySet, key(444))).toBeUndefined();
    expect(setElemGet(sock, { ...anySet, set: "nope" }, key(443))).toBeUndefined();
    expect(setElemGet(sock, { ...anySet, table: "nope" }, key(443))).toBeUndefined();
  });

  it("a transaction is all or nothing: one refused change aborts the others", () => {
    setElemAdd(sock, anySet, [{ key: key(1), data: guest("10.200.0.2") }]);
    expect(
      kernelErrno(() =>
        setElemTransaction(sock, [
          { op: "add", set: anySet, elems: [{ key: key(2), data: guest("10.200.0.2") }] },
          { op: "delete", set: anySet, elems: [{ key: key(1) }] },
          { op: "add", set: anySet, elems: [{ key: key(1), data: guest("10.200.0.7") }] },
          { op: "create", set: anySet, elems: [{ key: key(1), data: guest("10.200.0.2") }] },
          { op: "create", set: anySet, elems: [{ key: key(1), data: guest("10.200.0.2") }] },
        ]),
      ),
    ).toBe("EEXIST");
    expect(listMap("pm_any")).toEqual([elem("tcp", 1, "10.200.0.2")]);
  });

  it("a refusal of a message that asked no ACK (only the last does) is reported, and the socket stays in step", () => {
    expect(
      kernelErrno(() =>
        setElemTransaction(sock, [
          { op: "delete", set: anySet, elems: [{ key: key(9) }] },
          { op: "add", set: anySet, elems: [{ key: key(3), data: guest("10.200.0.3") }] },
          { op: "add", set: anySet, elems: [{ key: key(4), data: guest("10.200.0.4") }] },
        ]),
      ),
    ).toBe("ENOENT");
    expect(listMap("pm_any")).toEqual([]);
    setElemAdd(sock, anySet, [{ key: key(5), data: guest("10.200.0.5") }]);
    expect(kernelErrno(() => setElemAdd(sock, anySet, [{ key: key(5), data: guest("10.200.0.6") }]))).toBe(
      "EEXIST",
    );
    expect(listMap("pm_any")).toEqual([elem("tcp", 5, "10.200.0.5")]);
  });

  it("add identical + delete removes; with another guest's value it is EEXIST and removes nothing", () => {
    setElemAdd(sock, anySet, [{ key: key(5), data: guest("10.200.0.5") }]);
    const removeAs = (ip: string) =>
      setElemTransaction(sock, [
        { op: "add", set: anySet, elems: [{ key: key(5), data: guest(ip) }] },
        { op: "delete", set: anySet, elems: [{ key: key(5) }] },
      ]);
    expect(kernelErrno(() => removeAs("10.200.0.6"))).toBe("EEXIST");
    expect(listMap("pm_any")).toEqual([elem("tcp", 5, "10.200.0.5")]);
    expect(kernelErrno(() => removeAs("10.200.0.5"))).toBeUndefined();
    expect(listMap("pm_any")).toEqual([]);
  });

  it("delete by key; an absent key or table is ENOENT", () => {
    setElemAdd(sock, anySet, [
      { key: key(7), data: guest("10.200.0.7") },
      { key: key(8), data: guest("10.200.0.8") },
    ]);
    setElemDel(sock, anySet, [key(7)]);
    expect(listMap("pm_any")).toEqual([elem("tcp", 8, "10.200.0.8")]);
    expect(kernelErrno(() => setElemDel(sock, anySet, [key(7)]))).toBe("ENOENT");
    expect(kernelErrno(() => setElemDel(sock, { ...anySet, table: "nope" }, [key(8)]))).toBe("ENOENT");
  });

  it("a key of the wrong length is refused by the kernel (EINVAL), not stored", () => {
    expect(kernelErrno(() => setElemAdd(sock, iifSet, [{ key: key(9), data: guest("10.200.0.9") }]))).toBe(
      "EINVAL",
    );
    expect(listMap("pm_iif")).toEqual([]);
  });

  it("writes ifname concatenations and plain sets as nft reads them", () => {
    const iifKey: ElemField[] = [
      { type: "inet_proto", value: 17 },
      { type: "ifname", value: "uplink0" },
      { type: "inet_service", value: 53 },
    ];
    setElemAdd(sock, iifSet, [{ key: iifKey, data: guest("10.200.0.3", 5353) }]);
    expect(listMap("pm_iif")).toEqual([
      [{ concat: ["udp", "uplink0", 53] }, { concat: ["10.200.0.3", 5353] }],
    ]);
    setElemAdd(sock, macSet, [
      {
        key: [
          { type: "ifname", value: "mvtap1" },
          { type: "ether_addr", value: "02:00:0a:c8:00:02" },
        ],
      },
    ]);
    expect(listSet("vm_macs")).toEqual([{ concat: ["mvtap1", "02:00:0a:c8:00:02"] }]);
  });

  it("3 000 elements in one transaction (several messages), then single changes still work", () => {
    const elems = Array.from({ length: 3000 }, (_, i) => ({ key: key(i + 1), data: guest("10.200.0.2") }));
    setElemAdd(sock, anySet, elems);
    expect(listMap("pm_any")).toHaveLength(3000);
    setElemDel(sock, anySet, [key(3000)]);
    expect(setElemGet(sock, anySet, key(3000))).toBeUndefined();
    expect(setElemGet(sock, anySet, key(2999))).toBeDefined();
  });
});

const web: Mapping = {
  protocol: "tcp",
  host: { kind: "any" },
  hostPort: 8080,
  guestIp: "10.200.0.2",
  guestPort: 80,
};
const onIf: Mapping = { ...web, protocol: "udp", host: { kind: "interface", name: "uplink0" }, hostPort: 53 };
const onAddr: Mapping = { ...web, host: { kind: "address", ip: "192.0.2.2" }, hostPort: 8443 };
const TABLE = "nftnl_pm";

for (const path of ["auto", "libnftables"] as const) {
  kernelDescribe(
    `port mappings through ${path === "auto" ? "our netlink" : "libnftables (fallback)"}`,
    () => {
      let nft: NftApplier;
      beforeAll(async () => {
        setElementPath(path);
        nft = await openNft();
      });
      afterAll(() => {
        nft.close();
        setElementPath("auto");
      });
      beforeEach(async () => {
        sh("nft", ["-f", "-"], `add table ip ${TABLE}\ndelete table ip ${TABLE}\n`);
        await bootstrapFirewall(nft, { table: TABLE });
      });

      it("takes the path asked for", () => {
        expect(activeElementPath()).toBe(path === "auto" ? "netlink" : "libnftables");
      });

      it("add → true, again → false, other guest → ConflictError naming the owner; nft lists exactly one", async () => {
        expect(await addMapping(nft, TABLE, web)).toBe(true);
        expect(await addMapping(nft, TABLE, web)).toBe(false);
        const other = { ...web, guestIp: "10.200.0.3" };
        const err = await addMapping(nft, TABLE, other).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConflictError);
        expect((err as ConflictError).message).toContain("10.200.0.2:80");
        expect(listMap("pm_any", TABLE)).toEqual([elem("tcp", 8080, "10.200.0.2")]);
      });

      it("each host side lands in its own map, as nft and listMappings read it", async () => {
        for (const m of [web, onIf, onAddr]) expect(await addMapping(nft, TABLE, m)).toBe(true);
        expect(listMap("pm_iif", TABLE)).toEqual([
          [{ concat: ["udp", "uplink0", 53] }, { concat: ["10.200.0.2", 80] }],
        ]);
        expect(listMap("pm_addr", TABLE)).toEqual([
          [{ concat: ["tcp", "192.0.2.2", 8443] }, { concat: ["10.200.0.2", 80] }],
        ]);
        expect(await listMappings(nft, TABLE)).toEqual([web, onAddr, onIf]);
      });

      it("remove: removed, then absent; another guest's mapping is other-owner and stays", async () => {
        await addMapping(nft, TABLE, web);
        await addMapping(nft, TABLE, onIf);
        expect(await removeMapping(nft, TABLE, { ...web, guestPort: 81 })).toBe("other-owner");
        expect(await removeMapping(nft, TABLE, { ...onIf, guestIp: "10.200.0.9" })).toBe("other-owner");
        expect(listMap("pm_any", TABLE)).toEqual([elem("tcp", 8080, "10.200.0.2")]);
        expect(await removeMapping(nft, TABLE, web)).toBe("removed");
        expect(await removeMapping(nft, TABLE, web)).toBe("absent");
        expect(listMap("pm_any", TABLE)).toEqual([]);
        expect(await removeMapping(nft, TABLE, onIf)).toBe("removed");
        expect(listMap("pm_iif", TABLE)).toEqual([]);
      });

      it("changes made back to back still let the event loop turn", async () => {
        let turned = false;
        setImmediate(() => {
          turned = true;
        });
        let calls = 0;
        // Each netlink change settles without a loop turn; without the budget this loop would run all
        // 3 000 calls before the immediate above.
        while (!turned && calls < 3000) {
          await addMapping(nft, TABLE, { ...web, hostPort: 10_000 + calls });
          calls++;
        }
        expect(turned).toBe(true);
        expect(calls).toBeLessThan(3000);
        expect((await listMappings(nft, TABLE)).length).toBe(calls);
      });

      it("after someone flushes the ruleset: add makes the skeleton again, remove reports absent", async () => {
        await addMapping(nft, TABLE, web);
        sh("nft", ["flush", "ruleset"]);
        expect(await removeMapping(nft, TABLE, web)).toBe("absent");
        expect(await addMapping(nft, TABLE, web)).toBe(true);
        expect(listMap("pm_any", TABLE)).toEqual([elem("tcp", 8080, "10.200.0.2")]);
      });
    },
  );
}
