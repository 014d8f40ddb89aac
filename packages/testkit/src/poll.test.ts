import { describe, expect, test } from "vitest";
import { pollUntil } from "./poll.js";

describe("pollUntil", () => {
  test("returns the first truthy value, after retrying falsy ones", async () => {
    let calls = 0;
    const value = await pollUntil(() => (++calls >= 3 ? { calls } : undefined), { intervalMs: 1 });
    expect(value).toEqual({ calls: 3 });
    expect(calls).toBe(3);
  });

  test("awaits async checks and treats thrown errors as not-yet", async () => {
    let calls = 0;
    const value = await pollUntil(
      async () => {
        calls += 1;
        if (calls < 3) throw new Error("not yet");
        return "ready";
      },
      { intervalMs: 1 },
    );
    expect(value).toBe("ready");
  });

  test("times out with `what` and the last error in the message", async () => {
    const failure = pollUntil(
      () => {
        throw new Error("connection refused");
      },
      { timeoutMs: 100, intervalMs: 10, what: "the answer" },
    );
    await expect(failure).rejects.toThrow(/Timed out after 100ms .* waiting for the answer; last error: Error: connection refused/);
  });

  test("does not wait for a hanging check past the deadline", async () => {
    const started = Date.now();
    const never = new Promise<string>(() => undefined);
    await expect(pollUntil(() => never, { timeoutMs: 100, what: "a hung check" })).rejects.toThrow(/a hung check/);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  test("false, null and undefined keep polling until timeout", async () => {
    let calls = 0;
    const results = [false, null, undefined] as const;
    await expect(pollUntil(() => results[calls++ % 3], { timeoutMs: 100, intervalMs: 5 })).rejects.toThrow(/Timed out/);
    expect(calls).toBeGreaterThan(3);
  });
});
