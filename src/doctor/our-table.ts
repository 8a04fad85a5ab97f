/**
 * Read-only look at our nftables table: does it exist, and which chains does it have.
 */
import { type NftApplier, nftErrno } from "../firewall/nft.js";
import { validateTableName } from "../firewall/ruleset.js";

/** What `list table` showed of our table. */
export interface TableView {
  /** Chain names, in nft's order. */
  chains: string[];
}

/**
 * Lists table `ip <table>` (libnftables-json(5) output).
 * @returns undefined when the table does not exist.
 * @throws ValidationError for a bad table name; FirewallError when nft refuses otherwise.
 */
export async function readTable(nft: NftApplier, table: string): Promise<TableView | undefined> {
  const t = validateTableName(table);
  let json: string;
  try {
    json = await nft.run(`list table ip ${t}\n`, { json: true });
  } catch (e) {
    if (nftErrno(e) === "ENOENT") return undefined;
    throw e;
  }
  const items = (JSON.parse(json) as { nftables?: Array<Record<string, { name?: string }>> }).nftables ?? [];
  const chains = items.flatMap((i) => (i.chain?.name ? [i.chain.name] : []));
  return { chains };
}
