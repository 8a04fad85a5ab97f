import { DEFAULT_SUBNET } from "../core/defaults.js";
import { ConflictError, ExhaustedError, ValidationError } from "../core/errors.js";
import { intToIPv4, ipv4ToInt, parseCidr, prefixMask, validateIPv4 } from "../core/validate.js";

/** The subnet guests get their addresses from unless told otherwise. */
export { DEFAULT_SUBNET };

/**
 * Shortest prefix accepted. A /8 needs a 2 MiB bitmap (one bit per address); anything shorter
 * would cost more memory than a host could ever use in guests, so it is refused.
 */
export const MIN_PREFIX = 8;

/**
 * Longest prefix accepted. A /30 holds network, gateway, one guest and broadcast; a /31 or /32
 * leaves no address for a guest once the gateway is taken.
 */
export const MAX_PREFIX = 30;

const FULL = 0xffffffff;

/**
 * In-memory IPv4 address manager for guests: one address per VM out of one subnet.
 *
 * Every TAP carries the same host-side address, the subnet's gateway (network + 1); each guest
 * gets its own address out of the rest. The network address, the gateway and the broadcast
 * address are never handed out.
 *
 * Allocation is next-fit with wrap-around: the search starts just past the last address handed
 * out, so an address that was just released is reused only after the cursor has gone round the
 * whole subnet. That keeps stale ARP entries and stale clients of a gone VM from reaching its
 * successor straight away.
 *
 * State is a bitmap (one bit per address, `2^(32-prefix)` bits) plus a count of held addresses,
 * so `acquire()` is O(1) amortized over a sweep of the subnet, and an exhausted pool is detected
 * in O(1) without a scan. Not persistent: after a restart, feed recorded addresses to `reserve()`.
 */
export class IPAM {
  readonly #networkInt: number;
  readonly #mask: number;
  readonly #prefix: number;
  /** Number of addresses in the subnet, network and broadcast included. */
  readonly #total: number;
  /** Bit set = not available: held, or one of network/gateway/broadcast, or padding past the end. */
  readonly #bits: Uint32Array;
  #used = 0;
  /** Offset from the network address where the next search starts. */
  #cursor = 2;

  /**
   * @param cidr IPv4 subnet `a.b.c.d/n`, 8 ≤ n ≤ 30. Host bits are allowed and cleared
   *   (`10.200.3.7/16` means `10.200.0.0/16`).
   * @throws ValidationError (field `cidr`) when `cidr` is not an IPv4 CIDR, when n < 8 (memory
   *   bound, see `MIN_PREFIX`), or when n is 31 or 32 (no usable guest address).
   */
  constructor(cidr: string = DEFAULT_SUBNET) {
    const parsed = parseCidr(cidr, "cidr");
    if (parsed.prefix > MAX_PREFIX) {
      throw new ValidationError(
        "cidr",
        `${parsed.network}/${parsed.prefix} has no usable guest address once the network, gateway and ` +
          `broadcast addresses are set aside (use /${MAX_PREFIX} or shorter)`,
        "ERR_INVALID_CIDR",
      );
    }
    if (parsed.prefix < MIN_PREFIX) {
      throw new ValidationError(
        "cidr",
        `${parsed.network}/${parsed.prefix} is larger than /${MIN_PREFIX}, the largest subnet supported`,
        "ERR_INVALID_CIDR",
      );
    }
    this.#prefix = parsed.prefix;
    this.#mask = prefixMask(parsed.prefix);
    this.#networkInt = ipv4ToInt(parsed.network);
    this.#total = 2 ** (32 - parsed.prefix);
    const words = Math.ceil(this.#total / 32);
    this.#bits = new Uint32Array(words);
    this.#set(0); // network
    this.#set(1); // gateway
    this.#set(this.#total - 1); // broadcast
    const tail = this.#total % 32;
    if (tail !== 0) {
      // Only a /28../30 has a partial word; mark its padding as taken so the search never lands there.
      this.#bits[words - 1] = ((this.#bits[words - 1] as number) | (FULL << tail)) >>> 0;
    }
  }

  /** The subnet, normalised: `a.b.c.d/n` with host bits cleared. */
  get cidr(): string {
    return `${intToIPv4(this.#networkInt)}/${this.#prefix}`;
  }

  /** Prefix length of the subnet (8–30); also the netmask to give guests. */
  get prefix(): number {
    return this.#prefix;
  }

  /** The host-side address of every TAP: network + 1. Never handed out. */
  get gateway(): string {
    return intToIPv4(this.#networkInt + 1);
  }

  /** Number of addresses that can be handed out: the subnet minus network, gateway and broadcast. */
  get size(): number {
    return this.#total - 3;
  }

  /** Number of addresses currently held (acquired or reserved). */
  get used(): number {
    return this.#used;
  }

  /**
   * Hands out the next free address, searching from just past the previous one and wrapping
   * around at the end of the subnet.
   * @returns a dotted-quad IPv4 address inside the subnet.
   * @throws ExhaustedError (code `ERR_EXHAUSTED`) when every usable address is held.
   */
  acquire(): string {
    if (this.#used >= this.size) {
      throw new ExhaustedError(
        `address pool ${this.cidr} is exhausted (${this.#used} of ${this.size} usable addresses in use)`,
      );
    }
    const offset = this.#findFree(this.#cursor);
    this.#set(offset);
    this.#used++;
    this.#cursor = offset + 1 === this.#total ? 0 : offset + 1;
    return intToIPv4(this.#networkInt + offset);
  }

  /**
   * Returns an address to the pool. Releasing an address that is not held (never acquired,
   * already released, or the network/gateway/broadcast address) does nothing, so a retried
   * clean-up is harmless. The cursor does not move back: the address is reused only after a wrap.
   * @returns true when the address was held and is now free.
   * @throws ValidationError (field `ip`) when `ip` is not an IPv4 address or lies outside the subnet.
   */
  release(ip: string): boolean {
    const offset = this.#offsetOf(ip);
    if (!this.#usable(offset) || !this.#get(offset)) return false;
    this.#clear(offset);
    this.#used--;
    return true;
  }

  /**
   * Marks a specific address as held, e.g. one recorded in durable state before a restart.
   * Does not move the cursor.
   * @throws ValidationError (field `ip`) when `ip` is not an IPv4 address, lies outside the subnet,
   *   or is the network, gateway or broadcast address.
   * @throws ConflictError when the address is already held.
   */
  reserve(ip: string): void {
    const offset = this.#offsetOf(ip);
    if (!this.#usable(offset)) {
      const what = offset === 0 ? "network" : offset === 1 ? "gateway" : "broadcast";
      throw new ValidationError("ip", `${ip} is the ${what} address of ${this.cidr}`, "ERR_INVALID_ADDRESS");
    }
    if (this.#get(offset)) {
      throw new ConflictError(`address ${ip} of ${this.cidr} is already in use`);
    }
    this.#set(offset);
    this.#used++;
  }

  /**
   * True when `ip` is currently held. Addresses outside the subnet, and the network, gateway and
   * broadcast addresses, are never held.
   * @throws ValidationError (field `ip`) when `ip` is not an IPv4 address.
   */
  has(ip: string): boolean {
    const n = ipv4ToInt(validateIPv4(ip, "ip"));
    if ((n & this.#mask) >>> 0 !== this.#networkInt) return false;
    const offset = n - this.#networkInt;
    return this.#usable(offset) && this.#get(offset);
  }

  #offsetOf(ip: string): number {
    const n = ipv4ToInt(validateIPv4(ip, "ip"));
    if ((n & this.#mask) >>> 0 !== this.#networkInt) {
      throw new ValidationError("ip", `${ip} is outside ${this.cidr}`, "ERR_INVALID_ADDRESS");
    }
    return n - this.#networkInt;
  }

  #usable(offset: number): boolean {
    return offset >= 2 && offset < this.#total - 1;
  }

  /**
   * First clear bit at or after `from`, wrapping around. Walks whole words, so full stretches
   * cost one read per 32 addresses. The caller guarantees a clear bit exists.
   */
  #findFree(from: number): number {
    const words = this.#bits.length;
    let w = from >>> 5;
    const below = from & 31;
    // On the first word, pretend the bits before `from` are taken; they are seen again after the wrap.
    let word = ((this.#bits[w] as number) | (below === 0 ? 0 : FULL >>> (32 - below))) >>> 0;
    for (let seen = 0; seen <= words; seen++) {
      if (word !== FULL) {
        const free = ~word >>> 0;
        return (w << 5) + (31 - Math.clz32(free & -free));
      }
      w = w + 1 === words ? 0 : w + 1;
      word = this.#bits[w] as number;
    }
    throw new Error(`IPAM ${this.cidr}: bitmap full although ${this.#used} < ${this.size}`);
  }

  #get(offset: number): boolean {
    return (((this.#bits[offset >>> 5] as number) >>> (offset & 31)) & 1) === 1;
  }

  #set(offset: number): void {
    const w = offset >>> 5;
    this.#bits[w] = ((this.#bits[w] as number) | (1 << (offset & 31))) >>> 0;
  }

  #clear(offset: number): void {
    const w = offset >>> 5;
    this.#bits[w] = ((this.#bits[w] as number) & ~(1 << (offset & 31))) >>> 0;
  }
}
