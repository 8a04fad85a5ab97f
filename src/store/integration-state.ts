/**
 * The record of what the host-firewall integration inserted into other firewalls' chains (see
 * src/firewall/integrate.ts), so that removal deletes exactly that — also from another process.
 * One file per network namespace next to the bootstrap record, as firewalls are per namespace.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_STATE_DIR, netnsId } from "./bootstrap-state.js";

/** Accept rules inserted into a native nftables chain, by rule handle. */
export interface NftIntegrationEntry {
  kind: "nftables";
  family: string;
  table: string;
  chain: string;
  /** Handles of the rules we inserted (each carries the `microvm-net` comment). */
  handles: number[];
}

/** Accept rules inserted with an iptables tool, by rule specification (what `-D` needs). */
export interface IptablesIntegrationEntry {
  kind: "iptables-nft" | "iptables-legacy";
  table: string;
  chain: string;
  /** Each rule's arguments after `-I <chain>`, e.g. `-m devgroup --src-group 0x6d76 … -j ACCEPT`. */
  rules: string[][];
}

/** One chain's worth of inserted rules. */
export type IntegrationEntry = NftIntegrationEntry | IptablesIntegrationEntry;

/** What the integration recorded. */
export interface IntegrationState {
  /** Format version of this record. */
  version: 1;
  /** TAP group the rules match. */
  tapGroup: number;
  /** In the order they were inserted. */
  entries: IntegrationEntry[];
}

/** Path of the integration record for the current network namespace under `dir`. */
export function integrationStatePath(dir = DEFAULT_STATE_DIR): string {
  return join(dir, `integration-${netnsId()}.json`);
}

/** Reads the record, or undefined when there is none. @throws on a corrupt file (never guessed over). */
export function readIntegrationState(dir = DEFAULT_STATE_DIR): IntegrationState | undefined {
  let text: string;
  try {
    text = readFileSync(integrationStatePath(dir), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  return JSON.parse(text) as IntegrationState;
}

/** Writes the record atomically (temporary file, then rename); an empty record removes the file. */
export function writeIntegrationState(state: IntegrationState, dir = DEFAULT_STATE_DIR): void {
  if (state.entries.length === 0) {
    removeIntegrationState(dir);
    return;
  }
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const path = integrationStatePath(dir);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, path);
}

/** Removes the record; absent is fine. */
export function removeIntegrationState(dir = DEFAULT_STATE_DIR): void {
  rmSync(integrationStatePath(dir), { force: true });
}
