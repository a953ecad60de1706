/**
 * What every report of the load generator shares, TCP and UDP alike: the
 * latency summary taken from a {@linkcode LatencyHistogram}, and the way
 * numbers are rounded and printed. One place, so that both modes say a
 * percentile and a count the same way.
 *
 * Private to this package: `tools/load.ts` re-exports the types.
 *
 * @module
 */

import type { LatencyHistogram } from "./_histogram.ts";

/** A latency summary (round trips, or connects), in milliseconds. */
export interface LatencySummary {
  /** Messages (or connects) timed. */
  samples: number;
  /** Fastest. */
  min: number;
  /** Mean. */
  mean: number;
  /** Median. */
  p50: number;
  /** 90th percentile. */
  p90: number;
  /** 99th percentile. */
  p99: number;
  /** 99.9th percentile. */
  p999: number;
  /** Slowest. */
  max: number;
  /**
   * The percentiles asked for (`--percentiles`, default 50, 90, 99, 99.9),
   * by their number as written (`"99.9"`).
   */
  percentiles: Record<string, number>;
  /**
   * Every sample, as HdrHistogram's standard form (V2 compressed, base64,
   * values in ns): any HdrHistogram implementation reads it, and
   * `tools/load.ts merge` merges runs with it.
   */
  histogram: string;
}

/** The percentiles a summary lists unless told others: tcpkali's. */
export const DEFAULT_PERCENTILES: readonly number[] = [50, 90, 99, 99.9];

/**
 * Reads a list of percentiles such as `50,90,99,99.9` (tcpkali's
 * `--latency-percentiles`): numbers above 0 up to 100, at most 20, sorted,
 * each once.
 *
 * @throws {RangeError} Naming the bad item and what is expected.
 */
export function parsePercentiles(text: string): number[] {
  const list: number[] = [];
  for (const item of text.split(",").map((t) => t.trim())) {
    const p = /^(\d+(\.\d*)?|\.\d+)$/.test(item) ? Number(item) : NaN;
    if (!(p > 0 && p <= 100)) {
      throw new RangeError(
        `Cannot parse percentile "${item}" of "${text}": expected numbers above 0 up to 100, as 50,90,99,99.9`,
      );
    }
    if (!list.includes(p)) list.push(p);
  }
  if (list.length > 20) {
    throw new RangeError(
      `Cannot use ${list.length} percentiles in "${text}": at most 20`,
    );
  }
  return list.sort((a, b) => a - b);
}

/**
 * The percentiles of `h`, to the µs: the histogram holds a value to within
 * 1/1024 of itself, and a round trip through a kernel takes microseconds, so
 * more digits would say nothing.
 */
export function summarize(
  h: LatencyHistogram,
  percentiles: readonly number[] = DEFAULT_PERCENTILES,
): LatencySummary {
  const listed: Record<string, number> = {};
  for (const p of percentiles) listed[String(p)] = round(h.percentile(p), 3);
  return {
    samples: h.count,
    min: round(h.min, 3),
    mean: round(h.mean, 3),
    p50: round(h.percentile(50), 3),
    p90: round(h.percentile(90), 3),
    p99: round(h.percentile(99), 3),
    p999: round(h.percentile(99.9), 3),
    max: round(h.max, 3),
    percentiles: listed,
    histogram: h.encode(),
  };
}

/** An interval's latencies: median, 99th percentile and slowest, to the µs. */
export interface IntervalLatency {
  /** Median, ms. */
  p50: number;
  /** 99th percentile, ms. */
  p99: number;
  /** Slowest, ms. */
  max: number;
}

/** The interval figures of `h`, to the µs. */
export function intervalLatency(h: LatencyHistogram): IntervalLatency {
  return {
    p50: round(h.percentile(50), 3),
    p99: round(h.percentile(99), 3),
    max: round(h.max, 3),
  };
}

/** `value` rounded to `digits` decimal places. */
export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Formats a count with thousands separators: `_format.ts`'s formatInt. */
export { formatInt as count } from "../_format.ts";

/** The percentiles of a summary as the reports print them. */
export function formatPercentiles(
  l: Pick<LatencySummary, "p50" | "p90" | "p99" | "p999" | "max"> & {
    percentiles?: Record<string, number>;
  },
): string {
  // A report written before --percentiles has the four fixed ones only.
  const asked = l.percentiles ??
    { "50": l.p50, "90": l.p90, "99": l.p99, "99.9": l.p999 };
  const listed = Object.entries(asked).map(([p, v]) => `p${p} ${v}`);
  return `${listed.join("  ")}  max ${l.max}`;
}

/** What this process used of the CPU during a run. */
export interface CpuReport {
  /** User time, ms. */
  userMs: number;
  /** System time, ms. */
  systemMs: number;
  /** (user + system) / wall time, in percent of one core. */
  percent: number;
}

/**
 * The CPU report of a run from `process.cpuUsage()`'s difference (µs) over
 * `seconds` of wall time.
 */
export function cpuReport(
  usage: { user: number; system: number },
  seconds: number,
): CpuReport {
  const cpuMs = (usage.user + usage.system) / 1000;
  return {
    userMs: Math.round(usage.user / 1000),
    systemMs: Math.round(usage.system / 1000),
    percent: seconds > 0 ? Math.round((cpuMs / (seconds * 1000)) * 100) : 0,
  };
}

/** The report's line on the load generator's own CPU. */
export function formatCpu(cpu: CpuReport): string {
  return `load generator CPU: ${cpu.percent}% of one core (user ${cpu.userMs} ms, system ${cpu.systemMs} ms)${
    cpu.percent >= 90
      ? ": saturated, so the figures may be the generator's limit, not the server's"
      : ""
  }`;
}

/** Most distinct error messages a report keeps. */
export const ERROR_SAMPLES = 5;

/**
 * The first few distinct error messages of a run, for its report: both load
 * modes' tallies extend it.
 */
export class ErrorSamples {
  /** Distinct error messages, first {@linkcode ERROR_SAMPLES} only. */
  readonly errors: string[] = [];

  /** Keeps `message` unless it is known or the samples are full. */
  note(message: string): void {
    if (this.errors.length < ERROR_SAMPLES && !this.errors.includes(message)) {
      this.errors.push(message);
    }
  }
}
