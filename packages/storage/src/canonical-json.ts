/**
 * RFC 8785 JSON Canonicalization Scheme (JCS).
 *
 * Payload identity is decided on these bytes, so two producers that send the
 * same JSON value with different key order or whitespace get the same hash.
 * ECMAScript's JSON.stringify already serializes numbers and strings exactly as
 * RFC 8785 §3.2.2 requires; what JCS adds is recursive key ordering by UTF-16
 * code units and the I-JSON restrictions checked here.
 */
export class CanonicalJsonError extends Error {}

/** Parses JSON text and returns the parsed value and its canonical form. Throws CanonicalJsonError. */
export function canonicalizeJsonText(text: string): string {
  return parseCanonical(text).canonical;
}

export function parseCanonical(text: string): { value: unknown; canonical: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CanonicalJsonError(`not valid JSON: ${(err as Error).message}`);
  }
  // JSON.parse keeps the last of two equal keys: {"a":1,"a":2} would be stored, and hashed, as {"a":2}.
  const repeated = repeatedKey(text);
  if (repeated !== undefined) throw new CanonicalJsonError(`not I-JSON: the key ${JSON.stringify(repeated)} occurs twice in one object (RFC 7493 §2.3)`);
  return { value, canonical: canonicalize(value) };
}

/**
 * The first key that occurs twice in one object of a valid JSON text, compared after
 * unescaping ("a" and "\u0061" are one key), or undefined. A single pass over the text:
 * objects keep the keys seen so far, strings are skipped whole.
 */
export function repeatedKey(text: string): string | undefined {
  // One entry per open container: the keys of an object, null for an array.
  const open: Array<Set<string> | null> = [];
  let expectingKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // "
      // The closing quote: the next one not escaped (preceded by an even number of backslashes).
      let end = text.indexOf('"', i + 1);
      for (;;) {
        let backslashes = 0;
        while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes++;
        if (backslashes % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      const keys = open.at(-1);
      if (expectingKey && keys) {
        const raw = text.slice(i, end + 1);
        const key = raw.includes("\\") ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        if (keys.has(key)) return key;
        keys.add(key);
        expectingKey = false;
      }
      i = end;
    } else if (c === 0x7b) { // {
      open.push(new Set());
      expectingKey = true;
    } else if (c === 0x5b) { // [
      open.push(null);
      expectingKey = false;
    } else if (c === 0x7d || c === 0x5d) { // } ]
      open.pop();
      expectingKey = false;
    } else if (c === 0x2c) { // ,
      expectingKey = open.length > 0 && open[open.length - 1] !== null;
    }
  }
  return undefined;
}

/** The canonical form of a JSON-compatible value. */
export function canonicalize(value: unknown): string {
  switch (typeof value) {
    case "string":
      return serializeString(value);
    case "number":
      if (!Number.isFinite(value)) throw new CanonicalJsonError("numbers must be finite");
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "object": {
      if (value === null) return "null";
      if (Array.isArray(value)) {
        let out = "[";
        for (let i = 0; i < value.length; i++) out += (i === 0 ? "" : ",") + canonicalize(value[i]);
        return `${out}]`;
      }
      const record = value as Record<string, unknown>;
      // Array.prototype.sort compares UTF-16 code units, which is what RFC 8785 §3.2.3 asks for.
      const keys = Object.keys(record).sort();
      let out = "{";
      let first = true;
      for (const key of keys) {
        const member = record[key];
        if (member === undefined) continue;
        out += `${first ? "" : ","}${serializeString(key)}:${canonicalize(member)}`;
        first = false;
      }
      return `${out}}`;
    }
    default:
      throw new CanonicalJsonError(`${typeof value} is not a JSON value`);
  }
}

function serializeString(s: string): string {
  // I-JSON (RFC 7493) forbids lone surrogates; they cannot round-trip as UTF-8.
  if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) throw new CanonicalJsonError("strings must be valid Unicode (lone surrogate found)");
  return JSON.stringify(s);
}
