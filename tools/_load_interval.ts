/**
 * The clock of a load run's intervals, shared by the TCP and UDP modes: it
 * ends each interval on its boundary and the last one at the run's
 * duration, or at once when the run is stopped early, so one clock says
 * both when an interval ends and when the run does (iperf3's intervals).
 * Private to `tools/load.ts`.
 *
 * @module
 */

import { MAX_TIMER_MS, sleep } from "../_cli.ts";
import { round } from "./_report.ts";

/** One interval as the clock ends it. */
export interface IntervalSpan {
  /** Seconds since the start when it began, as labelled. */
  start: number;
  /** Seconds since the start when it ended, as labelled: its boundary. */
  end: number;
  /** Seconds it really took (a timer fires late): rates are over these. */
  seconds: number;
}

/** What {@linkcode runIntervals} times. */
export interface IntervalClock {
  /** When the run started (`performance.now()`). */
  startedAt: number;
  /** Milliseconds the run lasts. */
  duration: number;
  /** Milliseconds of one interval. */
  interval: number;
  /** Aborts when the run stops early; the interval open then ends at once. */
  stop: AbortSignal;
  /** Called as each interval ends, before the next begins. */
  cut: (span: IntervalSpan) => void;
}

/**
 * Ends intervals until the duration is over or `stop` aborts, calling
 * `cut` for each (at least once); returns when the last ended
 * (`performance.now()`).
 */
export async function runIntervals(clock: IntervalClock): Promise<number> {
  const end = clock.startedAt + clock.duration;
  let from = clock.startedAt;
  let label = 0;
  for (let k = 1;; k++) {
    const boundary = Math.min(clock.startedAt + k * clock.interval, end);
    for (let wait = boundary - performance.now(); wait > 0;) {
      await sleep(Math.min(wait, MAX_TIMER_MS), clock.stop);
      if (clock.stop.aborted) break;
      wait = boundary - performance.now();
    }
    const now = performance.now();
    const early = clock.stop.aborted && now < boundary;
    const next = round(
      ((early ? Math.max(now, from) : boundary) - clock.startedAt) / 1000,
      3,
    );
    clock.cut({ start: label, end: next, seconds: (now - from) / 1000 });
    from = now;
    label = next;
    if (clock.stop.aborted || boundary >= end) return now;
  }
}

/** An interval's span as its line starts, as iperf3's: `[  0.00-  1.00 s]`. */
export function formatSpan(span: { start: number; end: number }): string {
  return `[${span.start.toFixed(2).padStart(6)}-${
    span.end.toFixed(2).padStart(6)
  } s]`;
}
