import { describe, expect, it } from "vitest";
import { canonicalizeJsonText } from "./canonical-json.js";
import { findInexact, inexactNumber } from "./exact-json.js";

describe("values JSON cannot carry exactly (I-JSON, RFC 7493)", () => {
  it.each([
    ["2^53", '{"n":9007199254740992}', "$.n", "integer_out_of_range"],
    ["-2^53-1", '{"n":-9007199254740993}', "$.n", "integer_out_of_range"],
    ["2^53+1, which a double reads as 2^53", "[1,9007199254740993]", "$[1]", "integer_out_of_range"],
    ["a 20-digit id", '{"id":12345678901234567890}', "$.id", "integer_out_of_range"],
    ["1e400", '{"x":1e400}', "$.x", "number_overflow"],
    ["-1e400", '{"x":[-1e400]}', "$.x[0]", "number_overflow"],
    ["1e-400", '{"x":1e-400}', "$.x", "number_underflow"],
    ["more digits than a double holds", '{"pi":3.141592653589793238462643383279}', "$.pi", "number_precision"],
    ["2^53+1 written with a fraction", '{"n":9007199254740993.0}', "$.n", "integer_out_of_range"],
    ["an integer the canonical form would write in digits beyond 2^53-1", '{"n":1e16}', "$.n", "integer_out_of_range"],
    ["more digits than a double holds, near 0.1", '{"x":0.10000000000000000001}', "$.x", "number_precision"],
    ["a subnormal that rounds", '{"tiny":2.4703282292062328e-324}', "$.tiny", "number_precision"],
    ["an escaped lone high surrogate", '{"s":"\\ud800"}', "$.s", "lone_surrogate"],
    ["an escaped lone low surrogate after text", '["ok","a\\udc00b"]', "$[1]", "lone_surrogate"],
    ["a raw lone surrogate", `{"s":"\ud800"}`, "$.s", "lone_surrogate"],
    ["a key with a lone surrogate", '{"ok":1,"k\\ud83d":2}', '$["k\\ud83d"]', "lone_surrogate"],
    ["a key twice in one object", '{"result":"ok","result":"scrap"}', "$.result", "duplicate_key"],
    ["a key twice, spelt differently", '{"a":1,"\\u0061":2}', "$.a", "duplicate_key"],
    ["a nested value", '{"readings":[{"value":1},{"value":2},{"value":3},{"value":9007199254740993}]}', "$.readings[3].value", "integer_out_of_range"],
    ["a value under an odd key", '{"batch 7":{"":[0,{"a.b":1e999}]}}', '$["batch 7"][""][1]["a.b"]', "number_overflow"],
  ])("refuses %s at its path", (_name, text, path, problem) => {
    expect(findInexact(text)).toMatchObject({ path, problem });
    expect(() => canonicalizeJsonText(text)).toThrow(path);
  });

  it("names the first problem in text order", () => {
    expect(findInexact('{"a":[1,{"b":"x"}],"c":{"d":1e400},"e":9007199254740993}')).toMatchObject({ path: "$.c.d", problem: "number_overflow" });
  });

  it.each([
    ["the largest exact integers", "[9007199254740991,-9007199254740991]", "[9007199254740991,-9007199254740991]"],
    ["large and small doubles", "[1e308,1.7976931348623157e308,5e-324,2.2250738585072014e-308]", "[1e+308,1.7976931348623157e+308,5e-324,2.2250738585072014e-308]"],
    ["decimals a double reads back as written", "[0.1,0.3,-1.5e-7,333333333.3333333]", "[0.1,0.3,-1.5e-7,333333333.3333333]"],
    ["other spellings of the same numbers", "[1.0,1e3,4.50,1E+2,-0,-0.0,0e10,10e-1]", "[1,1000,4.5,100,0,0,0,1]"],
    ["a large integer written as a double", "[1e21,1.5e300]", "[1e+21,1.5e+300]"],
    ["line separators and surrogate pairs", '["\\u2028\\u2029","\\ud83d\\ude00","😀"]', '["\u2028\u2029","😀","😀"]'],
    ["escapes that look like numbers or keys", '{"a":"9007199254740993","b":"{\\"a\\":1,\\"a\\":2}","c":"\\\\ud800"}', '{"a":"9007199254740993","b":"{\\"a\\":1,\\"a\\":2}","c":"\\\\ud800"}'],
    ["equal keys in different objects", '[{"a":1},{"a":{"a":1}}]', '[{"a":1},{"a":{"a":1}}]'],
  ])("accepts %s, keeping their values", (_name, text, canonical) => {
    expect(findInexact(text)).toBeUndefined();
    expect(canonicalizeJsonText(text)).toBe(canonical);
  });

  it("decides a number by its decimal value, not its spelling", () => {
    expect(inexactNumber("100e-2")).toBeUndefined();
    expect(inexactNumber("0.000001")).toBeUndefined();
    expect(inexactNumber("-9007199254740991")).toBeUndefined();
    expect(inexactNumber("-9007199254740992")).toBe("integer_out_of_range");
    expect(inexactNumber("9007199254740992e0")).toBe("integer_out_of_range"); // stored as 9007199254740992
    expect(inexactNumber("9007199254740991e0")).toBeUndefined();
    expect(inexactNumber("0.10000000000000000001")).toBe("number_precision");
  });
});
