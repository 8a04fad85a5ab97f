/**
 * Host-wide set-up for microVM networking, and its exact undo.
 */
import { MAX_PREFIX, MIN_PREFIX } from "../alloc/index.js";
import { ValidationError } from "../core/errors.js";
import { type Cidr, cidrContains, parseCidr } from "../core/validate.js";
import {
  type BootstrapSpec,
  bootstrapFirewall,
  renderBootstrap,
  teardownFirewall,
} from "../firewall/index.js";
import { addrList, defaultRoute } from "../kernel/netlink/index.js";
import { sysctlGet, sysctlSet } from "../kernel/sysctl.js";
import { readBootstrapState, removeBootstrapState, writeBootstrapState } from "../store/bootstrap-state.js";
import { type Context, context, type NetworkOptions, optionsOf, SUBNET } from "./context.js";
import { removeHostFirewallIntegration } from "./integration.js";
import { clearLoopback } from "./loopback.js";
import { listTaps } from "./tap.js";

/** Options of {@link bootstrap}. */
export interface BootstrapOptions
  extends NetworkOptions,
    Pick<BootstrapSpec, "blockedDestinations" | "allowedDestinations" | "guestToHost" | "dns"> {
  /** Guest address range, IPv4 CIDR. Default {@link SUBNET} (`10.200.0.0/16`). */
  subnet?: string;
}

const IP_FORWARD = "net/ipv4/ip_forward";

/**
 * Prepares the host: IPv4 forwarding on; in our nftables table, masquerade for the subnet's traffic
 * leaving the host (whichever interface the default route uses), accept established/related, drop
 * guest traffic to `blockedDestinations` (default: RFC 1918, 169.254.0.0/16 link-local/cloud
 * metadata, 100.64.0.0/10 shared/CGNAT, 127.0.0.0/8) except `allowedDestinations` (entries
 * `<address or CIDR>[:<port>[-<port>]][/<tcp|udp>]`) and the `dns` resolvers (udp/tcp 53, also
 * when a resolver is a host address), drop guest to guest, drop frames from a TAP whose source MAC
 * or address is not the one bound to it (per-guest policy, see guest-policy.ts), reject guests' new
 * connections to the host itself at once (TCP RST, else ICMP port unreachable) except the
 * `guestToHost` ports, and accept the rest of the guests' traffic. Per-guest exceptions:
 * setGuestPolicy, or HostNetwork.attach's `allow`/`dns`.
 * Idempotent: running it again leaves exactly one copy of every rule and keeps port mappings.
 * What it changes outside the table (the sysctl's previous value) is recorded in a state file so that
 * {@link teardown} — in this process or another — restores it.
 * @returns the normalised subnet, e.g. `10.200.0.0/16`.
 * @param given options; `null` or omitted = defaults.
 * @throws ValidationError for options that are not an object, a `stateDir` that is not a path, a
 *   list field (`blockedDestinations`, `allowedDestinations`, `dns`, `guestToHost`) that is not an
 *   array, a bad subnet — prefix outside /8–/30, or one that holds an address of
 *   the host's own (outside our TAPs) or its default gateway — or a bad destination, resolver or
 *   host port (nothing touched); FirewallError /
 *   KernelError otherwise, after undoing what this call changed (sysctl and state record).
 */
export async function bootstrap(given: BootstrapOptions | null = {}): Promise<string> {
  const options = optionsOf(given);
  const c = parseCidr(options.subnet ?? SUBNET, "subnet");
  if (c.prefix < MIN_PREFIX || c.prefix > MAX_PREFIX) {
    throw new ValidationError("subnet", `prefix /${c.prefix} is outside /${MIN_PREFIX}-/${MAX_PREFIX}`);
  }
  const subnet = `${c.network}/${c.prefix}`;
  const ctx = context(options);
  const spec: BootstrapSpec = {
    table: ctx.table,
    subnet,
    blockedDestinations: options.blockedDestinations,
    allowedDestinations: options.allowedDestinations,
    guestToHost: options.guestToHost,
    dns: options.dns,
    tapGroup: ctx.group,
  };
  renderBootstrap(spec); // validates every field before anything is touched
  await refuseHostOverlap(ctx, c);
  const nft = await ctx.nft();

  const previous = readBootstrapState(ctx.stateDir);
  const sysctls = { ...(previous?.sysctls ?? {}) };
  const forward = sysctlGet(IP_FORWARD);
  const changedForward = forward !== "1";
  try {
    if (changedForward) {
      // Record before changing, so that a crash right after the change still leaves a way back.
      sysctls[IP_FORWARD] ??= forward;
      writeBootstrapState({ version: 1, sysctls, subnet, table: ctx.table }, ctx.stateDir);
      sysctlSet(IP_FORWARD, "1");
    }
    await bootstrapFirewall(nft, spec);
  } catch (e) {
    if (changedForward && sysctlGet(IP_FORWARD) !== forward) sysctlSet(IP_FORWARD, forward);
    if (previous) writeBootstrapState(previous, ctx.stateDir);
    else removeBootstrapState(ctx.stateDir);
    throw e;
  }
  writeBootstrapState({ version: 1, sysctls, subnet, table: ctx.table }, ctx.stateDir);
  return subnet;
}

/**
 * The guest rules match on the subnet, so a subnet that holds one of the host's own addresses (other
 * than on our TAPs) or its default gateway would capture the host's own traffic — `0.0.0.0/0` would
 * cut the host off. Refused before anything is touched.
 */
async function refuseHostOverlap(ctx: Context, c: Cidr): Promise<void> {
  const ours = new Set((await listTaps({ netlink: ctx.netlink })).map((t) => t.index));
  for (const a of await addrList(ctx.netlink)) {
    if (!ours.has(a.index) && !a.local.startsWith("127.") && cidrContains(c, a.local)) {
      throw new ValidationError("subnet", `${c.network}/${c.prefix} holds the host address ${a.local}`);
    }
  }
  const gw = (await defaultRoute(ctx.netlink))?.gateway;
  if (gw && cidrContains(c, gw)) {
    throw new ValidationError("subnet", `${c.network}/${c.prefix} holds the default gateway ${gw}`);
  }
}

/**
 * Undoes {@link bootstrap} and every port mapping: deletes our nftables table in one transaction and
 * restores the sysctls bootstrap changed to their recorded values; first removes the rules
 * {@link integrateHostFirewall} put into other firewalls (`mvnet bootstrap --integrate`), if any. Works after the default route
 * moved or vanished (no rule names an interface), from any process, and when nothing is set up.
 * TAPs are not touched (delete them with deleteTap). Given a `table` other than the one bootstrap
 * recorded, only that table is deleted: the record, sysctls and integration belong to the other.
 * @param given options; `null` or omitted = defaults.
 * @throws ValidationError (nothing touched) for options that are not an object or a `stateDir` that
 *   is not a path; FirewallError / KernelError; the state file is kept until the undo has succeeded.
 */
export async function teardown(given: NetworkOptions | null = {}): Promise<void> {
  const options = optionsOf(given);
  const ctx = context(options);
  const state = readBootstrapState(ctx.stateDir);
  const nft = await ctx.nft();
  const table = options.table ?? state?.table ?? ctx.table;
  if (state && state.table !== table) {
    // Another table than the one bootstrapped here: delete it, and leave the bootstrap's record,
    // sysctls and integration to the teardown of its own table.
    await teardownFirewall(nft, table);
    return;
  }
  await removeHostFirewallIntegration(options);
  await teardownFirewall(nft, table);
  await clearLoopback(ctx);
  for (const [path, value] of Object.entries(state?.sysctls ?? {})) sysctlSet(path, value);
  removeBootstrapState(ctx.stateDir);
}
