/** A short, safe description of a received value for validation messages ("missing", "an array", "\"x\""). */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string')
    return value.length > 40 ? `a ${value.length}-character string` : JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  // What is left: an object, a function, a symbol or a bigint.
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
