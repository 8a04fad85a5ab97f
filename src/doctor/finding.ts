/**
 * Small constructors for findings, so every check spells severities and ids the same way.
 */
import type { Finding, Severity } from "./types.js";

/** A finding with the given fields; `detail`, `fix` and `data` are left out when undefined. */
export function finding(
  id: string,
  severity: Severity,
  title: string,
  extra: { detail?: string; fix?: string; data?: Record<string, unknown> } = {},
): Finding {
  const f: Finding = { id, severity, title };
  if (extra.detail !== undefined) f.detail = extra.detail;
  if (extra.fix !== undefined) f.fix = extra.fix;
  if (extra.data !== undefined) f.data = extra.data;
  return f;
}

/** The message of anything thrown, for a finding's detail. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) {
    const detail = (e as { detail?: unknown }).detail;
    if (typeof detail !== "string" || !detail.trim()) return e.message;
    // libnftables repeats some errors; nft's caret lines add nothing to a one-line finding.
    const lines = [...new Set(detail.split("\n").map((l) => l.trim()))].filter((l) => l && !/^\^+$/.test(l));
    return `${e.message}: ${lines.join("; ")}`;
  }
  return String(e);
}
