/**
 * `mvnet doctor`: the host diagnostic on the command line. Human report by default (one line per
 * finding, its fix indented below), `--json` for the report as data.
 *
 * Exit status: 0 when no finding is "fail" (warnings and notes alone keep it 0, so a host that works
 * but has e.g. a 0600 /dev/net/tun passes); 1 when one is "fail", or with `--strict` also when one
 * is "warn"; 2 for bad options; 3 when privileges are missing to even open netlink.
 */
import { type Command, InvalidArgumentError } from "commander";
import { doctor, doctorExitCode, formatReport } from "../doctor/index.js";
import { DEFAULT_TAP_GROUP } from "../firewall/ruleset.js";
import { statePathOf } from "./host-commands.js";

/** The global options `mvnet doctor` reads from the program. */
export interface DoctorGlobals {
  json?: boolean;
  table?: string;
  stateDir?: string;
}

function group(value: string): number {
  if (!/^(\d+|0x[0-9a-fA-F]+)$/.test(value)) throw new InvalidArgumentError("not an interface group number");
  const n = Number(value);
  if (n > 0xffffffff) throw new InvalidArgumentError("not an interface group in 0-4294967295");
  return n;
}

/**
 * Adds `doctor` to `program`. `globals()` gives the program's `--json`, `--table` and
 * `--state-dir`; the state database is the program's `--db` (registered by the host commands), else
 * `$MVNET_DB`, else the default. Sets `process.exitCode` (see the module comment) instead of throwing.
 */
export function registerDoctorCommand(program: Command, globals: () => DoctorGlobals): void {
  program
    .command("doctor")
    .description("check whether this host can run microVM networking, and say what to fix")
    .option("--strict", "exit 1 on warnings too, not only on failures")
    .option("--quiet", "leave out the checks that passed")
    .option("--tap-group <n>", "interface group of our TAPs", group, DEFAULT_TAP_GROUP)
    .action(async (o: { strict?: boolean; quiet?: boolean; tapGroup: number }) => {
      const g = globals();
      const db = program.opts<{ db?: string }>().db;
      const report = await doctor({
        table: g.table,
        stateDir: g.stateDir,
        dbPath: statePathOf(db),
        tapGroup: o.tapGroup,
      });
      process.stdout.write(g.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report, o.quiet));
      process.exitCode = doctorExitCode(report, o.strict);
    });
}
