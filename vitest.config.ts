import { defineConfig } from "vitest/config";

// Two projects: `unit` (pure code, runs anywhere, in parallel) and `kernel` (real TAPs, routes and
// nftables rules). scripts/test.mjs starts each kernel file in a fresh private network namespace.
export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"] } },
      {
        test: {
          name: "kernel",
          include: ["test/kernel/**/*.test.ts"],
          fileParallelism: false,
          testTimeout: 30_000,
          hookTimeout: 30_000,
        },
      },
    ],
  },
});
