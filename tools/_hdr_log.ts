/**
 * HdrHistogram's interval log (`.hlog`, format version 1.3): a few `#`
 * header lines, a legend, then one line per interval with its start, length,
 * maximum and histogram in the standard compressed form. What jHiccup,
 * Cassandra's and ScyllaDB's stress tools, wrk2's forks and
 * `HistogramLogProcessor` write and read; `tools/load.ts --histogram-log`
 * writes one, `tools/load.ts merge` reads them.
 *
 * Values are nanoseconds and the `Interval_Max` column is in milliseconds
 * (the value divided by 10^6, as Java's `HistogramLogWriter` does by
 * default).
 *
 * Private to this package.
 *
 * @module
 */

import { LatencyHistogram } from "./_histogram.ts";

/** The legend line that comes before the intervals. */
export const LOG_LEGEND =
  '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"';

/** The format version written (Java's `HistogramLogWriter` 1.3). */
const LOG_VERSION = "1.3";

/** One interval of a log. */
export interface LoggedInterval {
  /** The line's tag (`Tag=NAME,`), if any. */
  tag?: string;
  /**
   * When the interval began, seconds since the epoch when the log says when
   * it started (`StartTime` or `BaseTime`), else seconds as written.
   */
  start: number;
  /** Seconds the interval lasted. */
  length: number;
  /** The interval's samples. */
  histogram: LatencyHistogram;
}

/** What a log holds. */
export interface HistogramLog {
  /** `#[StartTime: ...]`, seconds since the epoch, if given. */
  startTime?: number;
  /** The intervals, in the order written. */
  intervals: LoggedInterval[];
}

/** A time in seconds with 3 decimals, as the log writes them. */
function seconds(s: number): string {
  return s.toFixed(3);
}

/**
 * The header of a log that starts at `startMs` (ms since the epoch): a
 * comment, the format version, `StartTime` and `BaseTime` (so every reader
 * takes the interval stamps as seconds after it), and the legend.
 *
 * @param startMs When the first interval began, ms since the epoch.
 * @param comment One line saying what wrote the log.
 * @returns Lines ending in a newline.
 */
export function formatLogHeader(startMs: number, comment: string): string {
  const start = seconds(startMs / 1000);
  return [
    `#${comment.replace(/[\r\n]+/g, " ")}`,
    `#[Histogram log format version ${LOG_VERSION}]`,
    `#[StartTime: ${start} (seconds since epoch), ${
      new Date(startMs).toISOString()
    }]`,
    `#[BaseTime: ${start} (seconds since epoch)]`,
    LOG_LEGEND,
    "",
  ].join("\n");
}

/**
 * One interval line: start (seconds after the log's base time), length,
 * maximum in ms, and the histogram (values in ns).
 */
export function formatLogInterval(
  startSec: number,
  lengthSec: number,
  histogram: LatencyHistogram,
): string {
  return `${seconds(startSec)},${seconds(lengthSec)},${
    histogram.max.toFixed(3)
  },${histogram.encode()}\n`;
}

/** A finite number from a field of a log, or undefined. */
function number(text: string | undefined): number | undefined {
  if (text === undefined || !/^\s*-?[0-9.]+(e[-+]?\d+)?\s*$/i.test(text)) {
    return undefined;
  }
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/**
 * Reads an interval log as Java's `HistogramLogReader` does: `#` lines are
 * comments but for `StartTime` and `BaseTime`; the legend is skipped; each
 * other line is `[Tag=NAME,]START,LENGTH,MAX,HISTOGRAM`. Stamps are taken
 * after `BaseTime` when there is one, as absolute when they are (later
 * than a year after the epoch), else after `StartTime`.
 *
 * @throws {TypeError} Naming the line, when one is none of these, or when
 * the text holds no interval at all.
 */
export function parseHistogramLog(text: string): HistogramLog {
  let startTime: number | undefined;
  let baseTime: number | undefined;
  const intervals: LoggedInterval[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    if (line.startsWith("#")) {
      const m = line.match(/^#\[(StartTime|BaseTime):\s*([0-9.]+)/);
      if (m?.[1] === "StartTime") startTime = number(m[2]);
      else if (m?.[1] === "BaseTime") baseTime = number(m[2]);
      continue;
    }
    if (line.startsWith('"StartTimestamp"')) continue;
    let rest = line;
    let tag: string | undefined;
    const t = rest.match(/^Tag=([^,]*),/);
    if (t) {
      tag = t[1];
      rest = rest.slice(t[0].length);
    }
    const fields = rest.split(",");
    const stamp = number(fields[0]);
    const length = number(fields[1]);
    if (
      fields.length !== 4 || stamp === undefined || length === undefined ||
      number(fields[2]) === undefined
    ) {
      throw new TypeError(
        `Cannot read line ${
          i + 1
        } as an interval: expected START,LENGTH,MAX,HISTOGRAM`,
      );
    }
    let histogram: LatencyHistogram;
    try {
      histogram = LatencyHistogram.decode(fields[3]!);
    } catch (error) {
      throw new TypeError(
        `Cannot read line ${i + 1}: ${(error as Error).message}`,
      );
    }
    const YEAR = 365 * 24 * 3600;
    const start = baseTime !== undefined
      ? baseTime + stamp
      : stamp > YEAR
      ? stamp
      : (startTime ?? 0) + stamp;
    intervals.push({
      ...(tag === undefined ? {} : { tag }),
      start,
      length,
      histogram,
    });
  }
  if (intervals.length === 0) {
    throw new TypeError(
      "Cannot read it as a histogram log: it holds no interval line",
    );
  }
  return { ...(startTime === undefined ? {} : { startTime }), intervals };
}

/**
 * Writes an interval log to a file as a run goes: the header at the first
 * interval (whose start fixes `StartTime`), then a line per interval.
 * Requires `--allow-write` for the file.
 *
 * @example
 * ```ts ignore
 * await using log = await HistogramLogFile.create("run.hlog", "load.ts");
 * log.write(0, 1, histogram);
 * ```
 */
export class HistogramLogFile {
  /** The open log file. */
  #file: Deno.FsFile;
  /** The first header line's text. */
  #comment: string;
  /** When the run began, ms since the epoch; set at the first interval. */
  #startMs: number | undefined;
  /** Whether the file is closed. */
  #closed = false;
  #encoder = new TextEncoder();

  /** Wraps `file`, open for writing; {@linkcode HistogramLogFile.create} opens one. */
  constructor(file: Deno.FsFile, comment: string) {
    this.#file = file;
    this.#comment = comment;
  }

  /**
   * Creates (or truncates) `path` for a log.
   *
   * @throws {Deno.errors.NotCapable} Without `--allow-write` for it, and
   * the file system's errors.
   */
  static async create(
    path: string,
    comment: string,
  ): Promise<HistogramLogFile> {
    const file = await Deno.open(path, {
      write: true,
      create: true,
      truncate: true,
    });
    return new HistogramLogFile(file, comment);
  }

  /**
   * Appends one interval that began `startSec` seconds after the run's start
   * and lasted `lengthSec`. The run's start is taken at the first call, as
   * the wall clock now less the interval's end.
   */
  write(
    startSec: number,
    lengthSec: number,
    histogram: LatencyHistogram,
  ): void {
    let text = "";
    if (this.#startMs === undefined) {
      this.#startMs = Date.now() - (startSec + lengthSec) * 1000;
      text = formatLogHeader(this.#startMs, this.#comment);
    }
    text += formatLogInterval(startSec, lengthSec, histogram);
    // A line a second: a blocking write is simpler than queueing and costs
    // the run nothing it would notice.
    const bytes = this.#encoder.encode(text);
    for (let off = 0; off < bytes.length;) {
      off += this.#file.writeSync(bytes.subarray(off));
    }
  }

  /** Closes the file. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#file.close();
  }

  /** Closes the file (`await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
