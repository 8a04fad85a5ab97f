// A stand-in for src/cli/main.ts with only the host commands registered (main.ts hooks them in with
// one line), so the commands can be tested as a separate process, as a user runs them.
import { Command } from "commander";
import { closeShared } from "../../src/api/context.js";
import { reportError } from "../../src/cli/exit.js";
import { registerHostCommands } from "../../src/cli/host-commands.js";

const program = new Command("mvnet").option("--json").option("--table <name>").exitOverride();
registerHostCommands(program);
try {
  await program.parseAsync(process.argv);
} catch (e) {
  const code = (e as { code?: string }).code;
  process.exitCode =
    typeof code === "string" && code.startsWith("commander.")
      ? 2
      : reportError(e, process.argv.includes("--json"));
} finally {
  await closeShared();
}
