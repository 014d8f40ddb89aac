import { describe, expect, it } from "vitest";
import { CanonicalJsonError, canonicalize, canonicalizeJsonText } from "./canonical-json.js";

describe("RFC 8785 canonical JSON", () => {
  it("orders keys recursively and drops insignificant whitespace", () => {
    expect(canonicalizeJsonText('{ "b": 1, "a": { "d": [3, {"z":0,"y":1}], "c": null } }')).toBe(
      '{"a":{"c":null,"d":[3,{"y":1,"z":0}]},"b":1}',
    );
  });

  it("serializes numbers the ECMAScript way (RFC 8785 §3.2.2.3 samples)", () => {
    const samples: Array<[string, string]> = [
      ["1E30", "1e+30"],
      ["4.50", "4.5"],
      ["2e-3", "0.002"],
      ["0.000001", "0.000001"],
      ["1e-7", "1e-7"],
      ["-0", "0"],
      ["100", "100"],
    ];
    for (const [input, canonical] of samples) expect(canonicalizeJsonText(input)).toBe(canonical);
    // The RFC's sample with more digits than a double holds serializes as the RFC says, but as a
    // payload it is refused: storing 333333333.3333333 would change the number (exact-json.ts).
    expect(canonicalize(333333333.33333329)).toBe("333333333.3333333");
    expect(() => canonicalizeJsonText("333333333.33333329")).toThrow(/number precision/);
  });

  it("sorts keys by UTF-16 code units, as in the RFC's example", () => {
    const text = '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control","\\u00f6":"Latin Small Letter O With Diaeresis"}';
    // Compare the text: JavaScript objects list integer-like keys first, which would hide the order.
    const order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\ud83d\ude00", "\ufb33"];
    const positions = order.map((key) => canonicalizeJsonText(text).indexOf(JSON.stringify(key) + ":"));
    expect(positions.every((p, i) => p >= 0 && (i === 0 || p > positions[i - 1]!))).toBe(true);
  });

  it("escapes strings minimally", () => {
    expect(canonicalize({ s: "\u20ac$\u000f\nA'B\"\\\\\"/" })).toBe('{"s":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}');
  });

  it("rejects what is not I-JSON", () => {
    expect(() => canonicalizeJsonText("{")).toThrow(CanonicalJsonError);
    expect(() => canonicalizeJsonText('"\\ud800"')).toThrow(/lone surrogate/);
    expect(() => canonicalize(Number.NaN)).toThrow(/finite/);
  });

  it("rejects a key that occurs twice in one object, also when escaped differently, and only then", () => {
    for (const text of ['{"a":1,"a":2}', '{"x":{"b":[1,{"c":0}],"b":true}}', '{"a":1,"\\u0061":2}', '[{"k":"v"},{"s":"{\\"k\\":1,\\"k\\":2}","t":{"k":1,"k":2}}]']) {
      expect(() => canonicalizeJsonText(text), text).toThrow(/occurs twice in one object/);
    }
    for (const text of ['{"a":{"a":{"a":1}}}', '[{"a":1},{"a":2}]', '{"a":"a","b":["a","a"]}', '{"s":"{\\"k\\":1,\\"k\\":2}"}', '{"\\\\":1,"\\"":2}', '"a"', "[]", "{}"]) {
      expect(() => canonicalizeJsonText(text), text).not.toThrow();
    }
  });

  it("gives the same text for the same value in any key order", () => {
    expect(canonicalizeJsonText('{"b":1,"a":2}')).toBe(canonicalizeJsonText('{"a":2,"b":1}'));
  });

  it("canonicalizes values nested deeper than the call stack goes (the hostile campaign's 100,000 levels)", () => {
    // Recursion ran out of stack here, and an append of such a fact failed as an internal error.
    const depth = 100_000;
    const arrays = "[".repeat(depth) + "]".repeat(depth);
    expect(canonicalizeJsonText(arrays)).toBe(arrays);
    const objects = "{ \"b\": 1, \"a\": ".repeat(depth) + "null" + "}".repeat(depth);
    expect(canonicalizeJsonText(objects)).toBe("{\"a\":".repeat(depth) + "null" + ",\"b\":1}".repeat(depth));
  });
});
