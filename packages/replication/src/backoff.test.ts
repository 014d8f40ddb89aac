import { describe, expect, it } from "vitest";
import { backoff } from "./backoff.js";

describe("backoff", () => {
  it("grows exponentially up to the cap, waiting at least half of each step", () => {
    const highest = backoff({ initial: 100, max: 1_000 }, () => 1);
    expect(Array.from({ length: 6 }, () => highest.next())).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(highest.failures).toBe(6);
    highest.reset();
    expect(highest.next()).toBe(100);
    const lowest = backoff({ initial: 100, max: 1_000 }, () => 0);
    expect(Array.from({ length: 6 }, () => lowest.next())).toEqual([50, 100, 200, 400, 500, 500]);
  });
});
