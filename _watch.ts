/**
 * Waiting on a server's counters without polling: the mechanism behind the
 * `until()` of the echo servers' and the proxy's handles.
 *
 * @module
 */

/**
 * Waiters on counters that change: the `until()` of every server handle
 * (the echo servers' core, the threaded server, the proxy), in one place.
 * A change costs a size check when nobody waits.
 */
export class StatsWatch<S> {
  #read: () => S;
  #waiters = new Set<{ check(): void; fail(error: Error): void }>();
  #stopped = false;

  /** Watches the counters `read` returns. */
  constructor(read: () => S) {
    this.#read = read;
  }

  /** The counters changed: settles the waiters whose test now holds. */
  changed(): void {
    if (this.#waiters.size === 0) return;
    for (const waiter of [...this.#waiters]) waiter.check();
  }

  /** The server has stopped: one last check, then the rest reject. */
  stop(): void {
    this.changed();
    this.#stopped = true;
    for (const waiter of [...this.#waiters]) {
      waiter.fail(new Error("The server stopped before the wait was over"));
    }
  }

  /**
   * Resolves with the counters once `test` holds for them: checked now and
   * at every `changed()`. Rejects with `signal`'s reason when it aborts,
   * and once `stop()` is called before `test` holds.
   */
  until(test: (stats: S) => boolean, signal?: AbortSignal): Promise<S> {
    return new Promise<S>((resolve, reject) => {
      const done = () => {
        this.#waiters.delete(waiter);
        signal?.removeEventListener("abort", abort);
      };
      const waiter = {
        check: () => {
          try {
            const stats = this.#read();
            if (!test(stats)) return;
            done();
            resolve(stats);
          } catch (error) {
            done();
            reject(error);
          }
        },
        fail: (error: Error) => {
          done();
          reject(error);
        },
      };
      const abort = () => waiter.fail(signal!.reason);
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener("abort", abort, { once: true });
      this.#waiters.add(waiter);
      waiter.check();
      if (this.#stopped) waiter.fail(new Error("The server has stopped"));
    });
  }
}
