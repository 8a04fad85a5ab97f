/**
 * nf_tables netlink numbers, from include/uapi/linux/netfilter/nfnetlink.h, nf_tables.h and
 * netfilter.h (the values are kernel ABI and never change).
 */

/** `NETLINK_NETFILTER` (linux/netlink.h): the netlink protocol nfnetlink listens on. */
export const NETLINK_NETFILTER = 12;

/** `NFNETLINK_V0`: the only version of `struct nfgenmsg`. */
export const NFNETLINK_V0 = 0;
/** `NFNL_SUBSYS_NFTABLES`: the high byte of every nf_tables message type, and the batch's res_id. */
export const NFNL_SUBSYS_NFTABLES = 10;
/** `NFNL_MSG_BATCH_BEGIN` (= NLMSG_MIN_TYPE): opens a transaction. */
export const NFNL_MSG_BATCH_BEGIN = 0x10;
/** `NFNL_MSG_BATCH_END`: commits it. */
export const NFNL_MSG_BATCH_END = 0x11;
/** `sizeof(struct nfgenmsg)`: u8 nfgen_family, u8 version, __be16 res_id. */
export const NFGENMSG_LEN = 4;

/** `enum nf_tables_msg_types` (the subset we send or receive). */
export const NFT_MSG_NEWSETELEM = 12;
export const NFT_MSG_GETSETELEM = 13;
export const NFT_MSG_DELSETELEM = 14;

/** `enum nft_set_elem_list_attributes`. */
export const NFTA_SET_ELEM_LIST_TABLE = 1;
export const NFTA_SET_ELEM_LIST_SET = 2;
export const NFTA_SET_ELEM_LIST_ELEMENTS = 3;

/** `enum nft_list_attributes`: one element inside NFTA_SET_ELEM_LIST_ELEMENTS. */
export const NFTA_LIST_ELEM = 1;

/** `enum nft_set_elem_attributes`. */
export const NFTA_SET_ELEM_KEY = 1;
export const NFTA_SET_ELEM_DATA = 2;
/** The end of a range in a set of concatenated intervals (nft_set_pipapo); the start is the KEY (after UNSPEC, KEY, DATA, FLAGS, TIMEOUT, EXPIRATION, USERDATA, EXPR, PAD, OBJREF). */
export const NFTA_SET_ELEM_KEY_END = 10;

/** `enum nft_data_attributes`: a plain value (not a verdict). */
export const NFTA_DATA_VALUE = 1;

/** `NFT_REG32_SIZE`: each field of a concatenated key or value starts on a 4-byte boundary. */
export const NFT_REG32_SIZE = 4;
/** `IFNAMSIZ`: an `ifname` field is 16 bytes, NUL padded. */
export const IFNAMSIZ = 16;

/** `enum nfproto` (linux/netfilter.h): table families. */
export const NFPROTO_INET = 1;
export const NFPROTO_IPV4 = 2;
export const NFPROTO_ARP = 3;
export const NFPROTO_NETDEV = 5;
export const NFPROTO_BRIDGE = 7;
export const NFPROTO_IPV6 = 10;

/** `SO_SNDBUF` / `SO_SNDBUFFORCE` (asm-generic/socket.h): room for a large batch in one send. */
export const SO_SNDBUF = 7;
export const SO_SNDBUFFORCE = 32;

/** `nft_type | subsys << 8`: the nlmsg_type of an nf_tables message. */
export function nftType(msg: number): number {
  return (NFNL_SUBSYS_NFTABLES << 8) | msg;
}
