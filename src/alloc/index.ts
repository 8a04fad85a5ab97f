/**
 * Pure allocation logic: guest addresses (IPAM) and published host ports (PortManager).
 * No syscalls here; the host checks PortManager needs come in through `HostProbe`.
 */
export { DEFAULT_SUBNET, IPAM, MAX_PREFIX, MIN_PREFIX } from "./ipam.js";
export {
  DEFAULT_PORT_RANGE,
  type HostProbe,
  MAX_PROBE_ATTEMPTS,
  type PortAllocation,
  PortManager,
  type PortRange,
} from "./ports.js";
