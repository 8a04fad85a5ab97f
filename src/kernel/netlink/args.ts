/**
 * Argument checks shared by the rtnetlink operations: bad input is refused with a ValidationError
 * before any request is sent.
 */
import { ValidationError } from "../../core/errors.js";

/**
 * An interface index: an integer in 1–2147483647 (`ifi_index` is a C int; 0 means "none" and would
 * turn some requests into group or wildcard operations).
 * @throws ValidationError (code `ERR_INVALID_INDEX`).
 */
export function validateIfIndex(value: unknown, field = "index"): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 0x7fffffff) {
    throw new ValidationError(
      field,
      `${String(value)} is not an interface index (1-2147483647)`,
      "ERR_INVALID_INDEX",
    );
  }
  return value;
}

/**
 * An unsigned 32-bit integer within [min, max].
 * @throws ValidationError (code `ERR_INVALID_ARGUMENT`).
 */
export function validateU32(value: unknown, field: string, min = 0, max = 0xffffffff): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(field, `${String(value)} is not an integer in ${min}-${max}`);
  }
  return value;
}

/**
 * An IPv4 prefix length, 0–32.
 * @throws ValidationError (code `ERR_INVALID_PREFIX`).
 */
export function validatePrefix(value: unknown, field = "prefix"): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 32) {
    throw new ValidationError(
      field,
      `${String(value)} is not an IPv4 prefix length (0-32)`,
      "ERR_INVALID_PREFIX",
    );
  }
  return value;
}
