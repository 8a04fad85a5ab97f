/**
 * Pure encoder/decoder of nf_tables set-element messages (no I/O): the typed fields of a key or a
 * value, NFT_MSG_NEWSETELEM / DELSETELEM / GETSETELEM, and the NFNL_MSG_BATCH_BEGIN … END frame that
 * makes a list of them one transaction. Layouts: include/uapi/linux/netfilter/nf_tables.h and
 * nfnetlink.h; the kernel side is nf_tables_newsetelem() / nft_add_set_elem() in
 * net/netfilter/nf_tables_api.c. The bytes match what `nft --debug=mnl` shows for the same command
 * (test/unit/nftnl-elements.test.ts), except that we send no NFTA_SET_ELEM_LIST_SET_ID (the kernel
 * finds the set by name; the id only names a set created in the same batch).
 */
import { ValidationError } from "../../core/errors.js";
import { validateIfName } from "../../core/validate.js";
import {
  align,
  attr,
  attrNested,
  attrString,
  decodeAttrs,
  encodeMessage,
  ipv4Bytes,
  type NlMsg,
} from "../netlink/codec.js";
import { NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_HDRLEN } from "../netlink/constants.js";
import {
  IFNAMSIZ,
  NFGENMSG_LEN,
  NFNETLINK_V0,
  NFNL_MSG_BATCH_BEGIN,
  NFNL_MSG_BATCH_END,
  NFNL_SUBSYS_NFTABLES,
  NFT_MSG_DELSETELEM,
  NFT_MSG_GETSETELEM,
  NFT_MSG_NEWSETELEM,
  NFT_REG32_SIZE,
  NFTA_DATA_VALUE,
  NFTA_LIST_ELEM,
  NFTA_SET_ELEM_DATA,
  NFTA_SET_ELEM_KEY,
  NFTA_SET_ELEM_KEY_END,
  NFTA_SET_ELEM_LIST_ELEMENTS,
  NFTA_SET_ELEM_LIST_SET,
  NFTA_SET_ELEM_LIST_TABLE,
  nftType,
} from "./constants.js";

/**
 * One field of a set key or map value, named after its nft type (nft(8) "DATA TYPES"):
 * - `inet_proto`: an IP protocol number (6 tcp, 17 udp), 1 byte;
 * - `ipv4_addr`: `a.b.c.d`, 4 bytes in network order;
 * - `inet_service`: a port 0–65535, 2 bytes in network order;
 * - `ifname`: an interface name (1–15 bytes), 16 bytes NUL padded;
 * - `ether_addr`: `aa:bb:cc:dd:ee:ff`, 6 bytes;
 * - `mark`: a 32-bit packet mark, host byte order (as `meta mark` loads it);
 * - `iface_index`: an interface index, 32 bits in host byte order (as `meta iif` loads it).
 */
export type ElemField =
  | { type: "inet_proto"; value: number }
  | { type: "ipv4_addr"; value: string }
  | { type: "inet_service"; value: number }
  | { type: "ifname"; value: string }
  | { type: "ether_addr"; value: string }
  | { type: "mark"; value: number }
  | { type: "iface_index"; value: number };

/** The nft type of a field. */
export type FieldType = ElemField["type"];

/** Bytes of each field type, unpadded. */
const FIELD_BYTES: Record<FieldType, number> = {
  inet_proto: 1,
  ipv4_addr: 4,
  inet_service: 2,
  ifname: IFNAMSIZ,
  ether_addr: 6,
  mark: 4,
  iface_index: 4,
};

/** Which set: table family (NFPROTO_*, e.g. NFPROTO_IPV4 for `table ip`), table name, set or map name. */
export interface SetRef {
  family: number;
  table: string;
  set: string;
}

/**
 * An element: its key, and for a map its value (both as typed fields, in the set's declared order).
 * In a set of concatenated intervals (`flags interval` over a concatenation: nft_set_pipapo) `key`
 * is the start of each field's range and `keyEnd` its end (NFTA_SET_ELEM_KEY_END, sent for deletes
 * too: it is part of the element's identity); an exact value there has `keyEnd` equal to `key`.
 */
export interface SetElem {
  key: readonly ElemField[];
  keyEnd?: readonly ElemField[];
  data?: readonly ElemField[];
}

/**
 * One change of a transaction:
 * - `create`: NEWSETELEM with NLM_F_CREATE | NLM_F_EXCL — EEXIST when the key is there at all;
 * - `add`: NEWSETELEM with NLM_F_CREATE — a no-op when the identical element is there, EEXIST when
 *   the key is there with another value (nft_add_set_elem(): `nft_set_ext_exists(… DATA)` and
 *   `memcmp` of the data, then `-EEXIST` only under NLM_F_EXCL or on a data mismatch);
 * - `delete`: DELSETELEM — ENOENT when the key is absent. Only the key is sent.
 */
export interface ElemChange {
  op: "create" | "add" | "delete";
  set: SetRef;
  elems: readonly SetElem[];
}

function uint(v: unknown, max: number, field: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) {
    throw new ValidationError(field, `must be an integer 0–${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * The bytes of one field, unpadded.
 * @throws ValidationError (field `elem.<type>`) for a value out of range or malformed.
 */
export function fieldBytes(f: ElemField): Buffer {
  const name = `elem.${f.type}`;
  switch (f.type) {
    case "inet_proto":
      return Buffer.from([uint(f.value, 0xff, name)]);
    case "ipv4_addr":
      return ipv4Bytes(f.value, name);
    case "inet_service": {
      const b = Buffer.alloc(2);
      b.writeUInt16BE(uint(f.value, 0xffff, name));
      return b;
    }
    case "ifname": {
      const b = Buffer.alloc(IFNAMSIZ);
      b.write(validateIfName(f.value, name), "utf8");
      return b;
    }
    case "ether_addr":
      // Any address, multicast too: a set may well match those (codec's macBytes refuses them).
      if (typeof f.value !== "string" || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(f.value)) {
        throw new ValidationError(name, `${JSON.stringify(f.value)} is not a MAC such as 02:00:00:00:00:01`);
      }
      return Buffer.from(f.value.split(":").map((x) => Number.parseInt(x, 16)));
    case "mark":
    case "iface_index": {
      const b = Buffer.alloc(4);
      // Host byte order, as the kernel's meta expressions load them (little-endian: socket.ts refuses others).
      b.writeUInt32LE(uint(f.value, 0xffffffff, name));
      return b;
    }
    default:
      throw new ValidationError(
        "elem",
        `unknown field type ${JSON.stringify((f as { type: unknown }).type)}`,
      );
  }
}

/**
 * A key or value as the kernel stores it: a single field as is (`inet_service` → 2 bytes), a
 * concatenation with each field zero-padded to NFT_REG32_SIZE (nft's concat types; the set's klen
 * is the padded sum, nft_set_desc_concat() in nf_tables_api.c).
 * @throws ValidationError for an empty list or a bad field.
 */
export function encodeFields(fields: readonly ElemField[]): Buffer {
  if (fields.length === 0) throw new ValidationError("elem", "a key or value needs at least one field");
  if (fields.length === 1) return fieldBytes(fields[0] as ElemField);
  const parts = fields.map(fieldBytes);
  const out = Buffer.alloc(parts.reduce((n, p) => n + align(p.length), 0));
  let off = 0;
  for (const p of parts) {
    p.copy(out, off);
    off += align(p.length);
  }
  return out;
}

/** Length in bytes of a key or value made of `types` (see {@link encodeFields}). */
export function fieldsLength(types: readonly FieldType[]): number {
  if (types.length === 1) return FIELD_BYTES[types[0] as FieldType];
  return types.reduce((n, t) => n + Math.ceil(FIELD_BYTES[t] / NFT_REG32_SIZE) * NFT_REG32_SIZE, 0);
}

function decodeField(type: FieldType, b: Buffer): ElemField {
  switch (type) {
    case "inet_proto":
      return { type, value: b.readUInt8(0) };
    case "ipv4_addr":
      return { type, value: `${b[0]}.${b[1]}.${b[2]}.${b[3]}` };
    case "inet_service":
      return { type, value: b.readUInt16BE(0) };
    case "ifname": {
      const nul = b.indexOf(0);
      return { type, value: b.toString("utf8", 0, nul === -1 ? b.length : nul) };
    }
    case "ether_addr":
      return { type, value: [...b.subarray(0, 6)].map((x) => x.toString(16).padStart(2, "0")).join(":") };
    case "mark":
    case "iface_index":
      return { type, value: b.readUInt32LE(0) };
  }
}

/**
 * Reads a key or value back into typed fields, the inverse of {@link encodeFields}.
 * @throws ValidationError (field `elem`) when the length does not match `types`.
 */
export function decodeFields(types: readonly FieldType[], bytes: Buffer): ElemField[] {
  if (types.length === 0 || bytes.length !== fieldsLength(types)) {
    throw new ValidationError("elem", `${bytes.length} bytes do not hold ${types.join(" . ")}`);
  }
  if (types.length === 1) return [decodeField(types[0] as FieldType, bytes)];
  const out: ElemField[] = [];
  let off = 0;
  for (const t of types) {
    out.push(decodeField(t, bytes.subarray(off, off + FIELD_BYTES[t])));
    off += Math.ceil(FIELD_BYTES[t] / NFT_REG32_SIZE) * NFT_REG32_SIZE;
  }
  return out;
}

/** `struct nfgenmsg`: family, NFNETLINK_V0, res_id in network order. */
export function nfgenmsg(family: number, resId = 0): Buffer {
  const b = Buffer.alloc(NFGENMSG_LEN);
  b.writeUInt8(family, 0);
  b.writeUInt8(NFNETLINK_V0, 1);
  b.writeUInt16BE(resId, 2);
  return b;
}

/** NFT_NAME_MAXLEN is 256 including the NUL (nf_tables.h). */
function checkName(v: string, field: string): string {
  if (typeof v !== "string" || v.length === 0 || Buffer.byteLength(v) > 255 || v.includes("\0")) {
    throw new ValidationError(field, "must be 1–255 bytes without NUL");
  }
  return v;
}

/** NFTA_SET_ELEM_KEY / _DATA: a nest holding one NFTA_DATA_VALUE. libmnl marks nests NLA_F_NESTED. */
function dataNest(type: number, value: Buffer): Buffer {
  return attrNested(type, [attr(NFTA_DATA_VALUE, value)]);
}

/** One NFTA_LIST_ELEM from already encoded key, value and range-end bytes (nft's attribute order). */
function elemAttr(key: Buffer, data?: Buffer, keyEnd?: Buffer): Buffer {
  const parts = [dataNest(NFTA_SET_ELEM_KEY, key)];
  if (keyEnd) parts.push(dataNest(NFTA_SET_ELEM_KEY_END, keyEnd));
  if (data) parts.push(dataNest(NFTA_SET_ELEM_DATA, data));
  return attrNested(NFTA_LIST_ELEM, parts);
}

/** The element list attribute's length is a u16: keep each message's list well under it. */
const MAX_ELEMENTS_BYTES = 60_000;

/**
 * The bodies (nfgenmsg + attributes) of NEWSETELEM/DELSETELEM/GETSETELEM messages for `elems`,
 * split over as many messages as the 64 KiB attribute limit needs (one for a few hundred elements).
 * `withData` false sends keys only (delete, get).
 * @throws ValidationError for a bad name or field (before anything is sent).
 */
export function setElemBodies(set: SetRef, elems: readonly SetElem[], withData: boolean): Buffer[] {
  const head = Buffer.concat([
    nfgenmsg(uint(set.family, 0xff, "set.family")),
    attrString(NFTA_SET_ELEM_LIST_TABLE, checkName(set.table, "set.table")),
    attrString(NFTA_SET_ELEM_LIST_SET, checkName(set.set, "set.set")),
  ]);
  if (elems.length === 0) throw new ValidationError("elems", "at least one element is needed");
  const encoded = elems.map((e) =>
    elemAttr(
      encodeFields(e.key),
      withData && e.data ? encodeFields(e.data) : undefined,
      e.keyEnd ? encodeFields(e.keyEnd) : undefined,
    ),
  );
  const bodies: Buffer[] = [];
  let chunk: Buffer[] = [];
  let size = 0;
  const flush = () => {
    bodies.push(Buffer.concat([head, attrNested(NFTA_SET_ELEM_LIST_ELEMENTS, chunk)]));
    chunk = [];
    size = 0;
  };
  for (const e of encoded) {
    if (size + e.length > MAX_ELEMENTS_BYTES && chunk.length > 0) flush();
    chunk.push(e);
    size += e.length;
  }
  flush();
  return bodies;
}

/**
 * nlmsg_flags of a change's messages, without NLM_F_ACK: {@link encodeElemBatch} asks for an ACK on
 * the last one only. A refusal is reported whether or not its message asked for an ACK, and the
 * answers come in message order (`if (nlh->nlmsg_flags & NLM_F_ACK || err) nfnl_err_add(…)` in
 * nfnetlink_rcv_batch(), net/netfilter/nfnetlink.c, delivered in one list once the batch is done), so
 * one ACK confirms the whole batch: one answer to read instead of one per message.
 */
export function changeFlags(op: ElemChange["op"]): number {
  if (op === "create") return NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL;
  if (op === "add") return NLM_F_REQUEST | NLM_F_CREATE;
  return NLM_F_REQUEST;
}

/** An encoded transaction and the sequence numbers it used. */
export interface EncodedBatch {
  /** BEGIN, the changes' messages, END — one datagram. */
  buf: Buffer;
  /** Sequence number of BEGIN (a failed commit is reported against it) … of END. */
  firstSeq: number;
  lastSeq: number;
}

/**
 * Frames `changes` as one nf_tables transaction: NFNL_MSG_BATCH_BEGIN (family AF_UNSPEC, res_id
 * NFNL_SUBSYS_NFTABLES), one message per change (more for very long element lists), BATCH_END.
 * The kernel applies all of it or nothing (nfnetlink_rcv_batch() in net/netfilter/nfnetlink.c).
 * Sequence numbers run from `firstSeq`, one per message; only the last change asks for an ACK (see
 * {@link changeFlags}).
 * @throws ValidationError for an empty list or a bad change.
 */
export function encodeElemBatch(changes: readonly ElemChange[], firstSeq: number): EncodedBatch {
  if (changes.length === 0) throw new ValidationError("changes", "a transaction needs at least one change");
  let seq = firstSeq >>> 0;
  const next = () => {
    const s = seq;
    seq = (seq + 1) >>> 0;
    return s;
  };
  const msgs: Buffer[] = [
    encodeMessage(
      { type: NFNL_MSG_BATCH_BEGIN, flags: NLM_F_REQUEST, seq: next() },
      nfgenmsg(0, NFNL_SUBSYS_NFTABLES),
    ),
  ];
  const parts: Array<{ type: number; flags: number; body: Buffer }> = [];
  for (const c of changes) {
    const type = nftType(c.op === "delete" ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM);
    if (c.op !== "create" && c.op !== "add" && c.op !== "delete") {
      throw new ValidationError("changes.op", `unknown operation ${JSON.stringify(c.op)}`);
    }
    for (const body of setElemBodies(c.set, c.elems, c.op !== "delete")) {
      parts.push({ type, flags: changeFlags(c.op), body });
    }
  }
  parts.forEach((p, i) => {
    const flags = i === parts.length - 1 ? p.flags | NLM_F_ACK : p.flags;
    msgs.push(encodeMessage({ type: p.type, flags, seq: next() }, p.body));
  });
  const lastSeq = next();
  msgs.push(
    encodeMessage(
      { type: NFNL_MSG_BATCH_END, flags: NLM_F_REQUEST, seq: lastSeq },
      nfgenmsg(0, NFNL_SUBSYS_NFTABLES),
    ),
  );
  return { buf: Buffer.concat(msgs), firstSeq: firstSeq >>> 0, lastSeq };
}

/**
 * Numbers an encoded batch again from `firstSeq`, in place: each message's nlmsg_seq (offset 8 of
 * its header) in order, one apart — what {@link encodeElemBatch} would have written. Lets a caller
 * encode (and validate) before reserving sequence numbers without encoding twice.
 */
export function renumberBatch(batch: EncodedBatch, firstSeq: number): EncodedBatch {
  const { buf } = batch;
  let seq = firstSeq >>> 0;
  let last = seq;
  for (let off = 0; off + NLMSG_HDRLEN <= buf.length; off += align(buf.readUInt32LE(off))) {
    buf.writeUInt32LE(seq, off + 8);
    last = seq;
    seq = (seq + 1) >>> 0;
  }
  return { buf, firstSeq: firstSeq >>> 0, lastSeq: last };
}

/**
 * NFT_MSG_GETSETELEM for one key (not a dump): the kernel answers with an NFT_MSG_NEWSETELEM holding
 * the element, or ENOENT (nft_get_set_elem() in nf_tables_api.c). Reads need no batch.
 * @throws ValidationError for a bad name or field.
 */
export function encodeGetSetElem(set: SetRef, key: readonly ElemField[], seq: number): Buffer {
  const [body] = setElemBodies(set, [{ key }], false);
  return encodeMessage(
    { type: nftType(NFT_MSG_GETSETELEM), flags: NLM_F_REQUEST | NLM_F_ACK, seq },
    body as Buffer,
  );
}

/** An element as the kernel sent it: raw key and value bytes (decode with {@link decodeFields}). */
export interface RawElem {
  key: Buffer;
  data?: Buffer;
}

/**
 * Reads the elements out of an NFT_MSG_NEWSETELEM message (a GETSETELEM answer or a dump part).
 * Elements without a plain key value are skipped; a verdict-map value is left out.
 * @throws MvnetError (`ERR_NETLINK_DECODE`) on malformed attributes.
 */
export function decodeSetElems(msg: NlMsg): { table?: string; set?: string; elems: RawElem[] } {
  const top = decodeAttrs(msg.payload, NFGENMSG_LEN);
  const str = (b?: Buffer) =>
    b ? b.toString("utf8", 0, b.indexOf(0) === -1 ? b.length : b.indexOf(0)) : undefined;
  const out: { table?: string; set?: string; elems: RawElem[] } = { elems: [] };
  const table = str(top.get(NFTA_SET_ELEM_LIST_TABLE));
  const set = str(top.get(NFTA_SET_ELEM_LIST_SET));
  if (table !== undefined) out.table = table;
  if (set !== undefined) out.set = set;
  const list = top.get(NFTA_SET_ELEM_LIST_ELEMENTS);
  if (!list) return out;
  // decodeAttrs keeps one value per type; the list repeats NFTA_LIST_ELEM, so walk it by hand.
  let off = 0;
  while (off + 4 <= list.length) {
    const len = list.readUInt16LE(off);
    if (len < 4 || off + len > list.length) break;
    const e = decodeAttrs(list.subarray(off + 4, off + len));
    const key = e.get(NFTA_SET_ELEM_KEY);
    const keyVal = key ? decodeAttrs(key).get(NFTA_DATA_VALUE) : undefined;
    const data = e.get(NFTA_SET_ELEM_DATA);
    const dataVal = data ? decodeAttrs(data).get(NFTA_DATA_VALUE) : undefined;
    if (keyVal)
      out.elems.push(
        dataVal ? { key: Buffer.from(keyVal), data: Buffer.from(dataVal) } : { key: Buffer.from(keyVal) },
      );
    off += align(len);
  }
  return out;
}
