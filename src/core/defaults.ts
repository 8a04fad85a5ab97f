/** Default range for microVM addresses (the seed's `SUBNET`); the host side of every TAP is its first address. */
export const DEFAULT_SUBNET = "10.200.0.0/16";
