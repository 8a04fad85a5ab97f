/**
 * One call per VM: HostNetwork attaches a VM (address, MAC, TAP, published ports) and detaches it,
 * with durable state, crash recovery (`reconcile`) and garbage collection (`gc`).
 */

export { HostNetwork } from "./host-network.js";
export { isVmTap, tapAliasFor, tapNameFor, validateVmId } from "./names.js";
export {
  type Attachment,
  type AttachOptions,
  DEFAULT_BATCH_GROUP,
  DEFAULT_MTU,
  type FirecrackerInterface,
  GUEST_IFACE,
  type HostNetworkHooks,
  type HostNetworkOptions,
  type PublishedPort,
  type ReconcileReport,
  type Step,
} from "./options.js";
export {
  DEFAULT_EPHEMERAL_RANGE,
  ephemeralPorts,
  type LocalPortPolicy,
  type PortRange,
  parseLocalPortRange,
  parseReservedPorts,
  readLocalPortPolicy,
} from "./port-space.js";
export { ANY_HOST, expandPublish, type PortWant, type PublishSpec, parsePublish } from "./publish.js";
