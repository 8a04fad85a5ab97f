/** Errno checks on the KernelErrors HostNetwork meets (a TAP or port gone or taken meanwhile). */
import { KernelError } from "../core/errors.js";

/** True when `e` is a KernelError with this errno (os.constants.errno). */
export function isErrno(e: unknown, errno: number): boolean {
  return e instanceof KernelError && e.errno === errno;
}
