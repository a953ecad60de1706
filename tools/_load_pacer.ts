/**
 * The open-loop schedule's clock (`--rate`): one timer for every connection
 * (or UDP flow) of a run, firing {@linkcode EARLY} ms before the earliest
 * due time and waking every connection due by then, so a run at 50,000
 * msg/s keeps one timer, not one a connection (Deno's timers fire about 1 ms late, and many
 * of them later still). A connection woken early sends at once; its
 * message's latency counts from when it went (see `dueTime`). Private to
 * `tools/load.ts`.
 *
 * @module
 */

/**
 * How early a connection may be woken, ms: about how late Deno's timers fire
 * (0.8 ms median measured here).
 */
export const EARLY = 1;

/** One connection waiting. */
interface Waiter {
  /** When it is due (`performance.now()`). */
  due: number;
  /** Wakes it. */
  wake: () => void;
}

/** Wakes waiters near their due times: a min-heap and one timer. */
export class Pacer {
  /** Waiters by due time, earliest first. */
  #heap: Waiter[] = [];
  /** The timer armed for the earliest waiter, and when it fires. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  /** Stopped: every wait returns at once. */
  #stopped = false;

  /** Calls `wake` at `due` (`performance.now()` time), or at once if stopped. */
  at(due: number, wake: () => void): void {
    if (this.#stopped) {
      wake();
      return;
    }
    this.#push({ due, wake });
    this.#arm();
  }

  /** Resolves at `due`, or at once if stopped. */
  wait(due: number): Promise<void> {
    return new Promise((resolve) => this.at(due, resolve));
  }

  /** Wakes every waiter now; later waits return at once. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const waiting = this.#heap;
    this.#heap = [];
    for (const w of waiting) w.wake();
  }

  /** Arms the one timer for the earliest waiter, if it is not armed for it. */
  #arm(): void {
    const first = this.#heap[0];
    if (first === undefined) return;
    const fireAt = first.due - EARLY;
    if (this.#timer !== undefined && this.#timerAt <= fireAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = fireAt;
    this.#timer = setTimeout(
      () => this.#fire(),
      Math.max(0, fireAt - performance.now()),
    );
  }

  /** Wakes every waiter due within {@linkcode EARLY} ms, then re-arms. */
  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const until = performance.now() + EARLY;
    while (this.#heap.length > 0 && this.#heap[0]!.due <= until) {
      this.#pop().wake();
    }
    this.#arm();
  }

  #push(w: Waiter): void {
    const h = this.#heap;
    h.push(w);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.due <= w.due) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = w;
  }

  #pop(): Waiter {
    const h = this.#heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && h[r]!.due < h[l]!.due ? r : l;
        if (h[c]!.due >= last.due) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}
