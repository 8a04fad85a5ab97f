// Property-based test of every `mvnet` subcommand (issue #5, "Done when"), run as a user runs it: a
// separate process per invocation. Malformed arguments exit 2 (usage) with a one-line message on
// stderr that names the problem, no stack trace, and leave the namespace exactly as it was
// (test/helpers/snapshot.ts); valid arguments exit 0, and the undo command brings the namespace back.
//
// One table entry per command. A process costs ~0.3 s on an idle machine and 1–3 s on a loaded one,
// so the run counts are small; scale them with MVNET_FC_RUNS, reproduce with MVNET_FC_SEED:
//   MVNET_FC_SEED=<seed> MVNET_FC_RUNS=4 node scripts/test.mjs property-cli
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import { anyIPv4, octet, unicastIPv4 } from "../helpers/arbitraries.js";
import { kernelDescribe } from "../helpers/kernel.js";
import { kernelSnapshot, type SnapshotOptions } from "../helpers/snapshot.js";

const SCALE = Number(process.env.MVNET_FC_RUNS ?? 1);
const SEED = process.env.MVNET_FC_SEED === undefined ? undefined : Number(process.env.MVNET_FC_SEED);
const BAD_RUNS = 5;
const GOOD_RUNS = 3;
/** A property stops drawing new inputs after this long (a loaded machine), and passes on what it ran. */
const TIME_LIMIT_MS = 15_000;
const TEST_TIMEOUT_MS = 120_000;
const params = (numRuns: number): fc.Parameters<unknown> => ({
  numRuns: Math.max(1, Math.round(numRuns * SCALE)),
  interruptAfterTimeLimit: TIME_LIMIT_MS * SCALE,
  ...(SEED === undefined ? {} : { seed: SEED }),
});

const root = new URL("../..", import.meta.url).pathname;
let dir = "";
const stateDir = () => join(dir, "state");
const db = () => join(dir, "state.db");

interface Run {
  code: number | null;
  out: string;
  err: string;
}

/** `mvnet <args>` with this test's state directory and database (never /run or /var/lib). */
function mvnet(args: readonly string[]): Run {
  const r = spawnSync(
    process.execPath,
    [
      "--import",
      "tsx",
      join(root, "src", "cli", "main.ts"),
      "--state-dir",
      stateDir(),
      "--db",
      db(),
      ...args,
    ],
    { encoding: "utf8", cwd: root, env: { ...process.env, MVNET_DEBUG: "" } },
  );
  return { code: r.status, out: r.stdout, err: r.stderr };
}

// ---------------------------------------------------------------- arbitraries (argument text)

const IFNAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-".split("");
const ifChar = fc.constantFrom(...IFNAME_CHARS);
// A leading "-" would be read as an option: CLI names start with a letter or digit.
const validIfName = fc
  .tuple(
    fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789".split("")),
    fc.array(ifChar, { maxLength: 14 }),
  )
  .map(([a, b]) => a + b.join(""))
  .filter((n) => !["lo", "all", "default"].includes(n));
const badIfName = fc.oneof(
  fc.constantFrom("", ".", "..", "a b", "a/b", "a%d", "eth0:1", "tap\t0", "é", "tap-名"),
  fc.array(ifChar, { minLength: 16, maxLength: 30 }).map((cs) => `x${cs.join("")}`),
  fc
    .tuple(fc.array(ifChar, { maxLength: 5 }), fc.constantFrom(" ", "/", "%", ":", ";", "*", "é", "'"))
    .map(([a, c]) => `t${a.join("")}${c}`),
);
const badIPv4 = fc.oneof(
  fc.constantFrom("10.1", "1.2.3.4.5", "256.0.0.1", "010.0.0.1", "a.b.c.d", "::1", "10.0.0.1/24", "10..0.1"),
  fc.tuple(fc.integer({ min: 256, max: 999 }), octet).map(([a, b]) => `${b}.${a}.0.1`),
);
const badCidr = fc.oneof(
  fc.constantFrom("10.0.0.1", "10.0.0.1/", "10.0.0.1/33", "10.0.0.1/100", "10.0.0/24", "::1/128", "x/8"),
  fc.tuple(badIPv4, fc.integer({ min: 0, max: 32 })).map(([a, p]) => `${a}/${p}`),
);
const badPortText = fc.constantFrom("0", "65536", "99999", "1.5", "abc", "0x50", "8o", "-");
const badIdText = fc.constantFrom("4294967295", "4294967296", "99999999999", "1.5", "abc", "0x1");
const badMtuText = fc.constantFrom("0", "67", "65536", "1.5", "abc", "-");
const badTable = fc.constantFrom("1abc", "a b", "a-b", "t;flush", "a".repeat(65), "tabl\u00e9");
const validPort = fc.integer({ min: 1, max: 65535 });
const validMtu = fc.integer({ min: 68, max: 65521 }); // a TAP's max_mtu (drivers/net/tun.c)
const validId = fc.integer({ min: 0, max: 0xfffffffe });
const vmIdChars = fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789_.:@-".split(""));
const validVmId = fc
  .tuple(
    fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789".split("")),
    fc.array(vmIdChars, { maxLength: 30 }),
  )
  .map(([a, b]) => a + b.join(""));
const badVmId = fc.oneof(
  fc.constantFrom("vm id", "vm/1", "vm%1", ".vm", "_vm", "vm\u00e9", "x".repeat(129), "vm#1"),
  fc.tuple(validVmId, fc.constantFrom(" ", "/", "%", "#", "*", "'")).map(([v, c]) => v + c),
);

/** Malformed argv and a pattern its message must match (it names the problem). */
interface BadArgs {
  argv: string[];
  names: RegExp;
}
const badArgs = (arb: fc.Arbitrary<string[]>, names: RegExp): fc.Arbitrary<BadArgs> =>
  arb.map((argv) => ({ argv, names }));

interface Entry {
  name: string;
  bad?: fc.Arbitrary<BadArgs>;
  good?: fc.Arbitrary<string[]>;
  /** Exit codes that count as success (default 0): doctor exits 1 when it finds a failure. */
  okCodes?: readonly number[];
  /** The command that undoes a successful `good` run. */
  undo?: (argv: string[], r: Run) => string[];
}

function show(argv: readonly string[]): string {
  return `mvnet ${argv.map((a) => JSON.stringify(a)).join(" ")}`;
}

/**
 * The usage error contract: exit 2, the problem named on stderr's first line, no stack trace, and
 * nothing else on stderr.
 */
function expectUsageError(r: Run, argv: readonly string[], names: RegExp): void {
  const label = show(argv);
  const err = r.err.trimEnd();
  if (r.code !== 2) throw new Error(`${label}: exit ${r.code}, expected 2; stderr: ${err}`);
  if (/^\s+at /m.test(err)) throw new Error(`${label}: stack trace on stderr:\n${err}`);
  const lines = err.split("\n");
  if (lines.length !== 1) {
    throw new Error(`${label}: expected one line on stderr, got ${lines.length}:\n${err}`);
  }
  if (!names.test(lines[0] ?? ""))
    throw new Error(`${label}: message does not name the problem (${names}): ${lines[0]}`);
}

function runTable(entries: Entry[], snap: () => SnapshotOptions): void {
  for (const e of entries) {
    if (e.bad) {
      const arb = e.bad;
      it(
        `mvnet ${e.name}: malformed arguments → exit 2, one line naming the problem, state unchanged`,
        async () => {
          const before = kernelSnapshot(snap());
          await fc.assert(
            fc.asyncProperty(arb, async ({ argv, names }) => {
              expectUsageError(mvnet(argv), argv, names);
              expect(kernelSnapshot(snap())).toEqual(before);
            }),
            params(BAD_RUNS),
          );
        },
        TEST_TIMEOUT_MS,
      );
    }
    if (e.good) {
      const arb = e.good;
      it(
        `mvnet ${e.name}: valid arguments → exit 0, and the undo restores the state exactly`,
        async () => {
          await fc.assert(
            fc.asyncProperty(arb, async (argv) => {
              const before = kernelSnapshot(snap());
              const r = mvnet(argv);
              const ok = (e.okCodes ?? [0]).includes(r.code ?? -1);
              const undo = e.undo && ok ? e.undo(argv, r) : undefined;
              try {
                if (!ok) throw new Error(`${show(argv)}: exit ${r.code}: ${r.err}`);
                if (undo) {
                  const u = mvnet(undo);
                  if (u.code !== 0) throw new Error(`${show(undo)}: exit ${u.code}: ${u.err}`);
                }
                expect(kernelSnapshot(snap())).toEqual(before);
              } catch (err) {
                if (undo) mvnet(undo); // leave nothing behind for the next inputs
                throw err;
              }
            }),
            params(GOOD_RUNS),
          );
        },
        TEST_TIMEOUT_MS,
      );
    }
  }
}

const privateSubnet = fc.oneof(
  fc.tuple(fc.integer({ min: 8, max: 30 }), octet).map(([p, b]) => `10.${b}.0.0/${p}`),
  fc.tuple(fc.integer({ min: 16, max: 30 }), octet).map(([p, c]) => `192.168.${c}.0/${p}`),
);
const tableName = fc.stringMatching(/^[a-z][a-z0-9_]{0,12}$/);

kernelDescribe("property: mvnet bootstrap / teardown on a bare namespace", () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "mvnet-propcli-"));
  });
  afterAll(() => {
    mvnet(["teardown"]);
    rmSync(dir, { recursive: true, force: true });
  });
  const snap = (): SnapshotOptions => ({ stateDir: stateDir() });
  runTable(
    [
      {
        name: "bootstrap",
        bad: fc.oneof(
          badArgs(
            badCidr.map((c) => ["bootstrap", "--subnet", c]),
            /subnet/,
          ),
          badArgs(
            fc
              .constantFrom("10.0.0.0/7", "10.0.0.0/31", "0.0.0.0/0")
              .map((c) => ["bootstrap", "--subnet", c]),
            /subnet/,
          ),
          badArgs(
            fc
              .oneof(
                badPortText.map((p) => `tcp:${p}`),
                fc.constantFrom("icmp:53", "udp", "tcp:", ":53", "53"),
              )
              .map((a) => ["bootstrap", "--allow-host", a]),
            /allow-host/,
          ),
          badArgs(
            badCidr.map((c) => ["bootstrap", "--allow-dest", c]),
            /allowedDestinations|allow-dest/,
          ),
          badArgs(
            badTable.map((t) => ["--table", t, "bootstrap"]),
            /table/,
          ),
          badArgs(
            badIPv4.map((d) => ["bootstrap", "--dns", d]),
            /dns/,
          ),
        ),
        good: fc
          .tuple(
            privateSubnet,
            fc.option(tableName, { nil: undefined }),
            fc.array(fc.tuple(fc.constantFrom("tcp", "udp"), validPort), { maxLength: 2 }),
            fc.array(anyIPv4, { maxLength: 2 }),
            fc.boolean(),
          )
          .map(([s, t, allow, dns, integrate]) => [
            ...(t ? ["--table", t] : []),
            "bootstrap",
            "--subnet",
            s,
            ...allow.flatMap(([p, n]) => ["--allow-host", `${p}:${n}`]),
            ...dns.flatMap((d) => ["--dns", d]),
            // teardown removes what --integrate inserted (nothing here: no other firewall).
            ...(integrate ? ["--integrate"] : []),
          ]),
        undo: (argv) => (argv[0] === "--table" ? ["--table", argv[1] as string, "teardown"] : ["teardown"]),
      },
      {
        name: "teardown",
        bad: badArgs(
          badTable.map((t) => ["--table", t, "teardown"]),
          /table/,
        ),
        // Nothing set up: a no-op.
        good: fc.constant(["teardown"]),
      },
    ],
    snap,
  );
});

kernelDescribe("property: every other mvnet command on a populated namespace", () => {
  const PRE_TAP = "pre0";
  const PRE_VM = "pre-vm";
  const PRE_PORTS = [18080, 28080];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "mvnet-propcli-"));
    for (const argv of [
      ["bootstrap"],
      ["tap", "create", PRE_TAP, "--host-ip", "10.201.0.1", "--guest-ip", "10.201.0.2"],
      ["port", "add", "18080", "10.201.0.2", "80", "--host", "eth9"],
      ["attach", PRE_VM, "--publish", "28080:80", "--dns", "192.0.2.53"],
    ]) {
      const r = mvnet(argv);
      if (r.code !== 0) throw new Error(`${show(argv)}: ${r.err}`);
    }
  });
  afterAll(() => {
    mvnet(["detach", PRE_VM]);
    mvnet(["tap", "delete", PRE_TAP]);
    mvnet(["teardown"]);
    rmSync(dir, { recursive: true, force: true });
  });
  const snap = (): SnapshotOptions => ({ stateDir: stateDir(), db: db(), dbIgnore: ["cursors"] });
  const newTap = validIfName.filter((n) => n !== PRE_TAP && !n.startsWith("prevm"));
  const hostPort = validPort.filter((p) => !PRE_PORTS.includes(p));
  // "0.0.0.0" and 127.x cover 127.0.0.1 (route_localnet record and sysctl, undone by `port rm`).
  const hostSide = fc.oneof(
    fc.constantFrom("0.0.0.0", "127.0.0.1"),
    unicastIPv4,
    validIfName.filter((n) => !/^[\d.]+$/.test(n)),
  );
  const mapping = fc.tuple(hostSide, hostPort, anyIPv4, validPort, fc.constantFrom("tcp", "udp"));
  const mappingArgv = (cmd: string, [h, hp, g, gp, p]: [string, number, string, number, string]) => [
    "port",
    cmd,
    String(hp),
    g,
    String(gp),
    "--proto",
    p,
    "--host",
    h,
  ];
  const badMapping = (cmd: string) =>
    fc.oneof(
      badArgs(
        badPortText.map((p) => ["port", cmd, p, "10.200.0.9", "80"]),
        /hostPort|port/,
      ),
      badArgs(
        badIPv4.map((g) => ["port", cmd, "8080", g, "80"]),
        /guestIp/,
      ),
      badArgs(
        badPortText.map((p) => ["port", cmd, "8080", "10.200.0.9", p]),
        /guestPort|port/,
      ),
      badArgs(
        fc
          .constantFrom("icmp", "TCP6", "", "sctp")
          .map((p) => ["port", cmd, "8080", "10.200.0.9", "80", "--proto", p]),
        /proto/,
      ),
      badArgs(
        fc
          .oneof(
            fc.constantFrom("lo", "192.168.1.300", "10.1"),
            badIfName.filter((s) => s !== ""),
          )
          .map((h) => ["port", cmd, "8080", "10.200.0.9", "80", "--host", h]),
        /hostInterface/,
      ),
      badArgs(fc.constant(["port", cmd, "8080", "10.200.0.9"]), /missing|guestPort/),
    );

  const publish = fc
    .array(
      fc.tuple(
        fc.option(
          fc.integer({ min: 1024, max: 29999 }).filter((p) => !PRE_PORTS.includes(p)),
          { nil: undefined },
        ),
        validPort,
        fc.constantFrom("", "/udp", "/tcp"),
      ),
      { maxLength: 2 },
    )
    .filter((l) => {
      const keys = l.filter(([h]) => h !== undefined).map(([h, , p]) => `${h}${p === "/udp" ? "u" : "t"}`);
      return new Set(keys).size === keys.length;
    })
    .map((l) => l.flatMap(([h, g, p]) => ["--publish", `${h === undefined ? "" : `${h}:`}${g}${p}`]));
  const attachOpts = fc
    .tuple(
      publish,
      fc.option(validMtu, { nil: undefined }),
      fc.option(validId, { nil: undefined }),
      fc.array(anyIPv4, { maxLength: 2 }),
      fc.array(
        fc
          .tuple(unicastIPv4, fc.integer({ min: 8, max: 32 }), fc.option(validPort, { nil: undefined }))
          .map(([a, n, port]) => `${a}/${n}${port === undefined ? "" : `:${port}/tcp`}`),
        { maxLength: 2 },
      ),
      fc.array(fc.tuple(fc.constantFrom("tcp", "udp"), validPort), { maxLength: 2 }),
    )
    .map(([p, mtu, uid, dns, allow, hostPorts]) => [
      ...p,
      ...(mtu === undefined ? [] : ["--mtu", String(mtu)]),
      ...(uid === undefined ? [] : ["--uid", String(uid), "--gid", String(uid)]),
      ...dns.flatMap((d) => ["--dns", d]),
      ...allow.flatMap((a) => ["--allow", a]),
      ...hostPorts.flatMap(([proto, n]) => ["--host-port", `${proto}:${n}`]),
    ]);

  runTable(
    [
      {
        name: "tap create",
        bad: fc.oneof(
          badArgs(
            badIfName.map((n) => ["tap", "create", n, "--cidr", "10.9.0.1/24"]),
            /name/,
          ),
          badArgs(
            badCidr.map((c) => ["tap", "create", "t0", "--cidr", c]),
            /cidr/,
          ),
          badArgs(
            fc
              .constantFrom("0.0.0.0/24", "127.0.0.1/8", "224.0.0.1/4", "10.0.0.1/31")
              .map((c) => ["tap", "create", "t0", "--cidr", c]),
            /cidr/,
          ),
          badArgs(
            badIPv4.map((g) => ["tap", "create", "t0", "--guest-ip", g]),
            /guestIp/,
          ),
          badArgs(
            badIPv4.map((h) => ["tap", "create", "t0", "--guest-ip", "10.9.0.2", "--host-ip", h]),
            /hostIp/,
          ),
          badArgs(
            badIdText.map((u) => ["tap", "create", "t0", "--guest-ip", "10.9.0.2", "--uid", u]),
            /uid/,
          ),
          badArgs(
            badMtuText.map((m) => ["tap", "create", "t0", "--cidr", "10.9.0.1/24", "--mtu", m]),
            /mtu/,
          ),
          badArgs(fc.constant(["tap", "create", "t0"]), /--cidr|--guest-ip/),
          badArgs(
            fc.constant(["tap", "create", "t0", "--cidr", "10.9.0.1/24", "--guest-ip", "10.9.0.2"]),
            /--cidr|--guest-ip|options/,
          ),
        ),
        good: fc.oneof(
          fc
            .tuple(
              newTap,
              unicastIPv4,
              fc.integer({ min: 1, max: 30 }),
              fc.option(validMtu, { nil: undefined }),
            )
            .map(([n, a, p, m]) => [
              "tap",
              "create",
              n,
              "--cidr",
              `${a}/${p}`,
              ...(m ? ["--mtu", String(m)] : []),
            ]),
          fc
            .tuple(newTap, unicastIPv4, unicastIPv4, validId)
            .filter(([, h, g]) => h !== g)
            .map(([n, h, g, u]) => ["tap", "create", n, "--host-ip", h, "--guest-ip", g, "--uid", String(u)]),
        ),
        undo: (argv) => ["tap", "delete", argv[2] as string],
      },
      {
        name: "tap delete",
        bad: badArgs(
          badIfName.map((n) => ["tap", "delete", n]),
          /name/,
        ),
        good: newTap.map((n) => ["tap", "delete", n]), // absent: success, nothing changes
      },
      {
        name: "tap ls",
        bad: badArgs(fc.constant(["tap", "ls", "extra"]), /too many arguments/),
        good: fc.constant(["tap", "ls"]),
      },
      {
        name: "port add",
        bad: badMapping("add"),
        good: mapping.map((m) => mappingArgv("add", m)),
        undo: (argv) => ["port", "rm", ...argv.slice(2)],
      },
      { name: "port rm", bad: badMapping("rm"), good: mapping.map((m) => mappingArgv("rm", m)) },
      { name: "port ls", good: fc.constantFrom(["port", "ls"], ["--json", "port", "ls"]) },
      { name: "status", good: fc.constantFrom(["status"], ["--json", "status"]) },
      {
        name: "attach",
        bad: fc.oneof(
          badArgs(
            badVmId.map((v) => ["attach", v]),
            /vmId/,
          ),
          badArgs(
            fc
              .constantFrom(
                "80/icmp",
                "0",
                "70000",
                "1:2:3:4",
                "a:80",
                "300.1.1.1:80:80",
                "80/tcp/udp",
                "8000-7000:80",
              )
              .map((p) => ["attach", "vm-x", "--publish", p]),
            /publish|port|protocol|hostIp|Port/,
          ),
          badArgs(
            badIdText.map((u) => ["attach", "vm-x", "--uid", u]),
            /uid/,
          ),
          badArgs(
            badMtuText.map((m) => ["attach", "vm-x", "--mtu", m]),
            /mtu/,
          ),
          badArgs(
            badIPv4.map((g) => ["attach", "vm-x", "--guest-ip", g]),
            /guestIp/,
          ),
          badArgs(
            badIPv4.map((d) => ["attach", "vm-x", "--dns", d]),
            /dns/,
          ),
          badArgs(
            fc.constant(["attach", "vm-x", "--dns", "1.1.1.1", "--dns", "1.0.0.1", "--dns", "8.8.8.8"]),
            /dns/,
          ),
          badArgs(
            fc
              .constantFrom("10.0.0.0/33", "10.0.0.1:0", "10.0.0.1/icmp", "x")
              .map((a) => ["attach", "vm-x", "--allow", a]),
            /allow/,
          ),
          badArgs(
            fc.constantFrom("icmp:1", "tcp:0", "tcp", "22").map((h) => ["attach", "vm-x", "--host-port", h]),
            /host-port/,
          ),
        ),
        good: fc
          .tuple(
            validVmId.filter((v) => v !== PRE_VM),
            attachOpts,
          )
          .map(([v, o]) => ["attach", v, ...o]),
        undo: (argv) => ["detach", argv[1] as string],
      },
      {
        name: "detach",
        bad: badArgs(
          badVmId.map((v) => ["detach", v]),
          /vmId/,
        ),
        good: fc
          .array(
            validVmId.filter((v) => v !== PRE_VM),
            { minLength: 1, maxLength: 3 },
          )
          .map((v) => ["detach", ...v]),
      },
      {
        name: "ls",
        bad: badArgs(fc.constant(["ls", "extra"]), /too many arguments/),
        good: fc.constantFrom(["ls"], ["--json", "ls"]),
      },
      { name: "reconcile", good: fc.constantFrom(["reconcile"], ["--json", "reconcile"]) },
      {
        name: "policy set",
        bad: fc.oneof(
          badArgs(
            badIPv4.map((g) => ["policy", "set", g, "--allow", "10.0.0.0/8"]),
            /guestIp/,
          ),
          badArgs(
            fc
              .constantFrom(
                "10.0.0.0/33",
                "10.0.0.1:0",
                "10.0.0.1:70000",
                "10.0.0.1:90-80",
                "10.0.0.1/icmp",
                "x",
              )
              .map((a) => ["policy", "set", "10.250.0.9", "--allow", a]),
            /allow/,
          ),
          badArgs(
            fc
              .constantFrom("icmp:1", "tcp:0", "tcp", "22")
              .map((h) => ["policy", "set", "10.250.0.9", "--host-port", h]),
            /host-port/,
          ),
          badArgs(
            badIPv4.map((d) => ["policy", "set", "10.250.0.9", "--dns", d]),
            /dns/,
          ),
          badArgs(
            fc
              .constantFrom("01:00:00:00:00:01", "00:00:00:00:00:00", "zz:00:00:00:00:01")
              .map((m) => ["policy", "set", "10.250.0.9", "--mac", m, "--tap", PRE_TAP]),
            /mac/,
          ),
          badArgs(fc.constant(["policy", "set", "10.250.0.9", "--mac", "02:00:00:00:00:01"]), /tap/),
          badArgs(
            fc.constant(["policy", "set", "10.250.0.9", "--mac", "02:00:00:00:00:01", "--tap", "nosuchtap"]),
            /tap/,
          ),
        ),
        good: fc
          .tuple(
            fc.tuple(octet, fc.integer({ min: 1, max: 254 })).map(([c, d]) => `10.250.${c}.${d}`),
            fc.array(
              fc.tuple(unicastIPv4, fc.integer({ min: 8, max: 32 })).map(([a, p]) => `${a}/${p}`),
              { maxLength: 2 },
            ),
            fc.array(fc.tuple(fc.constantFrom("tcp", "udp"), validPort), { maxLength: 2 }),
            fc.boolean(),
          )
          .map(([g, allow, hostPorts, bind]) => [
            "policy",
            "set",
            bind ? "10.201.0.2" : g, // a MAC binds only on the TAP that routes the guest: pre0's
            ...allow.flatMap((a) => ["--allow", a]),
            ...hostPorts.flatMap(([p, n]) => ["--host-port", `${p}:${n}`]),
            ...(bind ? ["--mac", "02:00:00:00:00:09", "--tap", PRE_TAP] : []),
          ]),
        undo: (argv) => ["policy", "clear", argv[2] as string],
      },
      {
        name: "policy get / clear",
        bad: badArgs(
          fc.tuple(fc.constantFrom("get", "clear"), badIPv4).map(([c, g]) => ["policy", c, g]),
          /guestIp/,
        ),
        // No policy there: nothing to show or clear.
        good: fc
          .tuple(
            fc.constantFrom("get", "clear"),
            fc.tuple(octet, octet).map(([c, d]) => `10.251.${c}.${d}`),
          )
          .map(([c, g]) => ["policy", c, g]),
      },
      {
        name: "doctor",
        bad: fc.oneof(
          badArgs(
            fc.constantFrom("x", "-1", "1.5", "0x", "4294967296").map((g) => ["doctor", "--tap-group", g]),
            /tap-group/,
          ),
          badArgs(
            badTable.map((t) => ["--table", t, "doctor"]),
            /table/,
          ),
        ),
        // Read-only; exit 1 means it found something to fix (e.g. no default route here), not a usage error.
        good: fc.constantFrom(
          ["doctor"],
          ["--json", "doctor"],
          ["doctor", "--quiet"],
          ["doctor", "--strict"],
        ),
        okCodes: [0, 1],
      },
      {
        name: "gc",
        bad: fc.oneof(
          badArgs(
            badVmId.map((v) => ["gc", PRE_VM, v]),
            /vmId/,
          ),
          badArgs(fc.constantFrom(["gc"], ["gc", "--all", PRE_VM]), /--all/),
        ),
        good: fc.array(validVmId, { maxLength: 2 }).map((v) => ["gc", PRE_VM, ...v]), // PRE_VM is live
      },
    ],
    snap,
  );
});
