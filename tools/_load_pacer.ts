/**
 * The open-loop schedule's clock (`--rate`): wakes each connection when its
 * next message is due, to within microseconds. A timer alone would not do:
 * Deno's timers fire about 1 ms late (0.8 ms median, 4 ms p99 measured on
 * the project's busy 2-core machine), and since a message's latency counts
 * from when it was due, that lateness would be reported as the server's
 * (at 100 msg/s on one connection, p50 1.19 ms against 0.026 ms closed
 * loop). So one timer fires {@linkcode EARLY} ms before the earliest due
 * time, and from there one loop of `setImmediate` turns (each lets every
 * connection's I/O run) wakes each connection as its time comes. One pacer
 * serves every connection of a run: however many wait, one loop spins.
 * Private to `tools/load.ts`.
 *
 * @module
 */

import { setImmediate } from "node:timers";

/** How long before a due time the timer fires, ms: above its usual lateness. */
export const EARLY = 2;

/** Within this many ms of its due time, a wait is over. */
export const SLACK = 0.02;

/** One connection waiting. */
interface Waiter {
  /** When it is due (`performance.now()`). */
  due: number;
  /** Wakes it. */
  wake: () => void;
}

/** Wakes waiters at their due times: a min-heap, one timer, one spin loop. */
export class Pacer {
  /** Waiters by due time, earliest first. */
  #heap: Waiter[] = [];
  /** The timer armed for the earliest waiter, and when it fires. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  /** A spin loop is running. */
  #spinning = false;
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

  /** Makes sure the earliest waiter will be woken: a timer, or the spin. */
  #arm(): void {
    if (this.#spinning) return;
    const first = this.#heap[0];
    if (first === undefined) return;
    const fireAt = first.due - EARLY;
    if (fireAt <= performance.now()) {
      this.#spin();
      return;
    }
    if (this.#timer !== undefined && this.#timerAt <= fireAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = fireAt;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#spin();
    }, fireAt - performance.now());
  }

  /** Turns the event loop until no waiter is due within {@linkcode EARLY} ms. */
  #spin(): void {
    if (this.#spinning) return;
    this.#spinning = true;
    const tick = () => {
      const now = performance.now();
      while (this.#heap.length > 0 && this.#heap[0]!.due <= now + SLACK) {
        this.#pop().wake();
      }
      const first = this.#heap[0];
      if (first !== undefined && first.due - now <= EARLY) {
        setImmediate(tick);
        return;
      }
      this.#spinning = false;
      this.#arm();
    };
    setImmediate(tick);
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
