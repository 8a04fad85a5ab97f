/**
 * What HostNetwork takes and gives: its options and test hooks, what a VM asks of an attach and the
 * Attachment it gets back, the reconcile report, and the defaults these document.
 */
import { DEFAULT_TAP_GROUP } from "../api/context.js";
import type { Protocol } from "../core/validate.js";
import type { AllowEntry } from "../firewall/guest-policy.js";
import type { HostPort, NftApplier } from "../firewall/index.js";
import type { NetlinkSocket } from "../kernel/netlink/index.js";
import type { VmState } from "../store/host-state.js";
import type { PortRange } from "./port-space.js";
import type { PublishSpec } from "./publish.js";

/** Interface group TAPs move to just before a batched delete (one RTM_DELLINK for the whole group). */
export const DEFAULT_BATCH_GROUP = DEFAULT_TAP_GROUP + 1;

/** Name of the guest's interface in the Firecracker entry and the boot argument. */
export const GUEST_IFACE = "eth0";

/** Default MTU (the kernel's default for a TAP). */
export const DEFAULT_MTU = 1500;

/** The points of an attach or detach at which {@link HostNetworkHooks.step} is called. */
export type Step =
  | "allocated"
  | "tap"
  | "neighbour"
  | "mappings"
  | "attached"
  | "detach:marked"
  | "detach:mappings"
  | "detach:tap";

/** Test hooks: called after each step of attach and detach (crash tests kill the process there). */
export interface HostNetworkHooks {
  step?(step: Step, vmId: string): void | Promise<void>;
}

/** Options of {@link HostNetwork.open}; every field has a default. */
export interface HostNetworkOptions {
  /** State database path. Default `/var/lib/microvm-net/state.db`. */
  statePath?: string;
  /**
   * Guest subnet (IPv4 CIDR, /8–/30); the host side of every TAP is its first address. Default: the
   * one recorded in the database, else the one `bootstrap` was given on this host (its record in
   * `stateDir`), else `10.200.0.0/16` — so guests get addresses inside the range bootstrap protects.
   * Changing it while VMs are recorded is refused.
   */
  subnet?: string;
  /** Where bootstrap's record is (for the default subnet). Default `/run/microvm-net`. */
  stateDir?: string;
  /** nftables table. Default `microvm_net`. */
  table?: string;
  /** Interface group of the TAPs (bootstrap's anti-spoofing rule matches it). Default 0x6d76. */
  group?: number;
  /** Interface group used for batched deletes; nothing else may use it. Default 0x6d77. */
  batchGroup?: number;
  /** Range of ephemeral host ports, before the kernel's ranges are taken out. Default 30000–32767. */
  portRange?: PortRange;
  /** Keep a socket bound on every published host port while this object lives. Default true. */
  holdPorts?: boolean;
  /** rtnetlink socket. Default: the process-wide one. */
  netlink?: NetlinkSocket;
  /** nftables applier. Default: the process-wide one. */
  nft?: NftApplier;
  /** Test hooks. */
  hooks?: HostNetworkHooks;
}

/** What a VM asks of {@link HostNetwork.attach}. */
export interface AttachOptions {
  /** Owner uid of the TAP: the VMM's (jailer's) uid. Default 0 (only root may open it). */
  uid?: number;
  /** Owner gid of the TAP. Default 0. */
  gid?: number;
  /** MTU in bytes, 68–65521 (a TAP's maximum, see validateTapMtu in core/validate.ts). Default 1500. */
  mtu?: number;
  /** A specific guest address inside the subnet. Default: the next free one. */
  guestIp?: string;
  /** Ports to publish: spec objects, or text `[hostIp:][hostPort:]guestPort[/proto]`. */
  publish?: ReadonlyArray<PublishSpec | string>;
  /**
   * Up to two DNS servers, given to the guest in its boot argument. The VM may reach them on udp/tcp
   * 53 even when they sit in a blocked range or on the host (its per-guest policy).
   */
  dns?: readonly string[];
  /**
   * Destinations this VM (only) may reach even inside the blocked ranges:
   * `<address or CIDR>[:<port>[-<port>]][/<tcp|udp>]`, e.g. `169.254.169.254:80/tcp`. Default none.
   */
  allow?: readonly AllowEntry[];
  /** Services of the host itself this VM (only) may open, on any host address. Default none. */
  hostPorts?: readonly HostPort[];
}

/** One published port of an attached VM. */
export interface PublishedPort {
  protocol: Protocol;
  /** `0.0.0.0` for every address of the host. */
  hostIp: string;
  hostPort: number;
  guestPort: number;
}

/** A Firecracker `network-interfaces` entry (PUT /network-interfaces/{iface_id}). */
export interface FirecrackerInterface {
  iface_id: string;
  host_dev_name: string;
  guest_mac: string;
  mtu: number;
}

/** Everything a VMM needs about a VM's network. */
export interface Attachment {
  vmId: string;
  state: VmState;
  /** TAP name (host_dev_name). */
  tap: string;
  /** The host side of the TAP and the guest's gateway (the subnet's first address). */
  hostIp: string;
  guestIp: string;
  /** Prefix length of the subnet, which is also the guest's netmask. */
  prefix: number;
  guestMac: string;
  mtu: number;
  uid?: number;
  gid?: number;
  dns: string[];
  ports: PublishedPort[];
  /** The guest kernel's `ip=` argument (needs CONFIG_IP_PNP in the guest kernel). */
  bootArg: string;
  firecracker: FirecrackerInterface;
}

/** What {@link HostNetwork.reconcile} did. */
export interface ReconcileReport {
  /** Attaches a dead process left half-done, rolled back. */
  rolledBack: string[];
  /** Detaches a dead process left half-done, finished. */
  finishedDetaches: string[];
  /** VMs whose TAP was missing and was made again. */
  recreatedTaps: string[];
  /** Our TAPs no record explains, deleted. */
  removedTaps: string[];
  /** Recorded mappings that were missing, added. */
  addedMappings: number;
  /** Map elements towards our subnet no record explains, removed. */
  removedMappings: number;
  /** Attaches or detaches another live process is doing, left alone. */
  inProgress: string[];
  /** Guests whose policy elements (allow-list, resolvers, MAC binding) were rewritten or removed. */
  fixedPolicies: string[];
  /** Recorded ports this process could not hold (another process holds them). */
  unheldPorts: Array<PublishedPort & { vmId: string }>;
}
