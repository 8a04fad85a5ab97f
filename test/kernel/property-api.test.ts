// Property-based test of every public function that touches the kernel (issue #5, "Done when"):
// malformed input is refused with a typed error (an MvnetError, a ValidationError naming the field
// when the input is malformed in one field) and leaves the namespace exactly as it was; valid input
// succeeds, and its undo brings the namespace back exactly. "Exactly" is test/helpers/snapshot.ts:
// links, addresses, routes, neighbours, the nftables ruleset, the sysctls we touch, the state
// directory and the HostNetwork database (its next-fit cursors excepted: they move on by design).
//
// One table entry per function. Reproduce a failure with the seed fast-check prints:
//   MVNET_FC_SEED=<seed> node scripts/test.mjs property-api
// MVNET_FC_RUNS scales every run count (default 1; e.g. 3 for a longer search).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  addPortMapping,
  bootstrap,
  clearGuestPolicy,
  closeShared,
  createPointToPointTap,
  createTap,
  DEFAULT_TABLE,
  deleteTap,
  doctor,
  getGuestPolicy,
  HostNetwork,
  integrateHostFirewall,
  listPortMappings,
  listTaps,
  MvnetError,
  removeHostFirewallIntegration,
  removePortMapping,
  setGuestPolicy,
  teardown,
  unbindTap,
  ValidationError,
} from "../../src/index.js";
import { anyIPv4, anything, octet, unicastIPv4 } from "../helpers/arbitraries.js";
import { ipJson, kernelDescribe, sh } from "../helpers/kernel.js";
import { kernelSnapshot, type SnapshotOptions } from "../helpers/snapshot.js";

const SCALE = Number(process.env.MVNET_FC_RUNS ?? 1);
const SEED = process.env.MVNET_FC_SEED === undefined ? undefined : Number(process.env.MVNET_FC_SEED);
const params = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns: Math.max(1, Math.round(numRuns * SCALE)),
  interruptAfterTimeLimit: TIME_LIMIT_MS * SCALE,
  ...(SEED === undefined ? {} : { seed: SEED }),
});
const BAD_RUNS = 15;
const GOOD_RUNS = 8;
/** A property stops drawing new inputs after this long (a loaded machine), and passes on what it ran. */
const TIME_LIMIT_MS = 20_000;
const TEST_TIMEOUT_MS = 120_000;

// ---------------------------------------------------------------- arbitraries

const IFNAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-".split("");
const ifChar = fc.constantFrom(...IFNAME_CHARS);

/**
 * Values of the wrong type, and odd values of the right one: BigInts and objects without a prototype
 * included (their error path once threw TypeError from JSON.stringify / String()).
 */
const garbage: fc.Arbitrary<unknown> = fc
  .oneof(
    fc.constantFrom<unknown>(null, NaN, Infinity, -Infinity, -0, true, false, [], {}, [1, 2], () => 1),
    anything,
    fc.constantFrom<unknown>(
      JSON.parse('{"__proto__": {"polluted": 1}}'),
      JSON.parse('{"constructor": {"prototype": {"polluted": 1}}}'),
      new String("eth0"),
      new Number(80),
    ),
  )
  .filter((v) => v !== undefined);

const nonString = garbage.filter((v) => typeof v !== "string");
const nonNumber = garbage.filter((v) => typeof v !== "number");

const validIfName = fc
  .array(ifChar, { minLength: 1, maxLength: 15 })
  .map((cs) => cs.join(""))
  .filter((n) => n !== "." && n !== "..");

const badIfNameString = fc.oneof(
  fc.constantFrom(
    "",
    ".",
    "..",
    " ",
    "eth0 ",
    " eth0",
    "a/b",
    "a%d",
    "eth0:1",
    "tap\n0",
    "tap\t0",
    "é",
    "tap-名",
    "\u0000",
  ),
  fc.array(ifChar, { minLength: 16, maxLength: 40 }).map((cs) => cs.join("")), // overlong (kernel truncates)
  fc.constantFrom("abcdefghijklmné", "abcdefghijklmn€"), // 15 characters, more than 15 bytes
  fc
    .tuple(
      fc.array(ifChar, { maxLength: 6 }),
      fc.constantFrom(" ", "/", "%", ":", "\t", "\n", "'", '"', ";", "*", "é", "\u00a0", "\u200b", "{", "$"),
      fc.array(ifChar, { maxLength: 6 }),
    )
    .map(([a, c, b]) => `${a.join("")}${c}${b.join("")}`),
);
const badIfName = fc.oneof(badIfNameString, nonString);

const badIPv4String = fc.oneof(
  fc.constantFrom("", "10.1", "1.2.3.4.5", "256.0.0.1", "010.0.0.1", " 10.0.0.1", "10.0.0.1 ", "10.0.0.1/24"),
  fc.constantFrom("::1", "a.b.c.d", "0x0a.0.0.1", "1e1.0.0.1", "10.0.0.-1", "10..0.1", "१.२.३.४"),
  fc.tuple(fc.integer({ min: 256, max: 999 }), octet, octet).map(([a, b, c]) => `${b}.${c}.${a}.1`),
  fc.string().filter((s) => !/^\d{1,3}(\.\d{1,3}){3}$/.test(s)),
);
const badIPv4 = fc.oneof(badIPv4String, nonString);
const nonUnicastIPv4 = fc.constantFrom(
  "0.0.0.0",
  "127.0.0.1",
  "127.1.2.3",
  "224.0.0.1",
  "239.1.1.1",
  "255.255.255.255",
  "240.0.0.1",
);

const badCidrString = fc.oneof(
  fc.constantFrom(
    "",
    "/",
    "10.0.0.1",
    "10.0.0.1/",
    "10.0.0.1/33",
    "10.0.0.1/-1",
    "10.0.0.1/100",
    "10.0.0/24",
  ),
  fc.constantFrom(
    "10.0.0.1/24/8",
    "::1/128",
    " 10.0.0.1/24",
    "10.0.0.1/24 ",
    "10.0.0.1/2 4",
    "10.0.0.1/0x10",
  ),
  fc.tuple(anyIPv4, fc.integer({ min: 33, max: 99 })).map(([a, p]) => `${a}/${p}`),
  fc.tuple(badIPv4String, fc.integer({ min: 0, max: 32 })).map(([a, p]) => `${a}/${p}`),
);
const badCidr = fc.oneof(badCidrString, nonString);

const badPort = fc.oneof(
  fc.constantFrom<unknown>(
    0,
    65536,
    -1,
    NaN,
    1.5,
    Infinity,
    -Infinity,
    "80",
    "0x50",
    null,
    true,
    [80],
    2 ** 53,
  ),
  fc.integer({ min: 65536 }),
  fc.integer({ max: 0 }),
  fc.double({ noInteger: true }),
  nonNumber,
);
const badProtocol = fc.oneof(
  fc.constantFrom<unknown>("icmp", "", "tcp ", " udp", "tcp\n", "sctp", "6", "tcp/udp", "TCP6", null, 6),
  fc.string().filter((s) => s.toLowerCase() !== "tcp" && s.toLowerCase() !== "udp"),
  nonString,
);
const badId = fc.oneof(
  fc.constantFrom<unknown>(-1, 0xffffffff, 2 ** 32, 1.5, NaN, Infinity, "0", null, true),
  fc.integer({ max: -1 }),
  fc.double({ noInteger: true, min: 0, max: 1e10 }),
  nonNumber,
);
const badMtu = fc.oneof(
  fc.constantFrom<unknown>(0, 67, 65536, 1.5, NaN, "1500", null),
  fc.integer({ max: 67 }),
  fc.integer({ min: 65536 }),
  nonNumber,
);
// null is not here: `table ?? default` reads it as "not given".
const badTable = fc.oneof(
  fc.constantFrom<unknown>("", "1abc", "a b", "a-b", "t;flush ruleset", "a".repeat(65), "tabl\u00e9"),
  nonString.filter((v) => v !== null),
);
// null is not here: `group ?? default` reads it as "not given" in the seed-style API.
const badGroup = fc.constantFrom<unknown>(-1, 1.5, NaN, 2 ** 32, "1", true);

/** hostInterface values that are none of "", an IPv4 address, or an interface name other than lo. */
const badHostInterface = fc.oneof(
  fc.constantFrom<unknown>("lo", "192.168.1.300", "10.1", "1.2.3.4.5", "010.0.0.1", "::1", "0.0.0.0.0"),
  badIfNameString.filter((s) => s !== ""),
  nonString,
  fc.constantFrom<unknown>(Symbol("eth0"), Symbol.iterator), // once a TypeError from RegExp.test
);

const validPort = fc.integer({ min: 1, max: 65535 });
const protocol = fc.constantFrom("tcp", "udp", "TCP", "Udp");
const validId = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xfffffffe }));
// A TAP's maximum is 65535 - ETH_HLEN = 65521 (tun.c sets max_mtu = MAX_MTU - hard_header_len);
// 65522-65535 are refused by validation (ValidationError "mtu") before the TAP is made.
const validMtu = fc.integer({ min: 68, max: 65521 });
const tooBigMtu = fc.integer({ min: 65522, max: 65535 });

const vmIdChars = fc.constantFrom(
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:@-".split(""),
);
const validVmId = fc
  .tuple(
    fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789".split("")),
    fc.array(vmIdChars, { maxLength: 40 }),
  )
  .map(([a, b]) => a + b.join(""));
const badVmId = fc.oneof(
  fc.constantFrom<unknown>(
    "",
    " ",
    "-vm",
    ".vm",
    "_vm",
    "vm id",
    "vm/1",
    "vm%1",
    "vm\n",
    "vm\u00e9",
    "x".repeat(129),
  ),
  fc
    .tuple(validVmId, fc.constantFrom(" ", "/", "%", "#", "\u00e9", "\u0000", "'", '"', "*"))
    .map(([v, c]) => v + c),
  nonString,
);

/** One malformed argument and the field its error must name (a prefix: `publish` covers `publish[0]`). */
interface BadValue {
  value: unknown;
  field?: string;
}
const bad = (field: string | undefined, arb: fc.Arbitrary<unknown>): fc.Arbitrary<BadValue> =>
  arb.map((value) => ({ value, field }));

interface Param {
  good: fc.Arbitrary<unknown>;
  bad?: fc.Arbitrary<BadValue>;
}

interface BadCall {
  args: unknown[];
  field?: string;
}

/** Argument tuples in which exactly one parameter is malformed. */
function oneBad(ps: readonly Param[]): fc.Arbitrary<BadCall> {
  const goods = fc.tuple(...ps.map((p) => p.good));
  const arms = ps.flatMap((p, i) =>
    p.bad
      ? [
          fc.tuple(goods, p.bad).map(([args, b]): BadCall => {
            const a = [...args];
            a[i] = b.value;
            return { args: a, field: b.field };
          }),
        ]
      : [],
  );
  return fc.oneof(...arms);
}

/** An options object with one field malformed. */
function badOption(base: fc.Arbitrary<Record<string, unknown>>, field: string, arb: fc.Arbitrary<unknown>) {
  return fc.tuple(base, arb).map(([b, v]): BadValue => ({ value: { ...b, [field]: v }, field }));
}

/** Keys that must not reach Object.prototype when an options object carries them as its own. */
const pollution = fc.constantFrom<Record<string, unknown>>(
  {},
  {},
  JSON.parse('{"__proto__": {"polluted": 1, "mtu": 70000, "table": "a b"}}'),
  JSON.parse('{"constructor": {"prototype": {"polluted": 1}}}'),
);

// ---------------------------------------------------------------- the table

/** One public function: how to call it, what is malformed, what is valid and how to undo it. */
interface Entry {
  name: string;
  call: (...args: unknown[]) => Promise<unknown>;
  bad?: fc.Arbitrary<BadCall>;
  good?: fc.Arbitrary<unknown[]>;
  /** Undoes a successful call; the snapshot afterwards must equal the one before the call. */
  undo?: (args: unknown[], result: unknown) => Promise<unknown>;
  badRuns?: number;
  goodRuns?: number;
  /** Extra check of a malformed call after it was refused (e.g. no database file made). */
  afterBad?: (args: unknown[]) => void;
}

/** Checks a refusal: an MvnetError (never a plain Error or TypeError), naming the field when known. */
function expectTyped(e: unknown, field: string | undefined, label: string): void {
  if (!(e instanceof MvnetError)) {
    throw new Error(
      `${label}: expected an MvnetError, got ${(e as Error)?.constructor?.name}: ${String(e)}`,
      {
        cause: e,
      },
    );
  }
  expect(typeof e.code).toBe("string");
  if (field !== undefined) {
    if (!(e instanceof ValidationError))
      throw new Error(`${label}: expected a ValidationError, got ${e.name}: ${e.message}`);
    if (!e.field.startsWith(field))
      throw new Error(`${label}: expected field ${field}, got ${e.field}: ${e.message}`);
  }
}

function describeArgs(args: unknown[]): string {
  return args
    .map((a) => {
      // fc.stringify describes BigInts, Symbols and null-prototype objects, which JSON.stringify
      // and String() throw on.
      try {
        return typeof a === "function" ? "<function>" : fc.stringify(a);
      } catch {
        return "<unprintable>";
      }
    })
    .join(", ");
}

function runTable(entries: () => Entry[], snapOptions: () => SnapshotOptions): void {
  for (const entryName of entries().map((e) => e.name)) {
    const entry = () => entries().find((e) => e.name === entryName) as Entry;
    const e0 = entry();
    if (e0.bad) {
      it(
        `${entryName}: malformed input → typed error, state unchanged`,
        async () => {
          const before = kernelSnapshot(snapOptions());
          await fc.assert(
            fc.asyncProperty(entry().bad as fc.Arbitrary<BadCall>, async ({ args, field }) => {
              const label = `${entryName}(${describeArgs(args)})`;
              let result: unknown;
              try {
                result = await entry().call(...args);
              } catch (err) {
                expectTyped(err, field, label);
                expect(kernelSnapshot(snapOptions())).toEqual(before);
                entry().afterBad?.(args);
                expect(Object.prototype).not.toHaveProperty("polluted");
                return;
              }
              // Undo what the accepted call did, so that the failure does not spill into other tests.
              await entry()
                .undo?.(args, result)
                ?.catch(() => undefined);
              throw new Error(`${label} was accepted (returned ${describeArgs([result])})`);
            }),
            params(e0.badRuns ?? BAD_RUNS),
          );
        },
        TEST_TIMEOUT_MS,
      );
    }
    if (e0.good) {
      it(
        `${entryName}: valid input succeeds and its undo restores the state exactly`,
        async () => {
          await fc.assert(
            fc.asyncProperty(entry().good as fc.Arbitrary<unknown[]>, async (args) => {
              const e = entry();
              const before = kernelSnapshot(snapOptions());
              const result = await e.call(...args);
              let undone = false;
              try {
                if (e.undo) await e.undo(args, result);
                undone = true;
                expect(kernelSnapshot(snapOptions())).toEqual(before);
                expect(Object.prototype).not.toHaveProperty("polluted");
              } finally {
                // A failed run must not leave its objects behind for the next inputs (or tests).
                if (!undone && e.undo) await e.undo(args, result).catch(() => undefined);
              }
            }),
            params(e0.goodRuns ?? GOOD_RUNS),
          );
        },
        TEST_TIMEOUT_MS,
      );
    }
  }
}

// ---------------------------------------------------------------- the namespaces

let dir = "";
const stateDir = () => join(dir, "state");

/** Bootstrap options that hold together; `table` and `group` vary too. */
const validTable = fc
  .tuple(
    fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz".split("")),
    fc.stringMatching(/^[A-Za-z0-9_]{0,20}$/),
  )
  .map(([a, b]) => a + b);
const privateSubnet = fc.oneof(
  fc.tuple(fc.integer({ min: 8, max: 30 }), octet, octet).map(([p, b, c]) => `10.${b}.${c}.0/${p}`),
  fc
    .tuple(fc.integer({ min: 12, max: 30 }), fc.integer({ min: 16, max: 31 }))
    .map(([p, b]) => `172.${b}.0.0/${p}`),
  fc.tuple(fc.integer({ min: 16, max: 30 }), octet).map(([p, c]) => `192.168.${c}.0/${p}`),
);
const anyCidr = fc.tuple(anyIPv4, fc.integer({ min: 0, max: 32 })).map(([a, p]) => `${a}/${p}`);
const hostPortSpec = fc.record({ protocol: fc.constantFrom("tcp", "udp"), port: validPort });
const bootstrapOptions = fc
  .record(
    {
      subnet: privateSubnet,
      table: validTable,
      group: fc.integer({ min: 1, max: 0xffffffff }),
      guestToHost: fc.array(hostPortSpec, { maxLength: 3 }),
      allowedDestinations: fc.array(anyCidr, { maxLength: 2 }),
      blockedDestinations: fc.array(anyCidr, { maxLength: 3 }),
      dns: fc.array(anyIPv4, { maxLength: 2 }),
    },
    { requiredKeys: ["subnet"] },
  )
  .map((o) => ({ ...o, stateDir: stateDir() }));

kernelDescribe("property: bootstrap and teardown on a bare namespace", () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "mvnet-prop-"));
  });
  afterAll(async () => {
    await teardown({ stateDir: stateDir() });
    await closeShared();
    rmSync(dir, { recursive: true, force: true });
  });
  const snap = (): SnapshotOptions => ({ stateDir: stateDir() });
  const table = (): Entry[] => [
    {
      name: "bootstrap",
      call: (o) => bootstrap(o as never),
      bad: fc
        .oneof(
          // null is not here: `subnet ?? default` reads it as "not given".
          badOption(
            fc.constant({}),
            "subnet",
            badCidr.filter((v) => v !== null),
          ),
          badOption(
            fc.constant({}),
            "subnet",
            fc
              .tuple(fc.constantFrom("10.0.0.0", "192.168.0.0"), fc.constantFrom(0, 1, 4, 7, 31, 32))
              .map(([a, p]) => `${a}/${p}`),
          ),
          badOption(fc.constant({}), "table", badTable),
          badOption(fc.constant({}), "group", badGroup),
          ...["allowedDestinations", "blockedDestinations", "guestToHost", "dns"].map((f) =>
            badOption(
              fc.constant({}),
              f,
              fc.oneof(
                nonString.filter((v) => !Array.isArray(v) && v !== null),
                fc.constant("10.0.0.0/8"),
              ),
            ),
          ),
          badOption(
            fc.constant({}),
            "stateDir",
            nonString.filter((v) => v !== null),
          ),
          badOption(
            fc.constant({}),
            "guestToHost",
            fc.constantFrom<unknown>([null], [5], [{}], [{ protocol: "tcp" }], [{ port: 53 }]),
          ),
          badOption(
            fc.constant({}),
            "guestToHost",
            fc.tuple(fc.constantFrom("tcp", "udp"), badPort).map(([p, port]) => [{ protocol: p, port }]),
          ),
          badOption(
            fc.constant({}),
            "guestToHost",
            fc.tuple(badProtocol, validPort).map(([protocol, port]) => [{ protocol, port }]),
          ),
          badOption(
            fc.constant({}),
            "allowedDestinations",
            badCidr.map((c) => [c]),
          ),
          badOption(
            fc.constant({}),
            "blockedDestinations",
            badCidr.map((c) => [c]),
          ),
          badOption(
            fc.constant({}),
            "dns",
            badIPv4.map((d) => [d]),
          ),
        )
        .map((b) => ({
          args: [{ stateDir: stateDir(), ...(b.value as object) }],
          // Any ValidationError: bootstrap forwards options.group to the ruleset as "tapGroup", and
          // list entries are named by index ("guestToHost[0].protocol").
          field: "",
        })),
      good: bootstrapOptions.map((o) => [o]),
      undo: (args) => teardown({ stateDir: stateDir(), table: (args[0] as { table?: string }).table }),
    },
    {
      name: "bootstrap twice",
      call: async (o) => {
        await bootstrap(o as never);
        const once = kernelSnapshot(snap());
        await bootstrap(o as never);
        expect(kernelSnapshot(snap())).toEqual(once);
      },
      good: bootstrapOptions.map((o) => [o]),
      undo: (args) => teardown({ stateDir: stateDir(), table: (args[0] as { table?: string }).table }),
    },
    {
      name: "teardown",
      call: (o) => teardown(o as never),
      bad: fc
        .oneof(
          badOption(fc.constant({}), "table", badTable),
          badOption(
            fc.constant({}),
            "stateDir",
            nonString.filter((v) => v !== null),
          ),
        )
        .map((b) => ({
          args: [{ stateDir: stateDir(), ...(b.value as object) }],
          field: b.field,
        })),
      // Nothing set up: teardown is a no-op.
      good: fc
        .record({ table: validTable }, { requiredKeys: [] })
        .map((o) => [{ ...o, stateDir: stateDir() }]),
    },
    {
      // Reading or removing on a host with nothing set up creates nothing (no table, no files).
      name: "read-only and removing calls on a bare host",
      call: async (ip, port) => {
        expect(await listTaps()).toEqual([]);
        expect(await listPortMappings({ table: DEFAULT_TABLE })).toEqual([]);
        expect(
          await removePortMapping("192.0.2.2", port as number, ip as string, 80, "tcp", {
            stateDir: stateDir(),
          }),
        ).toBe(false);
        expect(await getGuestPolicy(ip as string)).toBeUndefined();
        expect(await clearGuestPolicy(ip as string)).toBe(false);
        await doctor({ stateDir: stateDir(), dbPath: join(dir, "none.db") });
      },
      good: fc.tuple(anyIPv4, validPort),
    },
    // BUG: on a host that was never bootstrapped, addPortMapping + removePortMapping (and
    // setGuestPolicy + clearGuestPolicy) leave our table's skeleton (maps and policy sets) behind:
    // the undo does not restore the state. Left out until decided; see the report:
    //   { name: "addPortMapping on a bare host", call: addPortMapping, good: …, undo: removePortMapping }
  ];
  runTable(table, snap);
});

kernelDescribe("property: every other public function on a populated namespace", () => {
  let hn: HostNetwork;
  const db = () => join(dir, "state.db");
  const PRE_TAP = "pre0";
  const PRE_VM = "pre-vm";
  let preVmTap = "";
  /** ifindex of the pre-VM's TAP, which has a MAC binding (unbindTap's "no binding" inputs avoid it). */
  let preVmIndex = 0;
  // The plain mapping and the pre-existing TAP sit outside HostNetwork's subnet (10.200.0.0/16), which
  // it owns: reconcile() would rightly remove an element towards it that no record explains.
  const PRE_GUEST = "10.201.0.2";
  const PRE_PORTS = [18080, 28080];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mvnet-prop-"));
    await bootstrap({ stateDir: stateDir() });
    await createPointToPointTap(PRE_TAP, "10.201.0.1", PRE_GUEST, 0, 0);
    await addPortMapping("eth9", 18080, PRE_GUEST, 80, "tcp", { stateDir: stateDir() });
    // Another tool's table that drops forwarded traffic: what integrateHostFirewall works around.
    sh(
      "nft",
      ["-f", "-"],
      "table inet other { chain block_forward { type filter hook forward priority 0; policy drop; }; }\n",
    );
    hn = await HostNetwork.open({ statePath: db() });
    preVmTap = (await hn.attach(PRE_VM, { publish: ["28080:80", "127.0.0.1::53/udp"], dns: ["192.0.2.53"] }))
      .tap;
    preVmIndex = ipJson<Array<{ ifindex: number }>>("link", "show", "dev", preVmTap)[0]?.ifindex ?? 0;
    expect(preVmIndex).toBeGreaterThan(0);
  });
  afterAll(async () => {
    await hn?.detach(PRE_VM);
    await hn?.close();
    await deleteTap(PRE_TAP);
    await teardown({ stateDir: stateDir() });
    sh("nft", ["delete", "table", "inet", "other"]);
    await closeShared();
    rmSync(dir, { recursive: true, force: true });
  });
  const snap = (): SnapshotOptions => ({ stateDir: stateDir(), db: db(), dbIgnore: ["cursors"] });

  const taken = () => new Set(["lo", PRE_TAP, preVmTap]);
  // "all" and "default" name the sysctl directories /proc/sys/net/*/conf/{all,default}: the kernel
  // refuses them, and validateIfName refuses them first (createTap's bad names below).
  const newTapName = validIfName.filter((n) => !taken().has(n) && n !== "all" && n !== "default");
  const tapOptions = fc
    .tuple(fc.record({ mtu: validMtu, uid: validId, gid: validId }, { requiredKeys: [] }), pollution)
    .map(([o, p]) => ({ ...p, ...o }));
  const hostCidr = fc
    .tuple(unicastIPv4, fc.oneof(fc.integer({ min: 0, max: 30 }), fc.constant(32)))
    .map(([a, p]) => `${a}/${p}`);

  const mappingGood = fc.tuple(
    // "", "0.0.0.0" and 127.x cover 127.0.0.1 (route_localnet record and sysctl, undone by remove).
    fc.oneof(
      fc.constantFrom("", "0.0.0.0", "127.0.0.1"),
      unicastIPv4,
      validIfName.filter((n) => n !== "lo" && !/^[\d.]+$/.test(n)),
    ),
    validPort.filter((p) => !PRE_PORTS.includes(p)),
    anyIPv4,
    validPort,
    protocol,
  );
  const mappingParams: Param[] = [
    {
      good: fc.constantFrom("", "0.0.0.0", "192.0.2.2", "eth0"),
      bad: bad("hostInterface", badHostInterface),
    },
    { good: validPort, bad: bad("hostPort", badPort) },
    { good: anyIPv4, bad: bad("guestIp", badIPv4) },
    { good: validPort, bad: bad("guestPort", badPort) },
    { good: protocol, bad: bad("protocol", badProtocol) },
  ];
  const mappingBad = fc
    .oneof(
      oneBad(mappingParams),
      badTable.map((t) => ({
        args: ["", 8080, "10.200.9.9", 80, "tcp", { table: t, stateDir: stateDir() }],
        field: "table",
      })),
    )
    .map((b) => (b.args.length === 5 ? { ...b, args: [...b.args, { stateDir: stateDir() }] } : b));

  interface Spec {
    guestPort: number;
    hostPort?: number;
    protocol?: string;
    hostIp?: string;
  }
  const specObject: fc.Arbitrary<Spec> = fc.record(
    {
      guestPort: validPort,
      hostPort: fc.integer({ min: 1024, max: 29999 }).filter((p) => !PRE_PORTS.includes(p)),
      protocol: fc.constantFrom("tcp", "udp"),
      hostIp: fc.constantFrom("", "0.0.0.0", "127.0.0.1"),
    },
    { requiredKeys: ["guestPort"] },
  );
  /** `[hostIp:][hostPort:]guestPort[/proto]`, the text form of the same spec. */
  const specText = (s: Spec): string =>
    `${s.hostIp ? `${s.hostIp}:` : ""}${s.hostIp || s.hostPort ? `${s.hostPort ?? ""}:` : ""}${s.guestPort}${s.protocol ? `/${s.protocol}` : ""}`;
  const publishList = fc
    .array(fc.tuple(specObject, fc.boolean()), { maxLength: 3 })
    // Two specs on the same host port and protocol are refused by design ("asked twice", or a bind clash).
    .filter((l) => {
      const ports = l
        .filter(([s]) => s.hostPort !== undefined)
        .map(([s]) => `${s.protocol ?? "tcp"} ${s.hostPort}`);
      return new Set(ports).size === ports.length;
    })
    .map((l) => l.map(([s, text]) => (text ? specText(s) : s)));
  const allowEntryForAttach = fc
    .tuple(unicastIPv4, fc.integer({ min: 8, max: 32 }), fc.option(validPort, { nil: undefined }))
    .map(([a, p, port]) => `${a}/${p}${port === undefined ? "" : `:${port}/tcp`}`);
  const attachOptions = fc
    .tuple(
      fc.record(
        {
          uid: validId,
          gid: validId,
          mtu: validMtu,
          guestIp: fc.tuple(octet, fc.integer({ min: 3, max: 254 })).map(([c, d]) => `10.200.${c}.${d}`),
          dns: fc.array(anyIPv4, { maxLength: 2 }),
          publish: publishList,
          allow: fc.array(allowEntryForAttach, { maxLength: 3 }),
          hostPorts: fc.array(fc.record({ protocol: fc.constantFrom("tcp", "udp"), port: validPort }), {
            maxLength: 2,
          }),
        },
        { requiredKeys: [] },
      ),
      pollution,
    )
    .map(([o, p]) => ({ ...p, ...o }));
  const nonObject = garbage.filter((v) => v === null || (typeof v !== "object" && typeof v !== "function"));
  const attachBadOptions = fc.oneof(
    badOption(fc.constant({}), "mtu", badMtu),
    badOption(fc.constant({}), "mtu", tooBigMtu),
    badOption(fc.constant({}), "uid", badId),
    badOption(fc.constant({}), "gid", badId),
    badOption(
      fc.constant({}),
      "guestIp",
      fc.oneof(
        badIPv4,
        fc.constantFrom("10.200.0.0", "10.200.0.1", "10.200.255.255", "10.201.0.5", "192.0.2.1"),
      ),
    ),
    bad("options", nonObject),
    badOption(fc.constant({}), "allow", fc.constantFrom<unknown>(5, ["10.0.0.0/33"], ["x"], [null])),
    badOption(
      fc.constant({}),
      "hostPorts",
      fc.constantFrom<unknown>(5, [{ protocol: "icmp", port: 1 }], [{ protocol: "tcp", port: 0 }]),
    ),
    badOption(
      fc.constant({}),
      "dns",
      fc.oneof(
        badIPv4.map((d) => [d]),
        fc.array(anyIPv4, { minLength: 3, maxLength: 5 }),
        nonString.filter((v) => !Array.isArray(v) && v !== null),
      ),
    ),
    fc
      .oneof(
        nonString.filter((v) => !Array.isArray(v) && v !== null).map((v) => v),
        fc.constantFrom<unknown[]>(
          ["80/icmp"],
          ["0"],
          ["70000"],
          ["1:2:3:4"],
          ["a:80"],
          ["300.1.1.1:80:80"],
          ["80/tcp/udp"],
          [""],
          [" "],
          ["8000-7000:80"],
          ["8000:80", "8000:81"],
        ),
        fc.constantFrom<unknown[]>(
          [{}],
          [{ guestPort: 0 }],
          [{ guestPort: 80, protocol: "icmp" }],
          [{ guestPort: 80, hostIp: "1.2.3" }],
          [{ guestPort: { start: 90, end: 80 } }],
          [JSON.parse('{"__proto__": {"guestPort": 80}}')],
          [null],
          [42],
        ),
        fc.array(fc.constant("80"), { minLength: 1025, maxLength: 1025 }),
      )
      // Text specs name the part that is wrong ("guestPort", "hostIp", "protocol"), object specs
      // "publish[i]…": any ValidationError field will do.
      .map((v): BadValue => ({ value: { publish: v }, field: "" })),
  );

  // Guest policies (setGuestPolicy), for guests outside everything above.
  const policyGuest = fc.tuple(octet, fc.integer({ min: 1, max: 254 })).map(([c, d]) => `10.250.${c}.${d}`);
  const allowEntry = fc.oneof(
    fc
      .tuple(
        unicastIPv4,
        fc.option(fc.integer({ min: 8, max: 32 }), { nil: undefined }),
        fc.option(fc.tuple(validPort, fc.option(fc.nat(100), { nil: undefined })), { nil: undefined }),
        fc.option(fc.constantFrom("tcp", "udp"), { nil: undefined }),
      )
      .map(
        ([a, p, port, proto]) =>
          `${a}${p === undefined ? "" : `/${p}`}${port === undefined ? "" : `:${port[0]}${port[1] === undefined ? "" : `-${Math.min(65535, port[0] + port[1])}`}`}${proto === undefined ? "" : `/${proto}`}`,
      ),
    fc.record(
      { cidr: unicastIPv4, protocol: fc.constantFrom("tcp", "udp"), port: validPort },
      { requiredKeys: ["cidr"] },
    ),
  );
  const unicastMac = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }).map((b) => {
    b[0] = ((b[0] as number) & 0xfe) | 0x02;
    return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
  });
  const guestPolicy = fc
    .tuple(
      fc.record(
        {
          allow: fc.array(allowEntry, { maxLength: 4 }),
          hostPorts: fc.array(fc.record({ protocol: fc.constantFrom("tcp", "udp"), port: validPort }), {
            maxLength: 3,
          }),
          dns: fc.array(anyIPv4, { maxLength: 2 }),
        },
        { requiredKeys: [] },
      ),
      fc.option(unicastMac, { nil: undefined }),
    )
    .map(([p, mac]) => (mac === undefined ? p : { ...p, mac, tap: PRE_TAP }));
  const badPolicy = fc
    .oneof(
      bad(
        "policy",
        nonObject.filter((v) => v !== undefined),
      ),
      badOption(fc.constant({}), "allow", fc.constantFrom<unknown>(5, "10.0.0.0/8", {})),
      badOption(
        fc.constant({}),
        "allow",
        fc
          .oneof(
            badIPv4String,
            fc.constantFrom<unknown>(
              "10.0.0.0/33",
              "10.0.0.1:0",
              "10.0.0.1:70000",
              "10.0.0.1:90-80",
              "10.0.0.1/icmp",
              null,
              5,
            ),
            fc.constantFrom<unknown>(
              { cidr: "10.1" },
              { cidr: "10.0.0.1", port: 0 },
              { cidr: "10.0.0.1", protocol: "icmp" },
            ),
          )
          .map((e) => [e]),
      ),
      badOption(
        fc.constant({}),
        "hostPorts",
        fc.constantFrom<unknown>(5, [null], [{ protocol: "icmp", port: 5 }], [{ protocol: "tcp", port: 0 }]),
      ),
      badOption(
        fc.constant({}),
        "dns",
        fc.oneof(
          badIPv4.map((d) => [d]),
          fc.constantFrom<unknown>(5, "1.1.1.1"),
        ),
      ),
      badOption(
        fc.constant({ tap: PRE_TAP }),
        "mac",
        fc.constantFrom<unknown>(
          "01:00:00:00:00:01",
          "00:00:00:00:00:00",
          "zz:00:00:00:00:01",
          "02:00:00:00:01",
          5,
        ),
      ),
      badOption(
        fc.constant({ mac: "02:00:00:00:00:01" }),
        "tap",
        fc.constantFrom<unknown>("no-such-tap", "a b", 5),
      ),
      fc.constant<BadValue>({ value: { mac: "02:00:00:00:00:01" }, field: "tap" }),
    )
    .map((b) => ({ ...b, field: b.field === "policy" ? "policy" : "" }));

  const table = (): Entry[] => [
    {
      name: "createTap",
      call: (...a) => createTap(...(a as Parameters<typeof createTap>)),
      bad: oneBad([
        { good: newTapName, bad: bad("name", fc.oneof(badIfName, fc.constantFrom("all", "default"))) },
        {
          good: hostCidr,
          bad: bad(
            "cidr",
            fc.oneof(
              badCidr,
              nonUnicastIPv4.map((a) => `${a}/24`),
              unicastIPv4.map((a) => `${a}/31`),
            ),
          ),
        },
        {
          good: tapOptions,
          bad: fc.oneof(
            badOption(tapOptions, "mtu", badMtu),
            badOption(tapOptions, "mtu", tooBigMtu),
            badOption(tapOptions, "uid", badId),
            badOption(tapOptions, "gid", badId),
            badOption(tapOptions, "group", badGroup),
          ),
        },
      ]),
      good: fc.tuple(newTapName, hostCidr, tapOptions),
      undo: (a) => deleteTap(a[0] as string),
    },
    {
      name: "createPointToPointTap",
      call: (...a) => createPointToPointTap(...(a as Parameters<typeof createPointToPointTap>)),
      bad: oneBad([
        { good: newTapName, bad: bad("name", badIfName) },
        { good: fc.constant("10.202.0.1"), bad: bad("hostIp", fc.oneof(badIPv4, nonUnicastIPv4)) },
        {
          good: fc.constant("10.202.0.2"),
          bad: bad("guestIp", fc.oneof(badIPv4, nonUnicastIPv4, fc.constant("10.202.0.1"))),
        },
        { good: validId, bad: bad("uid", badId) },
        { good: validId, bad: bad("gid", badId) },
        {
          good: tapOptions,
          bad: fc.oneof(badOption(tapOptions, "mtu", badMtu), badOption(tapOptions, "mtu", tooBigMtu)),
        },
      ]),
      good: fc
        .tuple(newTapName, unicastIPv4, unicastIPv4, validId, validId, tapOptions)
        .filter(([, h, g]) => h !== g),
      undo: (a) => deleteTap(a[0] as string),
    },
    {
      name: "deleteTap",
      call: (...a) => deleteTap(...(a as Parameters<typeof deleteTap>)),
      bad: fc.oneof(
        bad("name", badIfName).map((b) => ({ args: [b.value], field: b.field })),
        // A device we did not make is refused (NotOursError) and left alone.
        fc.constant<BadCall>({ args: ["lo"], field: undefined }),
      ),
      // A name that does not exist: success, nothing changes.
      good: newTapName.map((n) => [n]),
    },
    {
      name: "addPortMapping",
      call: (...a) => addPortMapping(...(a as Parameters<typeof addPortMapping>)),
      bad: mappingBad,
      good: mappingGood.map((a) => [...a, { stateDir: stateDir() }]),
      undo: async (a) => {
        const removed = await removePortMapping(...(a as Parameters<typeof removePortMapping>));
        expect(removed).toBe(true);
      },
    },
    {
      name: "removePortMapping",
      call: (...a) => removePortMapping(...(a as Parameters<typeof removePortMapping>)),
      bad: mappingBad,
      // Nothing of that mapping is there: false, nothing changes.
      good: mappingGood.map((a) => [...a, { stateDir: stateDir() }]),
    },
    {
      name: "listTaps / listPortMappings",
      call: async (o) => {
        const taps = await listTaps(o as never);
        expect(taps.map((t) => t.name).sort()).toEqual([PRE_TAP, preVmTap].sort());
        const maps = await listPortMappings(o as never);
        expect(maps.map((m) => m.hostPort).sort()).toEqual([18080, 28080, 30000]);
        return maps;
      },
      bad: badOption(fc.constant({}), "table", badTable).map((b) => ({ args: [b.value], field: b.field })),
      good: fc
        .tuple(fc.record({ table: fc.constant(DEFAULT_TABLE) }, { requiredKeys: [] }), pollution)
        .map(([o, p]) => [{ ...p, ...o }]),
    },
    {
      name: "HostNetwork.open",
      call: async (o) => {
        const h = await HostNetwork.open(o as never);
        await h.close();
      },
      bad: fc
        .oneof(
          badOption(
            fc.constant({}),
            "subnet",
            fc.oneof(badCidr, fc.constantFrom("10.0.0.0/7", "10.0.0.0/31", "10.0.0.0/32", "0.0.0.0/0")),
          ),
          badOption(fc.constant({}), "group", badGroup),
          badOption(fc.constant({}), "batchGroup", badGroup),
          badOption(fc.constant({}), "batchGroup", fc.constant(0x6d76)), // the TAP group itself
          badOption(
            fc.constant({}),
            "portRange",
            fc.constantFrom<unknown>(
              { start: 0, end: 10 },
              { start: 10, end: 5 },
              { start: 1, end: 65536 },
              { start: 1.5, end: 2 },
              { start: "1", end: 2 },
            ),
          ),
          badOption(fc.constant({}), "statePath", fc.oneof(nonString, fc.constant(""))),
        )
        .map((b) => ({
          args: [{ statePath: join(dir, "never.db"), ...(b.value as object) }],
          field: b.field,
        })),
      afterBad: () => expect(existsSync(join(dir, "never.db"))).toBe(false),
      good: fc.constant([{ statePath: join(dir, "state.db"), holdPorts: false }]),
    },
    {
      name: "HostNetwork.attach → detach",
      call: (id, o) => hn.attach(id as string, o as never),
      bad: oneBad([
        { good: validVmId.filter((v) => v !== PRE_VM), bad: bad("vmId", badVmId) },
        { good: fc.constant({}), bad: attachBadOptions },
      ]),
      good: fc.tuple(
        validVmId.filter((v) => v !== PRE_VM),
        attachOptions,
      ),
      undo: async (a) => expect(await hn.detach(a[0] as string)).toBe(true),
    },
    {
      name: "HostNetwork.attach → gc",
      call: (id, o) => hn.attach(id as string, o as never),
      good: fc.tuple(
        validVmId.filter((v) => v !== PRE_VM),
        attachOptions,
      ),
      undo: async (a) => expect(await hn.gc([PRE_VM])).toEqual([a[0]]),
    },
    {
      name: "HostNetwork.detach",
      call: (id) => hn.detach(id as string),
      bad: bad("vmId", badVmId).map((b) => ({ args: [b.value], field: b.field })),
      good: validVmId.filter((v) => v !== PRE_VM).map((v) => [v]),
    },
    {
      name: "HostNetwork.detachMany",
      call: (ids) => hn.detachMany(ids as string[]),
      bad: fc.oneof(
        fc
          .tuple(fc.array(validVmId, { maxLength: 3 }), badVmId)
          .map(([ids, b]) => ({ args: [[...ids, b]], field: "vmId" })),
        fc
          .oneof(
            nonString.filter((v) => !Array.isArray(v)),
            fc.constantFrom("abc", ""),
          )
          .map((v) => ({ args: [v], field: "vmIds" })),
      ),
      good: fc
        .array(
          validVmId.filter((v) => v !== PRE_VM),
          { maxLength: 5 },
        )
        .map((ids) => [ids]),
    },
    {
      name: "HostNetwork.gc",
      call: (live) => hn.gc(live as string[]),
      bad: fc.oneof(
        fc
          .tuple(fc.array(validVmId, { maxLength: 3 }), badVmId)
          .map(([ids, b]) => ({ args: [[PRE_VM, ...ids, b]], field: "vmId" })),
        nonString.filter((v) => !Array.isArray(v)).map((v) => ({ args: [v], field: "liveVmIds" })),
      ),
      // PRE_VM is live: nothing to drop.
      good: fc.array(validVmId, { maxLength: 4 }).map((ids) => [[PRE_VM, ...ids]]),
    },
    {
      name: "setGuestPolicy → clearGuestPolicy",
      call: (...a) => setGuestPolicy(...(a as Parameters<typeof setGuestPolicy>)),
      bad: oneBad([
        { good: policyGuest, bad: bad("guestIp", badIPv4) },
        { good: guestPolicy, bad: badPolicy },
      ]),
      // A MAC binding names the TAP that routes the guest (resolveBinding checks it): pre0's guest.
      good: fc
        .tuple(policyGuest, guestPolicy)
        .map(([ip, p]) => [(p as { tap?: string }).tap === PRE_TAP ? PRE_GUEST : ip, p]),
      undo: async (a) => {
        await clearGuestPolicy(a[0] as string);
        expect(await getGuestPolicy(a[0] as string)).toBeUndefined();
      },
    },
    {
      name: "clearGuestPolicy / getGuestPolicy",
      call: async (ip) => {
        expect(await getGuestPolicy(ip as string)).toBeUndefined();
        return clearGuestPolicy(ip as string);
      },
      bad: bad("guestIp", badIPv4).map((b) => ({ args: [b.value], field: b.field })),
      good: policyGuest.map((ip) => [ip]), // no policy there: nothing to clear
    },
    {
      name: "unbindTap",
      call: (t) => unbindTap(t as string | number),
      bad: fc.oneof(
        bad("tap", badIfNameString).map((b) => ({ args: [b.value], field: b.field })),
        bad("tap", fc.constantFrom<unknown>(0, -1, 1.5, NaN, 2 ** 31, null, true, {})).map((b) => ({
          args: [b.value],
          field: b.field,
        })),
      ),
      // No binding anywhere for these: 0 removed, nothing changes.
      good: fc
        .oneof(
          newTapName,
          fc.constant(PRE_TAP),
          fc.integer({ min: 1, max: 0x7fffffff }).filter((i) => i !== preVmIndex),
        )
        .map((t) => [t]),
    },
    {
      name: "doctor",
      call: (o) => doctor(o as never),
      bad: fc
        .oneof(
          badOption(fc.constant({}), "table", badTable),
          badOption(fc.constant({}), "tapGroup", badGroup),
        )
        .map((b) => ({ args: [{ ...(b.value as object), stateDir: stateDir(), dbPath: db() }], field: "" })),
      // Read-only: the report, and nothing changed.
      good: fc
        .constantFrom<unknown[]>([{}], [{ table: DEFAULT_TABLE }])
        .map(([o]) => [{ ...(o as object), stateDir: stateDir(), dbPath: db() }]),
    },
    {
      name: "integrateHostFirewall → removeHostFirewallIntegration",
      call: async (o) => {
        const r = await integrateHostFirewall(o as never);
        // The foreign forward chain of `inet other` is the one block here, and it gets integrated.
        expect(r.inserted.length).toBe(1);
        expect(r.remaining).toEqual([]);
        return r;
      },
      bad: fc
        .oneof(badOption(fc.constant({}), "table", badTable), badOption(fc.constant({}), "group", badGroup))
        .map((b) => ({ args: [{ ...(b.value as object), stateDir: stateDir() }], field: b.field })),
      good: fc
        .record({ group: fc.integer({ min: 1, max: 0xffffffff }) }, { requiredKeys: [] })
        .map((o) => [{ ...o, stateDir: stateDir() }]),
      undo: () => removeHostFirewallIntegration({ stateDir: stateDir() }),
    },
    {
      name: "removeHostFirewallIntegration",
      call: (o) => removeHostFirewallIntegration(o as never),
      // Nothing recorded: a no-op.
      good: fc.constant([{ stateDir: stateDir() }]),
    },
    {
      name: "HostNetwork.reconcile",
      call: () => hn.reconcile(),
      // The namespace matches the records: nothing to do, nothing changes.
      good: fc.constant([]),
    },
  ];
  runTable(table, snap);
});
