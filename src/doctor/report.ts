/**
 * The doctor's report: its shape, the exit status it implies, and its human form.
 */
import type { Finding, Severity } from "./types.js";

/** What {@link doctor} returns. */
export interface DoctorReport {
  /** True when no finding is "fail". */
  ok: boolean;
  /** Every finding, in check order. */
  findings: Finding[];
}

/** Severity order, worst last. */
const RANK: Record<Severity, number> = { ok: 0, info: 1, warn: 2, fail: 3 };

/** Builds a report from findings: `ok` is false as soon as one finding fails. */
export function makeReport(findings: Finding[]): DoctorReport {
  return { ok: !findings.some((f) => f.severity === "fail"), findings };
}

/** The worst severity in `findings` ("ok" for none). */
export function worstSeverity(findings: readonly Finding[]): Severity {
  return findings.reduce<Severity>((w, f) => (RANK[f.severity] > RANK[w] ? f.severity : w), "ok");
}

/**
 * Exit status of `mvnet doctor`: 1 when a finding is "fail", or with `strict` also when one is
 * "warn"; 0 otherwise ("info" never fails).
 */
export function doctorExitCode(report: DoctorReport, strict = false): 0 | 1 {
  const worst = worstSeverity(report.findings);
  return worst === "fail" || (strict && worst === "warn") ? 1 : 0;
}

/** The mark of each severity in the human report. */
export const MARKS: Record<Severity, string> = { ok: "ok", info: "i", warn: "!", fail: "✗" };

/**
 * The human report: one line per finding, `<mark> <title>  [<id>]` with the mark padded to two
 * columns, then the detail and the fix indented below (each of their lines), then a summary line.
 * With `quiet`, "ok" findings are left out (the summary still counts them).
 */
export function formatReport(report: DoctorReport, quiet = false): string {
  const lines: string[] = [];
  for (const f of report.findings) {
    if (quiet && f.severity === "ok") continue;
    lines.push(`${MARKS[f.severity].padEnd(2)} ${f.title}  [${f.id}]`);
    if (f.detail && f.severity !== "ok") for (const l of f.detail.split("\n")) lines.push(`     ${l}`);
    if (f.fix && f.severity !== "ok") {
      const [first, ...rest] = f.fix.split("\n");
      lines.push(`   fix: ${first}`);
      for (const l of rest) lines.push(`        ${l}`);
    }
  }
  const count = (s: Severity) => report.findings.filter((f) => f.severity === s).length;
  lines.push(
    "",
    `${report.ok ? "healthy" : "problems found"}: ${count("fail")} failed, ${count("warn")} warning(s), ${count("info")} note(s), ${count("ok")} ok`,
  );
  return `${lines.join("\n")}\n`;
}
