import { describe, expect, it } from "vitest";
import { pollUntil } from "@bsfg/testkit";
import { highWaterWatch } from "./high-water-watch.js";

/** A stream whose high-water mark the test moves, with append announcements it sends by hand. */
function fakeStream(readDelayMs = 0) {
  const stream = { last: 0, reads: 0, announce: undefined as (() => void) | undefined, subscriptions: 0 };
  const watch = highWaterWatch(
    async () => {
      stream.reads++;
      const value = stream.last;
      await new Promise((resolve) => setTimeout(resolve, readDelayMs));
      return value;
    },
    (_name, onAppend) => {
      stream.subscriptions++;
      stream.announce = onAppend;
      return () => {
        stream.subscriptions--;
        stream.announce = undefined;
      };
    },
    // A safety-net interval far beyond the test's patience: only an announcement can wake it in time.
    60_000,
  );
  return { stream, watch };
}

describe("high-water watch", () => {
  it("wakes a waiter as soon as an append is announced, and unsubscribes when nobody waits", async () => {
    const { stream, watch } = fakeStream();
    const started = performance.now();
    const waiting = watch.waitBeyond("operational", 0, Date.now() + 30_000);
    await pollUntil(() => stream.announce !== undefined && stream.reads === 1, { what: "the watcher subscribed and read once" });
    stream.last = 1;
    stream.announce!();
    expect(await waiting).toBe(true);
    expect(performance.now() - started).toBeLessThan(5_000);
    await pollUntil(() => stream.subscriptions === 0, { what: "the subscription dropped" });
    watch.close();
  });

  it("does not miss an append announced while it is reading the high-water mark", async () => {
    const { stream, watch } = fakeStream(200);
    const waiting = watch.waitBeyond("operational", 0, Date.now() + 30_000);
    // The first read is in flight (it will return 0); the append lands and is announced meanwhile.
    await pollUntil(() => stream.reads === 1, { what: "the first read under way" });
    stream.last = 1;
    stream.announce!();
    expect(await waiting).toBe(true);
    expect(stream.reads).toBe(2);
    watch.close();
  });

  it("answers false at the waiter's deadline", async () => {
    const { watch } = fakeStream();
    const deadline = Date.now() + 200;
    expect(await watch.waitBeyond("operational", 0, deadline)).toBe(false);
    expect(Date.now()).toBeGreaterThanOrEqual(deadline);
    watch.close();
  });
});
