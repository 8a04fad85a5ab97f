/**
 * In-process ordering of HostNetwork's operations: operations on one VM run one after another, and
 * whole-host passes (reconcile, gc) run alone. Between processes the state database is the lock.
 */

/** Runs functions so that two holding a common key never overlap; different keys run concurrently. */
export class KeyedMutex {
  readonly #tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier holder of any of `keys` has finished (whatever its outcome). */
  run<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    const before = keys.map((k) => this.#tails.get(k)).filter((p): p is Promise<void> => p !== undefined);
    const result = Promise.all(before).then(fn);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    for (const k of keys) this.#tails.set(k, tail);
    void tail.then(() => {
      for (const k of keys) if (this.#tails.get(k) === tail) this.#tails.delete(k);
    });
    return result;
  }
}

/** Many shared holders, or one exclusive holder. An exclusive request waits for the shared ones and blocks new ones. */
export class SharedExclusive {
  #shared = 0;
  #exclusive: Promise<void> | undefined;
  #drained: (() => void) | undefined;

  /** Runs `fn` alongside other shared holders, never alongside an exclusive one. */
  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#exclusive) await this.#exclusive;
    this.#shared++;
    try {
      return await fn();
    } finally {
      if (--this.#shared === 0) this.#drained?.();
    }
  }

  /** Runs `fn` alone. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#exclusive) await this.#exclusive;
    let release: () => void = () => {};
    this.#exclusive = new Promise<void>((r) => {
      release = r;
    });
    try {
      if (this.#shared > 0) {
        await new Promise<void>((r) => {
          this.#drained = r;
        });
      }
      this.#drained = undefined;
      return await fn();
    } finally {
      this.#exclusive = undefined;
      release();
    }
  }
}
