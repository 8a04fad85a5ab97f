/**
 * Host-wide set-up for microVM networking, and its exact undo.
 */
import { parseCidr } from "../core/validate.js";
import { type BootstrapSpec, bootstrapFirewall, teardownFirewall } from "../firewall/index.js";
import { sysctlGet, sysctlSet } from "../kernel/sysctl.js";
import { readBootstrapState, removeBootstrapState, writeBootstrapState } from "../store/bootstrap-state.js";
import { context, type NetworkOptions, SUBNET } from "./context.js";

/** Options of {@link bootstrap}. */
export interface BootstrapOptions
  extends NetworkOptions,
    Pick<BootstrapSpec, "blockedDestinations" | "allowedDestinations" | "guestToHost"> {
  /** Guest address range, IPv4 CIDR. Default {@link SUBNET} (`10.200.0.0/16`). */
  subnet?: string;
}

const IP_FORWARD = "net/ipv4/ip_forward";

/**
 * Prepares the host: IPv4 forwarding on; in our nftables table, masquerade for the subnet's traffic
 * leaving the host (whichever interface the default route uses), accept established/related, drop
 * guest traffic to `blockedDestinations` (default: RFC 1918, 169.254.0.0/16 link-local/cloud
 * metadata) except `allowedDestinations`, drop guest to guest, reject guests' new connections to the
 * host itself except the `guestToHost` ports, and accept the rest of the guests' traffic.
 * Idempotent: running it again leaves exactly one copy of every rule and keeps port mappings.
 * What it changes outside the table (the sysctl's previous value) is recorded in a state file so that
 * {@link teardown} — in this process or another — restores it.
 * @returns the normalised subnet, e.g. `10.200.0.0/16`.
 * @throws ValidationError for a bad subnet (nothing touched); FirewallError / KernelError otherwise,
 *   after undoing the sysctl change this call made.
 */
export async function bootstrap(options: BootstrapOptions = {}): Promise<string> {
  const c = parseCidr(options.subnet ?? SUBNET, "subnet");
  const subnet = `${c.network}/${c.prefix}`;
  const ctx = context(options);
  const nft = await ctx.nft();

  const previous = readBootstrapState(ctx.stateDir);
  const sysctls = { ...(previous?.sysctls ?? {}) };
  const forward = sysctlGet(IP_FORWARD);
  let changedForward = false;
  if (forward !== "1") {
    // Record before changing, so that a crash right after the change still leaves a way back.
    sysctls[IP_FORWARD] ??= forward;
    writeBootstrapState({ version: 1, sysctls, subnet, table: ctx.table }, ctx.stateDir);
    sysctlSet(IP_FORWARD, "1");
    changedForward = true;
  }
  try {
    await bootstrapFirewall(nft, {
      table: ctx.table,
      subnet,
      blockedDestinations: options.blockedDestinations,
      allowedDestinations: options.allowedDestinations,
      guestToHost: options.guestToHost,
      tapGroup: ctx.group,
    });
  } catch (e) {
    if (changedForward) sysctlSet(IP_FORWARD, forward);
    if (!previous) removeBootstrapState(ctx.stateDir);
    throw e;
  }
  writeBootstrapState({ version: 1, sysctls, subnet, table: ctx.table }, ctx.stateDir);
  return subnet;
}

/**
 * Undoes {@link bootstrap} and every port mapping: deletes our nftables table in one transaction and
 * restores the sysctls bootstrap changed to their recorded values. Works after the default route
 * moved or vanished (no rule names an interface), from any process, and when nothing is set up.
 * TAPs are not touched (delete them with deleteTap).
 * @throws FirewallError / KernelError; the state file is kept until the undo has succeeded.
 */
export async function teardown(options: NetworkOptions = {}): Promise<void> {
  const ctx = context(options);
  const state = readBootstrapState(ctx.stateDir);
  const nft = await ctx.nft();
  await teardownFirewall(nft, options.table ?? state?.table ?? ctx.table);
  for (const [path, value] of Object.entries(state?.sysctls ?? {})) sysctlSet(path, value);
  removeBootstrapState(ctx.stateDir);
}
