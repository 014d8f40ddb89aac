/**
 * RFC 8785 JSON Canonicalization Scheme (JCS).
 *
 * Payload identity is decided on these bytes, so two producers that send the
 * same JSON value with different key order or whitespace get the same hash.
 * ECMAScript's JSON.stringify already serializes numbers and strings exactly as
 * RFC 8785 §3.2.2 requires; what JCS adds is recursive key ordering by UTF-16
 * code units and the I-JSON restrictions, checked on the text (exact-json.ts):
 * a value the canonical form would change is refused, never rewritten.
 */
import { findInexact, type Inexact } from "./exact-json.js";

export class CanonicalJsonError extends Error {}

/** A valid JSON text holding a value JSON cannot carry exactly (see exact-json.ts): refused, never rewritten. */
export class InexactJsonError extends CanonicalJsonError {
  constructor(readonly inexact: Inexact) {
    super(`${inexact.detail} at ${inexact.path} cannot be carried exactly (${inexact.problem.replaceAll("_", " ")}; I-JSON, RFC 7493)`);
  }
}

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
  // JSON.parse rounds numbers to doubles, keeps the last of two equal keys and passes lone
  // surrogates through: the canonical form would store (and identify) another value.
  const inexact = findInexact(text);
  if (inexact !== undefined) throw new InexactJsonError(inexact);
  return { value, canonical: canonicalize(value) };
}

/** Text to emit as it is, between the values of an array or object (a value may be a string too). */
class Punctuation {
  constructor(readonly text: string) {}
}

/**
 * The canonical form of a JSON-compatible value.
 *
 * Iterative, not recursive: object_json may nest as deep as its size allows (a 64 KiB fact
 * holds 30,000 levels of `[`), and JSON.parse and findInexact take that depth, so the
 * canonical form must too; recursion ran out of call stack and failed the append as an
 * internal error.
 */
export function canonicalize(value: unknown): string {
  if (typeof value !== "object" || value === null) return canonicalScalar(value);
  let out = "";
  // What is left to write, last first.
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const next = pending.pop();
    if (next instanceof Punctuation) {
      out += next.text;
    } else if (typeof next !== "object" || next === null) {
      out += canonicalScalar(next);
    } else if (Array.isArray(next)) {
      out += "[";
      pending.push(new Punctuation("]"));
      for (let i = next.length - 1; i >= 0; i--) {
        pending.push(next[i]);
        if (i > 0) pending.push(new Punctuation(","));
      }
    } else {
      const record = next as Record<string, unknown>;
      // Array.prototype.sort compares UTF-16 code units, which is what RFC 8785 §3.2.3 asks for.
      const keys = Object.keys(record).sort().filter((key) => record[key] !== undefined);
      out += "{";
      pending.push(new Punctuation("}"));
      for (let i = keys.length - 1; i >= 0; i--) {
        pending.push(record[keys[i]!]);
        pending.push(new Punctuation(`${i > 0 ? "," : ""}${serializeString(keys[i]!)}:`));
      }
    }
  }
  return out;
}

function canonicalScalar(value: unknown): string {
  switch (typeof value) {
    case "string":
      return serializeString(value);
    case "number":
      if (!Number.isFinite(value)) throw new CanonicalJsonError("numbers must be finite");
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "object":
      if (value === null) return "null";
      return canonicalize(value);
    default:
      throw new CanonicalJsonError(`${typeof value} is not a JSON value`);
  }
}

function serializeString(s: string): string {
  // I-JSON (RFC 7493) forbids lone surrogates; they cannot round-trip as UTF-8.
  if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) throw new CanonicalJsonError("strings must be valid Unicode (lone surrogate found)");
  return JSON.stringify(s);
}
