/**
 * `mvnet`: the command line over the library. Human output by default, `--json` for machines; exit
 * codes in ./exit.ts.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { bootstrap, teardown } from "../api/bootstrap.js";
import { closeShared, type NetworkOptions, SUBNET } from "../api/context.js";
import { integrateHostFirewall } from "../api/integration.js";
import { addPortMapping, listPortMappings, removePortMapping } from "../api/portmap.js";
import { createPointToPointTap, createTap, deleteTap, listTaps } from "../api/tap.js";
import { ValidationError } from "../core/errors.js";
import { runDemo } from "./demo.js";
import { runRealGuestDemo } from "./demo-real-guest.js";
import { registerDoctorCommand } from "./doctor.js";
import { EXIT, reportError } from "./exit.js";
import { formatMappings, formatStatus, formatTaps } from "./format.js";
import { registerHostCommands } from "./host-commands.js";
import { reexecInNetns } from "./netns.js";
import { parseHostPorts, registerPolicyCommands } from "./policy-commands.js";
import { readStatus } from "./status.js";

function int(value: string): number {
  if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError("not an integer");
  return Number(value);
}

interface Global {
  json?: boolean;
  table?: string;
  stateDir?: string;
  netns?: string;
}

function build(): Command {
  const program = new Command("mvnet")
    .description("Host networking for Firecracker microVMs: TAPs, addresses, published ports, NAT.")
    .option("--json", "machine-readable output")
    .option("--netns <name>", "act inside the network namespace made by `ip netns add <name>`")
    .option("--table <name>", "nftables table (family ip) to use", undefined)
    .option("--state-dir <dir>", "where bootstrap records what it changed", undefined)
    // Usage errors are reported by main() as one line (or JSON under --json), not commander's text
    // followed by the whole help; subcommands inherit both settings.
    .configureOutput({ outputError: () => {} })
    .exitOverride();

  const g = (): Global => program.opts<Global>();
  const opts = (): NetworkOptions => ({ table: g().table, stateDir: g().stateDir });
  const out = (human: string, data: unknown) =>
    process.stdout.write(
      g().json ? `${JSON.stringify(data, null, 2)}\n` : human.endsWith("\n") ? human : `${human}\n`,
    );

  program
    .command("bootstrap")
    .description("enable forwarding and install NAT and guest isolation for the subnet (idempotent)")
    .option("--subnet <cidr>", "guest address range", SUBNET)
    .option("--allow-host <proto:port...>", "host services guests may open, e.g. udp:53 tcp:53", [])
    .option(
      "--allow-dest <entry...>",
      "exceptions to the blocked ranges for every guest: <ip|cidr>[:<port>[-<port>]][/<tcp|udp>], e.g. 169.254.169.254:80/tcp",
      [],
    )
    .option(
      "--dns <ip...>",
      "the guests' resolvers: udp/tcp 53 to them is allowed, even in a private range",
      [],
    )
    .option(
      "--integrate",
      "let our TAPs' traffic through other firewalls that drop at the forward hook (Docker, nftables, iptables-legacy); teardown removes it",
    )
    .action(
      async (o: {
        subnet: string;
        allowHost: string[];
        allowDest: string[];
        dns: string[];
        integrate?: boolean;
      }) => {
        const guestToHost = parseHostPorts(o.allowHost, "allow-host");
        const subnet = await bootstrap({
          ...opts(),
          subnet: o.subnet,
          guestToHost,
          allowedDestinations: o.allowDest,
          dns: o.dns,
        });
        if (!o.integrate) {
          out(`bootstrapped ${subnet}`, { subnet });
          return;
        }
        const r = await integrateHostFirewall(opts());
        const still = r.remaining.length
          ? `; still blocked: ${r.remaining.map((b) => b.reason).join("; ")}`
          : "";
        out(`bootstrapped ${subnet}; integrated ${r.inserted.length} chain(s)${still}`, {
          subnet,
          integration: r,
        });
      },
    );

  program
    .command("teardown")
    .description("remove everything bootstrap and the port mappings added, restore sysctls")
    .action(async () => {
      await teardown(opts());
      out("torn down", { ok: true });
    });

  const tap = program.command("tap").description("TAP devices");
  tap
    .command("create <name>")
    .description("create a TAP: --cidr for a plain address, or --host-ip and --guest-ip for a /32 pair")
    .option("--cidr <cidr>", "host address with prefix, e.g. 10.200.0.1/24")
    .option("--host-ip <ip>", "host side of a point-to-point pair", "10.200.0.1")
    .option("--guest-ip <ip>", "guest side of a point-to-point pair")
    .option("--uid <uid>", "owner uid (the VMM's)", int, 0)
    .option("--gid <gid>", "owner gid", int, 0)
    .option("--mtu <bytes>", "MTU", int)
    .action(
      async (
        name: string,
        o: { cidr?: string; hostIp: string; guestIp?: string; uid: number; gid: number; mtu?: number },
      ) => {
        const t = { ...opts(), uid: o.uid, gid: o.gid, mtu: o.mtu };
        if (o.cidr && o.guestIp)
          throw new ValidationError("options", "give either --cidr or --guest-ip, not both");
        let info: Awaited<ReturnType<typeof createTap>>;
        if (o.cidr) info = await createTap(name, o.cidr, t);
        else if (o.guestIp) info = await createPointToPointTap(name, o.hostIp, o.guestIp, o.uid, o.gid, t);
        else throw new ValidationError("options", "give --cidr, or --guest-ip (with optional --host-ip)");
        out(`created ${info.name} (index ${info.index}, mac ${info.mac}, mtu ${info.mtu})`, info);
      },
    );
  tap
    .command("delete <name>")
    .alias("rm")
    .description("delete one of our TAPs (absent is fine; a device not made by mvnet is refused)")
    .action(async (name: string) => {
      await deleteTap(name, opts());
      out(`deleted ${name}`, { deleted: name });
    });
  tap
    .command("ls")
    .description("list our TAPs")
    .action(async () => {
      const taps = await listTaps(opts());
      out(formatTaps(taps), taps);
    });

  const port = program.command("port").description("published ports (DNAT into a guest)");
  const mappingArgs = (c: Command) =>
    c
      .argument("<hostPort>", "host port", int)
      .argument("<guestIp>", "guest address")
      .argument("<guestPort>", "guest port", int)
      .addOption(new Option("--proto <proto>", "protocol").choices(["tcp", "udp"]).default("tcp"))
      .option(
        "--host <ifaceOrIp>",
        'host side: "" or 0.0.0.0 = all addresses, an IPv4 address, or an interface',
        "",
      );
  mappingArgs(port.command("add").description("publish hostPort to guestIp:guestPort")).action(
    async (hostPort: number, guestIp: string, guestPort: number, o: { proto: string; host: string }) => {
      await addPortMapping(o.host, hostPort, guestIp, guestPort, o.proto, opts());
      out(`published ${o.proto}/${o.host || "*"}:${hostPort} -> ${guestIp}:${guestPort}`, { ok: true });
    },
  );
  mappingArgs(port.command("rm").description("remove exactly that mapping (absent is fine)")).action(
    async (hostPort: number, guestIp: string, guestPort: number, o: { proto: string; host: string }) => {
      const removed = await removePortMapping(o.host, hostPort, guestIp, guestPort, o.proto, opts());
      const what = `${o.proto}/${o.host || "*"}:${hostPort} -> ${guestIp}:${guestPort}`;
      out(removed ? `removed ${what}` : `nothing to remove: no mapping ${what}`, { removed });
    },
  );
  port
    .command("ls")
    .description("list published ports")
    .action(async () => {
      const m = await listPortMappings(opts());
      out(formatMappings(m), m);
    });

  program
    .command("status")
    .description("what microvm-net has set up in this network namespace")
    .action(async () => {
      const s = await readStatus(opts(), program.opts<{ db?: string }>().db);
      out(formatStatus(s), s);
    });

  registerHostCommands(program);
  registerDoctorCommand(program, g);
  registerPolicyCommands(program, opts, out);

  program
    .command("demo")
    .description("the whole story in a throw-away network namespace (safe on any Linux machine)")
    .option(
      "--guest",
      "boot a real Linux guest under QEMU on the TAP (needs root, qemu-system-x86, the e2e guest kernel)",
    )
    .action(async (o: { guest?: boolean }) => {
      process.exitCode = o.guest ? await runRealGuestDemo() : await runDemo();
    });

  return program;
}

/** Entry point: parses argv, runs the command, maps errors to exit codes. */
/** A usage error as one line on stderr (JSON under `--json`), with where to find help. */
function reportUsage(code: string, message: string, json: boolean): number {
  const text = message
    .replace(/^error: /, "")
    .replace(/\s+/g, " ")
    .trim();
  if (json) {
    process.stderr.write(`${JSON.stringify({ error: { code: "ERR_USAGE", kind: code, message: text } })}\n`);
  } else {
    process.stderr.write(`mvnet: ${text} (see mvnet --help)\n`);
  }
  return EXIT.usage;
}

export async function main(argv: string[]): Promise<number> {
  const json = argv.includes("--json");
  try {
    const code = reexecInNetns(argv);
    if (code !== undefined) return code;
    await build().parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
  } catch (e) {
    const ce = e as { code?: string; exitCode?: number };
    if (typeof ce.code === "string" && ce.code.startsWith("commander.")) {
      if (
        ce.code === "commander.helpDisplayed" ||
        ce.code === "commander.version" ||
        ce.code === "commander.help"
      ) {
        return EXIT.ok;
      }
      return reportUsage(ce.code, (e as Error).message, json);
    }
    if (e instanceof InvalidArgumentError) return reportUsage("commander.invalidArgument", e.message, json);
    return reportError(e, json);
  } finally {
    await closeShared();
  }
}

process.exitCode = await main(process.argv);
