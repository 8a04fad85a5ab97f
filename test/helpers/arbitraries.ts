// fast-check arbitraries shared by the property tests (test/unit/property-pure, test/kernel/property-api,
// test/kernel/property-cli).
import fc from "fast-check";

/** 0–255. */
export const octet = fc.integer({ min: 0, max: 255 });

/** Any dotted quad, canonical. */
export const anyIPv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join("."));

/** Unicast host addresses: not 0.0.0.0, not 127/8, not 224/3. */
export const unicastIPv4 = fc
  .tuple(fc.integer({ min: 1, max: 223 }), octet, octet, fc.integer({ min: 1, max: 254 }))
  .filter(([a]) => a !== 127)
  .map((o) => o.join("."));

/**
 * Values of any type, BigInts and objects without a prototype included (their error path once threw
 * TypeError: JSON.stringify(10n), String(Object.create(null))).
 */
export const anything = fc.anything({
  withBigInt: true,
  withNullPrototype: true,
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withSet: true,
  withTypedArray: true,
  withSparseArray: true,
});
