import { constants } from "node:os";

/**
 * Base class of every error this library throws on purpose. `code` is stable across releases and
 * safe to switch on; `message` is for humans and may change.
 */
export class MvnetError extends Error {
  /** Stable, machine-readable code, e.g. `ERR_INVALID_NAME`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * Bad input, detected before anything in the kernel was touched.
 * `field` names the offending argument (`name`, `port`, `protocol`, `cidr`, …).
 */
export class ValidationError extends MvnetError {
  readonly field: string;

  constructor(field: string, message: string, code = "ERR_INVALID_ARGUMENT") {
    super(code, `invalid ${field}: ${message}`);
    this.field = field;
  }
}

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, value]) => [value, name] as [number, string]),
);

/** Name of a positive errno value (`17` → `EEXIST`), or `E<n>` when unknown. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

/**
 * The kernel refused a request. `errno` is the positive errno value, `code` its name (`EEXIST`,
 * `EPERM`, …), `syscall` what was attempted (`ioctl(TUNSETIFF)`, `RTM_NEWADDR`, …) and
 * `kernelMessage` the extended-ack text the kernel attached, when it sent one.
 */
export class KernelError extends MvnetError {
  readonly errno: number;
  readonly syscall: string;
  readonly kernelMessage: string | undefined;

  constructor(syscall: string, errno: number, context: string, kernelMessage?: string) {
    const name = errnoName(errno);
    const detail = kernelMessage ? `${name}: ${kernelMessage}` : name;
    super(name, `${context}: ${syscall} failed: ${detail}`);
    this.errno = errno;
    this.syscall = syscall;
    this.kernelMessage = kernelMessage;
  }

  /** True when the kernel said the caller lacks privileges (EPERM or EACCES). */
  get isPermission(): boolean {
    return this.errno === constants.errno.EPERM || this.errno === constants.errno.EACCES;
  }
}

/** An object with that name already exists (a TAP, an address); the existing one was left untouched. */
export class AlreadyExistsError extends MvnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_ALREADY_EXISTS", message, options);
  }
}

/** The device exists but was not made by this library, so it is left alone. */
export class NotOursError extends MvnetError {
  constructor(message: string) {
    super("ERR_NOT_OURS", message);
  }
}

/** A host port (or address) is already taken by someone else; `owner` describes who, when known. */
export class ConflictError extends MvnetError {
  readonly owner: string | undefined;

  constructor(message: string, owner?: string) {
    super("ERR_CONFLICT", message);
    this.owner = owner;
  }
}

/** A pool (addresses, ports) has nothing left to hand out. */
export class ExhaustedError extends MvnetError {
  constructor(message: string) {
    super("ERR_EXHAUSTED", message);
  }
}

/** nftables refused a transaction; nothing of it was applied. `detail` is nft's own error text. */
export class FirewallError extends MvnetError {
  readonly detail: string;

  constructor(message: string, detail: string) {
    super("ERR_FIREWALL", `${message}: ${detail.trim()}`);
    this.detail = detail;
  }
}

/** Something this library needs is missing on the host (a library, a device node, a privilege). */
export class UnsupportedError extends MvnetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_UNSUPPORTED", message, options);
  }
}
