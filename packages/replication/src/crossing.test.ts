import { describe, expect, it } from "vitest";
import { crossingWindow } from "./crossing.js";

describe("a link's crossing latency", () => {
  it("gives p50 and p99 of storage-to-append times over the window, and nothing once it is empty", () => {
    const w = crossingWindow(60_000, 1_000);
    // 100 facts stored at t = 0..99 ms, appended together at t = 1,000 ms: 901..1,000 ms.
    w.add(Array.from({ length: 100 }, (_, i) => i), 1_000);
    expect(w.stats(1_000)).toEqual({ p50Seconds: 0.95, p99Seconds: 0.999, samples: 100 });
    expect(w.stats(61_001)).toBeUndefined();
  });

  it("keeps the newest samples of a busy link, and counts a peer clock ahead of ours as zero", () => {
    const w = crossingWindow(60_000, 10);
    w.add(Array.from({ length: 30 }, () => 900), 1_000);
    w.add([5_000], 2_000);
    expect(w.stats(2_000)).toEqual({ p50Seconds: 0.1, p99Seconds: 0.1, samples: 10 });
    const ahead = crossingWindow();
    ahead.add([5_000], 2_000);
    expect(ahead.stats(2_000)).toEqual({ p50Seconds: 0, p99Seconds: 0, samples: 1 });
  });
});
