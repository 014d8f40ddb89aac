import { defineConfig } from "vitest/config";

export default defineConfig({
  // Test files are excluded from ./tsconfig.json; without this, vite walks up to the
  // root solution config and trips over its references.
  tsconfig: "./tsconfig.json",
  test: {
    include: ["src/**/*.test.ts"],
    // Every suite starts real nats-server processes; give them room.
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
