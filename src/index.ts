/**
 * microvm-net: host networking for Firecracker microVMs.
 *
 * The seed-compatible API (herd's `internal/network`, in camelCase): {@link SUBNET}, {@link bootstrap},
 * {@link teardown}, {@link createTap}, {@link createPointToPointTap}, {@link deleteTap},
 * {@link addPortMapping}, {@link removePortMapping}, {@link IPAM}, {@link PortManager}.
 * One call per VM, with durable state and crash recovery: {@link HostNetwork}.
 * Per-guest firewall policy (allow-list, host services, resolvers, MAC binding): {@link setGuestPolicy}.
 */
export { type HostProbe, IPAM, type PortAllocation } from "./alloc/index.js";
export { type BootstrapOptions, bootstrap, teardown } from "./api/bootstrap.js";
export {
  closeShared,
  DEFAULT_TABLE,
  DEFAULT_TAP_GROUP,
  type NetworkOptions,
  SUBNET,
  TAP_ALIAS,
} from "./api/context.js";
export {
  type AllowEntry,
  clearGuestPolicy,
  type GuestPolicy,
  type GuestPolicyState,
  getGuestPolicy,
  setGuestPolicy,
  unbindTap,
} from "./api/guest-policy.js";
export {
  type IntegrationResult,
  integrateHostFirewall,
  removeHostFirewallIntegration,
} from "./api/integration.js";
export {
  addPortMapping,
  type HostMatch,
  listPortMappings,
  type Mapping,
  parseHostInterface,
  removePortMapping,
} from "./api/portmap.js";
export { hostProbe, PortManager } from "./api/ports.js";
export {
  createPointToPointTap,
  createTap,
  deleteTap,
  listTaps,
  type TapInfo,
  type TapOptions,
} from "./api/tap.js";
export * from "./core/errors.js";
export type { Protocol } from "./core/validate.js";
export {
  CHECKS,
  type Check,
  type DoctorContext,
  type DoctorOptions,
  type DoctorReport,
  doctor,
  doctorExitCode,
  type Finding,
  formatReport,
  runChecks,
  type Severity,
} from "./doctor/index.js";
export { type ForeignBlock, findForeignBlocks } from "./firewall/foreign.js";
export { type GuestAddressing, guestBootArg, guestMac, prefixToNetmask } from "./guest/index.js";
export {
  type Attachment,
  type AttachOptions,
  type FirecrackerInterface,
  HostNetwork,
  type HostNetworkOptions,
  type PublishedPort,
  type PublishSpec,
  type ReconcileReport,
} from "./host/index.js";
