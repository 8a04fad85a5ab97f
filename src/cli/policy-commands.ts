/**
 * `mvnet policy set | get | clear <guestIp>`: one guest's firewall policy beyond the host-wide rules
 * of bootstrap (api/guest-policy.ts), and the `<proto>:<port>` parser the other commands share.
 */
import type { Command } from "commander";
import type { NetworkOptions } from "../api/context.js";
import {
  clearGuestPolicy,
  type GuestPolicyState,
  getGuestPolicy,
  setGuestPolicy,
} from "../api/guest-policy.js";
import { ValidationError } from "../core/errors.js";
import { validatePort, validateProtocol } from "../core/validate.js";
import type { HostPort } from "../firewall/index.js";

/** Appends a repeated option's value (commander's accumulator). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * Parses host ports given as `<tcp|udp>:<port>` (also `<tcp|udp>/<port>`), e.g. `udp:53`.
 * @throws ValidationError (field `option`) naming the bad entry.
 */
export function parseHostPorts(values: readonly string[], option: string): HostPort[] {
  return values.map((v) => {
    const m = /^([a-z]+)[:/](\d+)$/i.exec(v);
    if (!m) throw new ValidationError(option, `"${v}" is not <tcp|udp>:<port>`);
    return {
      protocol: validateProtocol(m[1]?.toLowerCase(), option),
      port: validatePort(Number(m[2]), option),
    };
  });
}

function formatPolicy(p: GuestPolicyState | undefined, guestIp: string): string {
  if (!p) return `${guestIp}: no policy (host-wide rules only)`;
  const lines = [`${p.guestIp}:`];
  lines.push(`  allow:      ${p.allow.length ? p.allow.join(" ") : "-"}`);
  lines.push(`  host ports: ${p.hostAccess.length ? p.hostAccess.join(" ") : "-"}`);
  lines.push(`  mac:        ${p.mac ? `${p.mac} on ${String(p.tap)}` : "-"}`);
  return lines.join("\n");
}

/**
 * Adds `mvnet policy` to the program.
 * @param opts the global options (table, state dir) of the invocation.
 * @param out prints human text, or `data` as JSON under `--json`.
 */
export function registerPolicyCommands(
  program: Command,
  opts: () => NetworkOptions,
  out: (human: string, data: unknown) => void,
): void {
  const policy = program
    .command("policy")
    .description("one guest's firewall policy beyond the host-wide rules (allow-list, host ports, MAC)");

  policy
    .command("set <guestIp>")
    .description("replace the guest's policy, atomically")
    .option(
      "--allow <entry>",
      "destination the guest may reach: <ip|cidr>[:<port>[-<port>]][/<tcp|udp>] (repeatable)",
      collect,
      [],
    )
    .option(
      "--host-port <proto:port>",
      "host service the guest may open, e.g. tcp:22 (repeatable)",
      collect,
      [],
    )
    .option("--dns <ip>", "resolver the guest may reach on udp/tcp 53 (repeatable)", collect, [])
    .option("--mac <mac>", "the only source MAC accepted on the guest's TAP (with --tap)")
    .option("--tap <name>", "the guest's TAP (with --mac)")
    .action(
      async (
        guestIp: string,
        o: { allow: string[]; hostPort: string[]; dns: string[]; mac?: string; tap?: string },
      ) => {
        await setGuestPolicy(
          guestIp,
          {
            allow: o.allow,
            hostPorts: parseHostPorts(o.hostPort, "host-port"),
            dns: o.dns,
            mac: o.mac,
            tap: o.tap,
          },
          opts(),
        );
        const now = await getGuestPolicy(guestIp, opts());
        out(formatPolicy(now, guestIp), { guestIp, policy: now ?? null });
      },
    );

  policy
    .command("get <guestIp>")
    .description("show the guest's policy as the kernel holds it")
    .action(async (guestIp: string) => {
      const p = await getGuestPolicy(guestIp, opts());
      out(formatPolicy(p, guestIp), { guestIp, policy: p ?? null });
    });

  policy
    .command("clear <guestIp>")
    .description("remove the guest's policy (host-wide rules stay)")
    .action(async (guestIp: string) => {
      const removed = await clearGuestPolicy(guestIp, opts());
      out(removed ? `${guestIp}: policy removed` : `${guestIp}: had no policy`, { guestIp, removed });
    });
}
