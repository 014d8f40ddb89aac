import { defineConfig } from "vitest/config";

export default defineConfig({
  // Pin the tsconfig: test files are excluded from ./tsconfig.json, so vite's automatic
  // discovery walks up to the root solution config and fails on its references.
  tsconfig: "./tsconfig.json",
  test: { include: ["src/**/*.test.ts"] },
});
