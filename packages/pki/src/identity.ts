// RFC 5280 upper bound for a commonName (ub-common-name).
const MAX_CN_LENGTH = 64;

/** The CN is the caller's identity at the boundary; refuse values nobody can match on reliably. */
export function assertValidCommonName(cn: string, what = "identity"): void {
  if (typeof cn !== "string" || cn.trim() === "") throw new Error(`${what} must be a non-empty string`);
  if (cn !== cn.trim()) throw new Error(`${what} must not start or end with whitespace: ${JSON.stringify(cn)}`);
  if (cn.length > MAX_CN_LENGTH) throw new Error(`${what} is longer than ${MAX_CN_LENGTH} characters: ${JSON.stringify(cn)}`);
  if (/[\u0000-\u001f\u007f]/.test(cn)) throw new Error(`${what} contains control characters: ${JSON.stringify(cn)}`);
}
