/**
 * TAP devices through ioctls on `/dev/net/tun` (creation is ioctl-only: rtnetlink answers
 * "tun/tap creation via rtnetlink is not supported", GUIDE §3). Everything after creation (address,
 * MTU, up, delete) is netlink's job.
 *
 * Constants come from include/uapi/linux/if_tun.h; the ioctl numbers are its `_IOW('T', n, int)` /
 * `_IOR('T', n, unsigned int)` expanded with include/uapi/asm-generic/ioctl.h
 * (dir << 30 | size << 16 | type << 8 | nr, with size = 4, type = 'T' = 0x54).
 */
import { endianness } from "node:os";
import { AlreadyExistsError, KernelError } from "../core/errors.js";
import { validateId, validateIfName } from "../core/validate.js";
import { O_CLOEXEC, O_NONBLOCK, O_RDWR, sysClose, sysIoctlInt, sysIoctlPtr, sysOpen } from "./ffi.js";

const IOC_WRITE = 1;
const IOC_READ = 2;
const ioc = (dir: number, nr: number): number => ((dir << 30) | (4 << 16) | (0x54 << 8) | nr) >>> 0;

/** `_IOW('T', 202, int)` = 0x400454ca. */
export const TUNSETIFF = ioc(IOC_WRITE, 202);
/** `_IOW('T', 203, int)` = 0x400454cb. */
export const TUNSETPERSIST = ioc(IOC_WRITE, 203);
/** `_IOW('T', 204, int)` = 0x400454cc. */
export const TUNSETOWNER = ioc(IOC_WRITE, 204);
/** `_IOW('T', 206, int)` = 0x400454ce. */
export const TUNSETGROUP = ioc(IOC_WRITE, 206);
/** `_IOR('T', 210, unsigned int)` = 0x800454d2. */
export const TUNGETIFF = ioc(IOC_READ, 210);

/** if_tun.h flag bits (`ifr_flags`). */
export const IFF_TAP = 0x0002;
export const IFF_MULTI_QUEUE = 0x0100;
export const IFF_PERSIST = 0x0800;
export const IFF_NO_PI = 0x1000;
export const IFF_VNET_HDR = 0x4000;
export const IFF_TUN_EXCL = 0x8000;

/** `sizeof(struct ifreq)` on 64-bit Linux: `ifr_name[IFNAMSIZ=16]` then a 24-byte union. */
const IFREQ_SIZE = 40;
const IFREQ_FLAGS_OFFSET = 16;
const TUN_PATH = "/dev/net/tun";
const EBUSY = 16;
const ENODEV = 19;
const LITTLE_ENDIAN = endianness() === "LE";

/** A `struct ifreq` holding `name` (NUL-terminated) and `ifr_flags` (a native-endian short). */
export function encodeIfreq(name: string, flags: number): Buffer {
  const buf = Buffer.alloc(IFREQ_SIZE);
  buf.write(name, 0, "utf8");
  if (LITTLE_ENDIAN) buf.writeUInt16LE(flags, IFREQ_FLAGS_OFFSET);
  else buf.writeUInt16BE(flags, IFREQ_FLAGS_OFFSET);
  return buf;
}

function ifreqFlags(buf: Buffer): number {
  return LITTLE_ENDIAN ? buf.readUInt16LE(IFREQ_FLAGS_OFFSET) : buf.readUInt16BE(IFREQ_FLAGS_OFFSET);
}

/** Options of {@link tapCreate}. */
export interface TapCreateOptions {
  /** Interface name, 1–15 bytes of `[A-Za-z0-9_.-]` (see validateIfName). */
  name: string;
  /**
   * Owner uid (the VMM's / jailer's uid). A caller without CAP_NET_ADMIN must match the owner when
   * one is set, and the group when one is set: both, not either (drivers/net/tun.c `tun_not_capable`).
   */
  uid?: number | undefined;
  /** Group gid; see `uid` for how the two combine. */
  gid?: number | undefined;
  /** Set IFF_VNET_HDR, as Firecracker requires (default true). */
  vnetHdr?: boolean | undefined;
}

/**
 * Creates a persistent, single-queue TAP the way a Firecracker VMM will later open it:
 * `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, never `IFF_MULTI_QUEUE` (Firecracker's `Tap::open_named`,
 * src/vmm/src/devices/virtio/net/tap.rs, opens single-queue; a queue-mode mismatch makes its
 * TUNSETIFF fail with EINVAL). Sequence: open → TUNSETIFF (+ `IFF_TUN_EXCL`) → TUNSETOWNER /
 * TUNSETGROUP (when given) → TUNSETPERSIST(1) → close. The device is left down, with no address.
 *
 * Rollback: until TUNSETPERSIST succeeds the device lives only as long as our descriptor
 * (drivers/net/tun.c, `tun_detach` unregisters a non-persistent device when its last queue closes),
 * so a failure after TUNSETIFF is undone by the `close` in `finally`. Tested in test/kernel/tun.test.ts.
 *
 * @throws ValidationError for a bad name, uid or gid, before any syscall.
 * @throws AlreadyExistsError when a link of that name exists (TUNSETIFF with `IFF_TUN_EXCL` gives
 *   EBUSY; without it the kernel would silently attach to the existing device). That device is untouched.
 * @throws KernelError otherwise; `isPermission` is true for EPERM/EACCES (no CAP_NET_ADMIN, or
 *   `/dev/net/tun` not usable). EINVAL from TUNSETOWNER/TUNSETGROUP means the id has no mapping in
 *   the caller's user namespace (tun.c converts it with `make_kuid`), e.g. under rootless `unshare -r`.
 */
export function tapCreate(options: TapCreateOptions): void {
  const fd = tapCreateOpen(options);
  try {
    tapPersist(fd, options.name);
  } finally {
    sysClose(fd);
  }
}

/**
 * The first half of {@link tapCreate}: open → TUNSETIFF (+ `IFF_TUN_EXCL`) → TUNSETOWNER /
 * TUNSETGROUP, and returns the descriptor of a TAP that is **not yet persistent**. The caller
 * configures the device (mark, address, up) and then calls {@link tapPersist}; closing the
 * descriptor before that removes the device again (drivers/net/tun.c `tun_detach`), so a failure —
 * or the process being killed — at any step before persisting leaves nothing behind.
 * @returns the open descriptor; close it with {@link tapClose} in every case.
 * @throws as {@link tapCreate}.
 */
export function tapCreateOpen(options: TapCreateOptions): number {
  const name = validateIfName(options.name);
  const uid = options.uid === undefined ? undefined : validateId(options.uid, "uid");
  const gid = options.gid === undefined ? undefined : validateId(options.gid, "gid");
  const vnetHdr = options.vnetHdr ?? true;
  const context = `creating TAP ${name}`;
  const flags = IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL | (vnetHdr ? IFF_VNET_HDR : 0);

  const fd = sysOpen(TUN_PATH, O_RDWR | O_CLOEXEC, context);
  try {
    try {
      sysIoctlPtr(fd, TUNSETIFF, encodeIfreq(name, flags), "TUNSETIFF", context);
    } catch (err) {
      if (err instanceof KernelError && err.errno === EBUSY) {
        throw new AlreadyExistsError(`a network interface named ${name} already exists`, { cause: err });
      }
      throw err;
    }
    if (uid !== undefined) sysIoctlInt(fd, TUNSETOWNER, uid, "TUNSETOWNER", context);
    if (gid !== undefined) sysIoctlInt(fd, TUNSETGROUP, gid, "TUNSETGROUP", context);
    return fd;
  } catch (err) {
    sysClose(fd);
    throw err;
  }
}

/**
 * TUNSETPERSIST(1) on a descriptor from {@link tapCreateOpen}: from now on the TAP outlives the
 * descriptor (and the process) until it is deleted.
 * @throws KernelError.
 */
export function tapPersist(fd: number, name: string): void {
  sysIoctlInt(fd, TUNSETPERSIST, 1, "TUNSETPERSIST", `creating TAP ${name}`);
}

/** Options of {@link tapOpen}. */
export interface TapOpenOptions {
  /** Open with O_NONBLOCK (read then returns -1 when empty; use `koffi.node.poll`). Default false. */
  nonBlocking?: boolean | undefined;
}

/**
 * Attaches to an existing persistent TAP exactly as a VMM does (Firecracker's `Tap::open_named`:
 * `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, no `IFF_TUN_EXCL`, no multi-queue), and returns the
 * descriptor. Each `read` yields one frame prefixed by a 10-byte `struct virtio_net_hdr` (the
 * kernel's default vnet header size; nobody calls TUNSETVNETHDRSZ); each `write` must carry one.
 *
 * Without CAP_NET_ADMIN the kernel allows this only to a caller matching the TAP's owner uid (when
 * set) AND its group (when set; effective or supplementary gid), otherwise EPERM
 * (drivers/net/tun.c, `tun_not_capable`). With CAP_NET_ADMIN, TUNSETIFF on a
 * missing name would create a transient TAP: that case is detected (TUNGETIFF shows no
 * IFF_PERSIST), the descriptor closed (which removes the transient device) and ENODEV thrown.
 *
 * @returns the file descriptor; close it with {@link tapClose}.
 * @throws ValidationError for a bad name.
 * @throws KernelError: EPERM (`isPermission`) for a caller who is neither owner, group nor
 *   CAP_NET_ADMIN; EINVAL when the TAP's flags differ (e.g. multi-queue); EBUSY when another
 *   process has it open; ENODEV when no TAP of that name exists.
 */
export function tapOpen(name: string, options: TapOpenOptions = {}): number {
  validateIfName(name);
  const context = `opening TAP ${name}`;
  const fd = sysOpen(TUN_PATH, O_RDWR | O_CLOEXEC | (options.nonBlocking ? O_NONBLOCK : 0), context);
  try {
    sysIoctlPtr(fd, TUNSETIFF, encodeIfreq(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), "TUNSETIFF", context);
    const back = Buffer.alloc(IFREQ_SIZE);
    sysIoctlPtr(fd, TUNGETIFF, back, "TUNGETIFF", context);
    if ((ifreqFlags(back) & IFF_PERSIST) === 0) {
      throw new KernelError("ioctl(TUNSETIFF)", ENODEV, `${context}: no persistent TAP of that name`);
    }
    return fd;
  } catch (err) {
    sysClose(fd);
    throw err;
  }
}

/** Closes a descriptor returned by {@link tapOpen}; the persistent TAP stays. */
export function tapClose(fd: number): void {
  sysClose(fd);
}
