/**
 * Our own nf_tables netlink client for set and map elements: a synchronous NETLINK_NETFILTER socket
 * (socket.ts), a pure encoder/decoder (elements.ts) and one function per operation (setelem.ts).
 * The ruleset itself stays with libnftables (firewall/nft.ts).
 */
export * from "./constants.js";
export {
  changeFlags,
  decodeFields,
  decodeSetElems,
  type ElemChange,
  type ElemField,
  type EncodedBatch,
  encodeElemBatch,
  encodeFields,
  encodeGetSetElem,
  type FieldType,
  fieldBytes,
  fieldsLength,
  nfgenmsg,
  type RawElem,
  renumberBatch,
  type SetElem,
  type SetRef,
  setElemBodies,
} from "./elements.js";
export { setElemAdd, setElemDel, setElemGet, setElemGetRaw, setElemTransaction } from "./setelem.js";
export { type Answer, defaultNftnlSocket, NftnlSocket } from "./socket.js";
