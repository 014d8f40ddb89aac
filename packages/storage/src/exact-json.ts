/**
 * What JSON cannot carry exactly between implementations (I-JSON, RFC 7493).
 *
 * The boundary stores object_json in RFC 8785 form, which is JSON.parse and
 * re-serialization: whatever a double cannot hold, or JSON.parse resolves
 * silently, would be rewritten on the way into the log and every zone after it.
 * So a payload holding such a value is refused, never rewritten, and the
 * refusal names where it is (a JSON path such as `$.readings[3].value`).
 */
export type InexactProblem =
  /** An integer written in digits beyond ±(2^53−1): implementations disagree on its value (RFC 7493 §2.2). */
  | "integer_out_of_range"
  /** A number beyond the largest double (1e400): it would become Infinity, which JSON cannot even write. */
  | "number_overflow"
  /** A non-zero number below the smallest double (1e-400): it would become 0. */
  | "number_underflow"
  /** More digits than a double holds (0.1000000000000000000001): it would be rounded. */
  | "number_precision"
  /** A lone UTF-16 surrogate, raw or escaped (`"\ud800"`), in a string or a key: not Unicode text (RFC 7493 §2.1). */
  | "lone_surrogate"
  /** A key twice in one object: JSON.parse keeps the last, other parsers the first or refuse (RFC 7493 §2.3). */
  | "duplicate_key";

export interface Inexact {
  /** Where: `$` is the whole value, then `.key` / `["odd key"]` / `[index]`. */
  readonly path: string;
  readonly problem: InexactProblem;
  /** For people: what was found, e.g. the number as written. */
  readonly detail: string;
}

const MAX_EXACT_INTEGER = Number.MAX_SAFE_INTEGER; // 2^53 − 1

/** One open container: an object's keys (and the key being read) or an array's position. */
interface Frame {
  readonly keys: Set<string> | null;
  key: string;
  index: number;
}

/**
 * The first value (in text order) of a *valid* JSON text that JSON cannot carry
 * exactly, or undefined. One pass over the text; keys are read (to find one twice),
 * other strings skipped whole unless they hold an escape or the text a lone surrogate.
 */
export function findInexact(text: string): Inexact | undefined {
  const wellFormed = text.isWellFormed();
  const open: Frame[] = [];
  let expectingKey = false;
  let backslash = text.indexOf("\\");
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // "
      const end = closingQuote(text, i);
      if (backslash !== -1 && backslash < i) backslash = text.indexOf("\\", i);
      const escaped = backslash !== -1 && backslash < end;
      const top = open.at(-1);
      const isKey = expectingKey && top !== undefined && top.keys !== null;
      // Most strings are plain values: nothing to read unless they hold an escape or the text a lone surrogate.
      if (isKey || escaped || !wellFormed) {
        const value = escaped ? (JSON.parse(text.slice(i, end + 1)) as string) : text.slice(i + 1, end);
        if (isKey) {
          top.key = value;
          if (top.keys!.has(value)) return { path: pathOf(open), problem: "duplicate_key", detail: `the key ${quoted(value)} occurs twice in one object` };
          top.keys!.add(value);
          expectingKey = false;
        }
        if ((escaped || !wellFormed) && !value.isWellFormed()) {
          return { path: pathOf(open), problem: "lone_surrogate", detail: `${quoted(value)} holds a lone surrogate` };
        }
      }
      i = end;
    } else if (c === 0x7b) { // {
      open.push({ keys: new Set(), key: "", index: 0 });
      expectingKey = true;
    } else if (c === 0x5b) { // [
      open.push({ keys: null, key: "", index: 0 });
      expectingKey = false;
    } else if (c === 0x7d || c === 0x5d) { // } ]
      open.pop();
      expectingKey = false;
    } else if (c === 0x2c) { // ,
      const top = open.at(-1);
      if (top && top.keys === null) top.index++;
      expectingKey = top !== undefined && top.keys !== null;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) { // - 0-9: a number (true, false, null hold neither)
      let end = i + 1;
      let digitsOnly = true;
      for (; end < text.length; end++) {
        const d = text.charCodeAt(end);
        if (d >= 0x30 && d <= 0x39) continue;
        if (d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d) digitsOnly = false; // . e E + -
        else break;
      }
      const literal = text.slice(i, end);
      // Up to 15 digits, an integer is exact whatever its sign.
      const problem = digitsOnly && end - i <= 15 ? undefined : inexactNumber(literal, digitsOnly);
      if (problem) return { path: pathOf(open), problem, detail: `the number ${literal.length > 40 ? `${literal.slice(0, 40)}…` : literal}` };
      i = end - 1;
    }
  }
  return undefined;
}

/** The index of the quote closing the string that opens at `start`: the next one not escaped. */
function closingQuote(text: string, start: number): number {
  let end = text.indexOf('"', start + 1);
  for (;;) {
    let backslashes = 0;
    while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return end;
    end = text.indexOf('"', end + 1);
  }
}

/**
 * Why a JSON number literal cannot be carried exactly, or undefined.
 *
 * - An integer written in digits must lie within ±(2^53−1) — as the producer
 *   wrote it, and as the canonical form writes it: that form spells every integer
 *   below 10^21 in digits, so 9007199254740992.0 and 1e16 are refused too (the
 *   stored text would hold an integer I-JSON does not carry, and would itself be
 *   refused if appended again). 1e21 and 1e308 are written as doubles and pass.
 * - Any other number must be the double it parses to, digit for digit: its
 *   canonical form (the shortest decimal that reads back as that double) must
 *   denote the number as written. So 1.0, 1e3, 4.50 and -0.0 pass (their canonical
 *   forms 1, 1000, 4.5 and 0 are the same numbers), and so does 0.1.
 */
export function inexactNumber(literal: string, digitsOnly = !/[.eE]/.test(literal)): InexactProblem | undefined {
  const value = Number(literal);
  if (!Number.isFinite(value)) return "number_overflow";
  if (digitsOnly) return Math.abs(value) > MAX_EXACT_INTEGER ? "integer_out_of_range" : undefined;
  if (Number.isInteger(value) && Math.abs(value) > MAX_EXACT_INTEGER && Math.abs(value) < 1e21) return "integer_out_of_range";
  const canonical = String(value);
  if (canonical === literal) return undefined; // already canonical, the common case
  const written = decimal(literal);
  if (value === 0) return written === "0" ? undefined : "number_underflow";
  return written === decimal(canonical) ? undefined : "number_precision";
}

/**
 * A decimal number as "<sign><digits>e<exponent>" with no leading or trailing
 * zeros in the digits, so two spellings of one number give the same text; zero
 * of either sign is "0". Reads JSON numbers and JavaScript's Number→string.
 */
function decimal(s: string): string {
  const negative = s.charCodeAt(0) === 0x2d;
  const e = s.search(/[eE]/);
  const mantissa = s.slice(negative ? 1 : 0, e < 0 ? s.length : e);
  let exponent = e < 0 ? 0 : Number(s.slice(e + 1));
  const dot = mantissa.indexOf(".");
  let digits = dot < 0 ? mantissa : mantissa.slice(0, dot) + mantissa.slice(dot + 1);
  if (dot >= 0) exponent -= mantissa.length - dot - 1;
  let first = 0;
  while (first < digits.length && digits.charCodeAt(first) === 0x30) first++;
  let last = digits.length;
  while (last > first && digits.charCodeAt(last - 1) === 0x30) last--;
  if (first === last) return "0";
  exponent += digits.length - last;
  digits = digits.slice(first, last);
  return `${negative ? "-" : ""}${digits}e${exponent}`;
}

/** A string as JSON (lone surrogates escaped), shortened for a message. */
function quoted(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);
}

const identifier = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** The JSON path of the position the scanner is at (JSONPath notation, as in RFC 9535). */
function pathOf(open: readonly Frame[]): string {
  let path = "$";
  for (const frame of open) {
    if (frame.keys === null) path += `[${frame.index}]`;
    else path += identifier.test(frame.key) ? `.${frame.key}` : `[${JSON.stringify(frame.key)}]`;
  }
  return path;
}
