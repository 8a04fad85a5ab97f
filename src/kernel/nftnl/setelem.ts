/**
 * Set and map elements of nf_tables through our own netlink messages: one function per kernel
 * operation. A change is one batch (one `send`), a read one request; neither fetches any cache, so
 * the cost does not depend on how many elements, sets or tables exist.
 */
import { KernelError } from "../../core/errors.js";
import type { NlMsg } from "../netlink/codec.js";
import { NFT_MSG_NEWSETELEM, nftType } from "./constants.js";
import {
  decodeFields,
  decodeSetElems,
  type ElemChange,
  type ElemField,
  encodeElemBatch,
  encodeGetSetElem,
  type FieldType,
  type RawElem,
  renumberBatch,
  type SetElem,
  type SetRef,
} from "./elements.js";
import type { NftnlSocket } from "./socket.js";

function describe(set: SetRef): string {
  return `family ${set.family} table ${set.table} set ${set.set}`;
}

/**
 * Applies `changes` as one transaction: all of them, or — when the kernel refuses any — none.
 * @throws ValidationError for a bad name or field (nothing sent); KernelError (`syscall`
 *   `nf_tables transaction`, its message listing the transaction's changes — not which one the kernel
 *   refused) with the errno of the first refusal: EEXIST (`create` of a present key, `add` of a present key with
 *   another value), ENOENT (table, set or — for `delete` — element absent), EINVAL (key or value
 *   length does not match the set), EPERM without CAP_NET_ADMIN.
 */
export function setElemTransaction(sock: NftnlSocket, changes: readonly ElemChange[]): void {
  // Encoded first, with placeholder numbers, so that bad input throws before a number is reserved;
  // then numbered in place (encoding is most of a small transaction's cost).
  const draft = encodeElemBatch(changes, 1);
  const batch = renumberBatch(draft, sock.reserveSeq(draft.lastSeq));
  const what = changes.map((c) => `${c.op} element in ${describe(c.set)}`).join(", ");
  sock.exchange(batch.buf, batch.firstSeq, batch.lastSeq, what, "nf_tables transaction");
}

/**
 * Adds elements in one transaction (NFT_MSG_NEWSETELEM, NLM_F_CREATE). With `exclusive` (nft's
 * `create element`) a present key is EEXIST; without it (`add element`) an identical element is a
 * no-op and a present key with another value is EEXIST.
 * @throws as {@link setElemTransaction}.
 */
export function setElemAdd(
  sock: NftnlSocket,
  set: SetRef,
  elems: readonly SetElem[],
  opts: { exclusive?: boolean } = {},
): void {
  setElemTransaction(sock, [{ op: opts.exclusive ? "create" : "add", set, elems }]);
}

/**
 * Deletes elements by key in one transaction (NFT_MSG_DELSETELEM; values are not compared).
 * @throws as {@link setElemTransaction}; ENOENT when any key is absent (then none is deleted).
 */
export function setElemDel(sock: NftnlSocket, set: SetRef, keys: readonly (readonly ElemField[])[]): void {
  setElemTransaction(sock, [{ op: "delete", set, elems: keys.map((key) => ({ key })) }]);
}

/** The element the kernel holds under `key`, raw; undefined on ENOENT. */
function getRaw(sock: NftnlSocket, set: SetRef, key: readonly ElemField[]): RawElem | undefined {
  const msg = encodeGetSetElem(set, key, 1); // validates before a number is reserved
  const seq = sock.reserveSeq(1);
  msg.writeUInt32LE(seq, 8);
  let msgs: NlMsg[];
  try {
    msgs = sock.exchange(msg, seq, seq, `get element in ${describe(set)}`, "NFT_MSG_GETSETELEM").msgs;
  } catch (e) {
    if (e instanceof KernelError && e.code === "ENOENT") return undefined;
    throw e;
  }
  for (const m of msgs) {
    if (m.type !== nftType(NFT_MSG_NEWSETELEM)) continue;
    const [el] = decodeSetElems(m).elems;
    if (el) return el;
  }
  return undefined;
}

/**
 * Reads one element by key (NFT_MSG_GETSETELEM, not a dump).
 * @param dataTypes the map's value types, to decode the value; omit for a plain set.
 * @returns the element (key as given, value decoded), or undefined when the key, the set or the
 *   table is absent (ENOENT).
 * @throws ValidationError for a bad name or field, or a value that does not match `dataTypes`;
 *   KernelError for any other refusal.
 */
export function setElemGet(
  sock: NftnlSocket,
  set: SetRef,
  key: readonly ElemField[],
  dataTypes?: readonly FieldType[],
): SetElem | undefined {
  const el = getRaw(sock, set, key);
  if (!el) return undefined;
  if (!dataTypes || !el.data) return { key: [...key] };
  return { key: [...key], data: decodeFields(dataTypes, el.data) };
}

/**
 * Like {@link setElemGet} but returns the value's raw bytes, for an exact comparison with
 * `encodeFields(data)`.
 * @returns the value bytes (empty for a plain set), or undefined when absent.
 * @throws as {@link setElemGet}.
 */
export function setElemGetRaw(sock: NftnlSocket, set: SetRef, key: readonly ElemField[]): Buffer | undefined {
  const el = getRaw(sock, set, key);
  return el ? (el.data ?? Buffer.alloc(0)) : undefined;
}
