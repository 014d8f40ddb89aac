import { defineConfig } from "vitest/config";

/**
 * The test configuration every package shares: tests beside the code, never the
 * build output, and room for suites that start real nats-server processes.
 */
export function packageTestConfig() {
  return defineConfig({
    // Test files are excluded from each package's tsconfig.json; without this, vite walks up
    // to the root solution config and trips over its references.
    tsconfig: "./tsconfig.json",
    test: {
      include: ["src/**/*.test.ts"],
      testTimeout: 120_000,
      hookTimeout: 60_000,
    },
  });
}
