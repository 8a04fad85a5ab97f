import { type NetworkOptions, SUBNET } from "../api/context.js";
import { listPortMappings, type Mapping } from "../api/portmap.js";
import { listTaps, type TapInfo } from "../api/tap.js";
import { sysctlGet } from "../kernel/sysctl.js";
import { readBootstrapState } from "../store/bootstrap-state.js";

/** What `mvnet status` reports. */
export interface Status {
  /** True when a bootstrap record exists for this network namespace. */
  bootstrapped: boolean;
  subnet: string;
  ipForward: boolean;
  taps: TapInfo[];
  mappings: Mapping[];
}

/** Reads the state of this network namespace (read-only). */
export async function readStatus(options: NetworkOptions): Promise<Status> {
  const state = readBootstrapState(options.stateDir);
  return {
    bootstrapped: state !== undefined,
    subnet: state?.subnet ?? SUBNET,
    ipForward: sysctlGet("net/ipv4/ip_forward") === "1",
    taps: await listTaps(options),
    mappings: await listPortMappings({ ...options, table: options.table ?? state?.table }),
  };
}
