import { describe, expect, it } from "vitest";
import { KeyedMutex, SharedExclusive } from "../../src/host/locks.js";

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe("KeyedMutex", () => {
  it("runs holders of a common key one after another, others at once, whatever the outcome", async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    const job =
      (name: string, fail = false) =>
      async () => {
        log.push(`${name}+`);
        await tick();
        log.push(`${name}-`);
        if (fail) throw new Error(name);
      };
    await Promise.allSettled([
      m.run(["a"], job("1", true)),
      m.run(["b"], job("2")),
      m.run(["a", "b"], job("3")),
      m.run(["a"], job("4")),
    ]);
    expect(log.slice(0, 2).sort()).toEqual(["1+", "2+"]); // a and b at once
    expect(log.indexOf("3+")).toBeGreaterThan(Math.max(log.indexOf("1-"), log.indexOf("2-")));
    expect(log.indexOf("4+")).toBeGreaterThan(log.indexOf("3-"));
  });
});

describe("SharedExclusive", () => {
  it("an exclusive holder waits for the shared ones and keeps new ones out", async () => {
    const l = new SharedExclusive();
    const log: string[] = [];
    const shared = (name: string) =>
      l.shared(async () => {
        log.push(`${name}+`);
        await tick();
        log.push(`${name}-`);
      });
    const p1 = shared("s1");
    const p2 = shared("s2");
    const x = l.exclusive(async () => {
      log.push("x+");
      await tick();
      log.push("x-");
    });
    const p3 = shared("s3");
    await Promise.all([p1, p2, x, p3]);
    expect(log.indexOf("x+")).toBeGreaterThan(Math.max(log.indexOf("s1-"), log.indexOf("s2-")));
    expect(log.indexOf("s3+")).toBeGreaterThan(log.indexOf("x-"));
  });
});
