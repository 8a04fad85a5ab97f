// Runs one API call in a separate process and prints its outcome as JSON — for tests that need
// another process (teardown from elsewhere) or another uid (no CAP_NET_ADMIN).
// Usage: tsx test/helpers/api-child.ts '<json {"fn": "...", "args": [...]}>'
import {
  addPortMapping,
  bootstrap,
  closeShared,
  createPointToPointTap,
  deleteTap,
  removePortMapping,
  teardown,
} from "../../src/index.js";

// biome-ignore lint/suspicious/noExplicitAny: arguments come from JSON and are validated by the API itself
const api: Record<string, (...a: any[]) => Promise<unknown>> = {
  addPortMapping,
  bootstrap,
  createPointToPointTap,
  deleteTap,
  removePortMapping,
  teardown,
};

const { fn, args } = JSON.parse(process.argv[2] ?? "{}") as { fn: string; args: unknown[] };
try {
  const f = api[fn];
  if (!f) throw new Error(`unknown function ${fn}`);
  const result = await f(...args);
  process.stdout.write(JSON.stringify({ ok: true, result: result ?? null }));
} catch (e) {
  const err = e as { name?: string; code?: string; errno?: number; message?: string };
  process.stdout.write(
    JSON.stringify({
      ok: false,
      error: { name: err.name, code: err.code, errno: err.errno, message: err.message },
    }),
  );
} finally {
  await closeShared();
}
