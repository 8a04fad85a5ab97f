import { type NetworkOptions, SUBNET } from "../api/context.js";
import { listPortMappings, type Mapping } from "../api/portmap.js";
import { listTaps, type TapInfo } from "../api/tap.js";
import type { Attachment } from "../host/index.js";
import { sysctlGet } from "../kernel/sysctl.js";
import { readBootstrapState } from "../store/bootstrap-state.js";
import { readVms } from "./host-commands.js";

/** What `mvnet status` reports. */
export interface Status {
  /** True when a bootstrap record exists for this network namespace. */
  bootstrapped: boolean;
  subnet: string;
  ipForward: boolean;
  taps: TapInfo[];
  mappings: Mapping[];
  /** VMs recorded by `mvnet attach` in the state database. */
  vms: Attachment[];
}

/** Reads the state of this network namespace (read-only). */
export async function readStatus(options: NetworkOptions, db?: string): Promise<Status> {
  const state = readBootstrapState(options.stateDir);
  return {
    bootstrapped: state !== undefined,
    subnet: state?.subnet ?? SUBNET,
    ipForward: sysctlGet("net/ipv4/ip_forward") === "1",
    taps: await listTaps(options),
    mappings: await listPortMappings({ ...options, table: options.table ?? state?.table }),
    vms: await readVms(db),
  };
}
