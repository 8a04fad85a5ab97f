/**
 * Process identity from /proc: a pid alone is reused by the kernel, so a record that names the
 * process working on it also keeps the process's start time (proc(5), /proc/<pid>/stat field 22).
 */
import { readFileSync } from "node:fs";

/** A process as it can be recognised later: its pid and its start time since boot. */
export interface ProcessIdentity {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (`starttime`, clock ticks after boot), as text. */
  start: string;
}

/**
 * The start time of process `pid` (field 22 of /proc/<pid>/stat, proc(5)), or undefined when no
 * such process exists in this pid namespace. The command name (field 2) may hold spaces and
 * parentheses, so fields are counted from the last `)`.
 */
export function processStartTime(pid: number): string | undefined {
  if (!Number.isInteger(pid) || pid < 1) return undefined;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // After ") " come fields 3, 4, …; field 22 is the 20th of them.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return fields[19];
}

/** This process's identity. */
export function selfIdentity(): ProcessIdentity {
  return { pid: process.pid, start: processStartTime(process.pid) ?? "" };
}

/** True when the process that `who` names still runs (same pid and same start time). */
export function isAlive(who: ProcessIdentity): boolean {
  const start = processStartTime(who.pid);
  return start !== undefined && start === who.start;
}
