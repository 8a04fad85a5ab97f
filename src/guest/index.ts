/**
 * What a guest needs from us to join the network we build for it, as pure functions: its kernel boot
 * argument and its MAC address.
 */
export { type GuestAddressing, guestBootArg, prefixToNetmask } from "./boot-arg.js";
export { guestMac } from "./mac.js";
