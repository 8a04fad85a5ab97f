/**
 * The handles the seed-style API works through: one rtnetlink socket, one nftables applier, and the
 * names that mark what is ours. A process normally uses the lazily made default; tests and embedders
 * can pass their own.
 */
import { DEFAULT_SUBNET } from "../core/defaults.js";
import { ValidationError } from "../core/errors.js";
import { describe, validatePath } from "../core/validate.js";
import { DEFAULT_TABLE, DEFAULT_TAP_GROUP, type NftApplier, openNft } from "../firewall/index.js";
import { defaultSocket, type NetlinkSocket } from "../kernel/netlink/index.js";
import { DEFAULT_STATE_DIR } from "../store/bootstrap-state.js";

/** Default range for microVM addresses; the host side of every TAP is its first address. */
export const SUBNET = DEFAULT_SUBNET;

/** Interface alias (IFLA_IFALIAS) that marks a TAP as made by this library. */
export const TAP_ALIAS = "microvm-net";

/**
 * Defaults that mark what is ours: the nftables table (family ip), and the interface group
 * (IFLA_GROUP) of our TAPs. A group delete removes every link in the group, so the group must be a
 * number nothing else on the host uses (see GUIDE §3).
 */
export { DEFAULT_TABLE, DEFAULT_TAP_GROUP };

/** Options shared by the API functions; every field has a default. */
export interface NetworkOptions {
  /** nftables table name (family ip). Default {@link DEFAULT_TABLE}. */
  table?: string;
  /** Interface group our TAPs join. Default {@link DEFAULT_TAP_GROUP}. */
  group?: number;
  /** Directory of the bootstrap state file. Default `/run/microvm-net`. */
  stateDir?: string;
  /** rtnetlink socket to use. Default: a process-wide socket opened on first use. */
  netlink?: NetlinkSocket;
  /** nftables applier to use. Default: a process-wide libnftables context (or `nft -f -`). */
  nft?: NftApplier;
}

/** Options with every default filled in. */
export interface Context {
  table: string;
  group: number;
  stateDir: string;
  netlink: NetlinkSocket;
  nft: () => Promise<NftApplier>;
}

let sharedNetlink: NetlinkSocket | undefined;
let sharedNft: Promise<NftApplier> | undefined;

function sharedApplier(): Promise<NftApplier> {
  if (!sharedNft) sharedNft = openNft();
  return sharedNft;
}

/**
 * The options argument of every seed-style function: `undefined` and `null` both mean "all
 * defaults" (as a `null` field does), an object is taken as is.
 * @throws ValidationError (field `options`) for anything else, e.g. a number or a string.
 */
export function optionsOf<T extends object>(options: T | null | undefined): T {
  if (options === undefined || options === null) return {} as T;
  if (typeof options !== "object" && typeof options !== "function") {
    throw new ValidationError("options", `${describe(options)} is not an options object`);
  }
  return options;
}

/**
 * Fills in defaults; opens the shared netlink socket lazily (nftables only when first needed).
 * @throws ValidationError for options that are not an object ({@link optionsOf}) or a `stateDir`
 *   that is not a path — before any handle is opened.
 */
export function context(given: NetworkOptions | null = {}): Context {
  const options = optionsOf(given);
  if (options.stateDir !== undefined && options.stateDir !== null) validatePath(options.stateDir, "stateDir");
  if (!options.netlink) sharedNetlink = defaultSocket();
  const netlink = options.netlink ?? (sharedNetlink as NetlinkSocket);
  const nft = options.nft;
  return {
    table: options.table ?? DEFAULT_TABLE,
    group: options.group ?? DEFAULT_TAP_GROUP,
    stateDir: options.stateDir ?? DEFAULT_STATE_DIR,
    netlink,
    nft: nft ? async () => nft : sharedApplier,
  };
}

/** Closes the process-wide handles (the CLI calls this before exiting). Safe to call twice. */
export async function closeShared(): Promise<void> {
  sharedNetlink?.close();
  sharedNetlink = undefined;
  const nft = sharedNft;
  sharedNft = undefined;
  if (nft) (await nft).close();
}
