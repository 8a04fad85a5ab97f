import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// The end-to-end tests: real guests under QEMU. scripts/e2e.mjs prepares the guest kernel and initramfs,
// then runs each file in a fresh private network namespace with this config. Guests boot in 1-3 s under
// TCG; the timeouts leave room for a slow CI machine.
export default defineConfig({
  test: {
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["test/e2e/**/*.test.ts"],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
