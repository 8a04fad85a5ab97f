/**
 * Our nftables table: rendering (pure), appliers (libnftables or `nft -f -`), bootstrap/teardown and
 * port mappings.
 */

export {
  describeHostSide,
  type HostMatch,
  MAP_NAMES,
  type MapName,
  type Mapping,
  mapOf,
  parseElementValue,
  parseMappings,
  validateHostMatch,
  validateMapping,
} from "./mapping.js";
export {
  LibNftables,
  type NftApplier,
  NftProcess,
  nftErrno,
  type OpenNftOptions,
  openNft,
  type RunOptions,
} from "./nft.js";
export { addMapping, listMappings, type RemoveOutcome, removeMapping } from "./portmap.js";
export {
  BOOTSTRAP_CHAINS,
  type BootstrapSpec,
  DEFAULT_BLOCKED_DESTINATIONS,
  DEFAULT_SUBNET,
  DEFAULT_TABLE,
  DEFAULT_TAP_GROUP,
  type HostPort,
  renderAddElement,
  renderBootstrap,
  renderCreateElement,
  renderGetElement,
  renderListTable,
  renderProbeAbsent,
  renderRemoveElement,
  renderSkeleton,
  renderTeardown,
  SKELETON_CHAINS,
  validateTableName,
} from "./ruleset.js";
export { bootstrapFirewall, ensureSkeleton, forgetSkeleton, teardownFirewall } from "./table.js";
