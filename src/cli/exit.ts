import { FirewallError, KernelError, MvnetError, ValidationError } from "../core/errors.js";

/** Exit codes of `mvnet`: stable, documented in the README. */
export const EXIT = { ok: 0, failed: 1, usage: 2, permission: 3 } as const;

/**
 * Prints an error the way a user needs it (with the kernel's own words) and returns the exit code:
 * 2 for bad input, 3 for missing privileges, 1 for anything else.
 */
export function reportError(e: unknown, json: boolean): number {
  const permission =
    (e instanceof KernelError && e.isPermission) ||
    (e instanceof FirewallError && /Operation not permitted|Permission denied/.test(e.detail)) ||
    (e as NodeJS.ErrnoException)?.code === "EACCES";
  const code = e instanceof ValidationError ? EXIT.usage : permission ? EXIT.permission : EXIT.failed;
  const message = e instanceof Error ? e.message : String(e);
  const hint = permission ? " (mvnet needs root or CAP_NET_ADMIN in the target network namespace)" : "";
  if (json) {
    const errCode = e instanceof MvnetError ? e.code : ((e as NodeJS.ErrnoException)?.code ?? "ERR_UNKNOWN");
    process.stderr.write(`${JSON.stringify({ error: { code: errCode, message: message + hint } })}\n`);
  } else {
    process.stderr.write(`mvnet: ${message}${hint}\n`);
    if (!(e instanceof MvnetError) && e instanceof Error && process.env.MVNET_DEBUG) {
      process.stderr.write(`${e.stack}\n`);
    }
  }
  return code;
}
