/**
 * What a load run writes beside its report: `--histogram-log FILE`,
 * HdrHistogram's interval log (a line per interval, then one for the echoes
 * that came back after the stop, so the log's intervals merge to the
 * report's histogram), and `--svg FILE`, the run's latency percentile
 * spectrum and interval series. Both files are opened before the run, so a
 * path that cannot be written fails at once, not after the run.
 *
 * Private to `tools/load.ts`.
 *
 * @module
 */

import { fileError, type OptionSpec, UsageError } from "../_cli.ts";
import { writeAll } from "../_net.ts";
import { LatencyHistogram } from "./_histogram.ts";
import { HistogramLogFile } from "./_hdr_log.ts";
import {
  type CapacityPlot,
  capacitySvg,
  type IntervalPoint,
  latencySvg,
} from "./_plot.ts";

/** The options, for the load generator's command line. */
export const OUTPUT_OPTIONS: Record<string, OptionSpec> = {
  "histogram-log": {
    type: "string",
    arg: "FILE",
    description:
      "Write HdrHistogram's interval log to FILE: one compressed histogram a --interval (1 s if not given), values in ns; tools/load.ts merge reads it, as do HdrHistogram's tools.",
  },
  svg: {
    type: "string",
    arg: "FILE",
    description:
      "Draw the run to FILE (SVG): the latency percentile spectrum (p0 to p99.999, HdrHistogram's plot) and msg/s and p99 over time.",
  },
};

/** What a run's report gives the picture. */
export interface DrawnReport {
  /** `HOST:PORT` or the socket path. */
  target: string;
  /** Seconds of traffic. */
  seconds: number;
  /** The round trips, with their encoded histogram. */
  latency: { histogram: string };
  /** The intervals, with msg/s and p99 each (TCP, TLS, Unix). */
  intervals?: readonly unknown[];
}

/** Opens `path` for writing, truncated. */
async function create(option: string, path: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(path, { write: true, create: true, truncate: true });
  } catch (error) {
    throw fileError("write", option, path, error);
  }
}

/**
 * The files a run writes besides its report, open from before the run
 * until {@linkcode RunOutputs.finish} (or disposal) closes them.
 */
export class RunOutputs {
  /** The interval log, if asked for. */
  #log: HistogramLogFile | undefined;
  /** The SVG file, if asked for, and its path. */
  #svg: { file: Deno.FsFile; path: string } | undefined;
  /** Where the last logged interval ended, seconds since the start. */
  #loggedTo = 0;

  /** Wraps what {@linkcode RunOutputs.open} opened. */
  constructor(
    log: HistogramLogFile | undefined,
    svg: { file: Deno.FsFile; path: string } | undefined,
  ) {
    this.#log = log;
    this.#svg = svg;
  }

  /**
   * Opens the files `--histogram-log` and `--svg` name, if any.
   *
   * @throws {UsageError} On an empty path, or the same one for both.
   * @throws {CliError} When one cannot be opened for writing, saying which
   * permission to grant.
   */
  static async open(
    values: Record<string, unknown>,
    comment: string,
  ): Promise<RunOutputs> {
    const logPath = values["histogram-log"];
    const svgPath = values.svg;
    for (const [name, path] of [["histogram-log", logPath], ["svg", svgPath]]) {
      if (path === "") {
        throw new UsageError(
          `Cannot use --${name} "": expected a file name to write`,
        );
      }
    }
    if (typeof logPath === "string" && logPath === svgPath) {
      throw new UsageError(
        `Cannot use --histogram-log and --svg "${logPath}": they would write the same file`,
      );
    }
    let log: HistogramLogFile | undefined;
    if (typeof logPath === "string") {
      try {
        log = await HistogramLogFile.create(logPath, comment);
      } catch (error) {
        throw fileError("write", "--histogram-log", logPath, error);
      }
    }
    let svg: { file: Deno.FsFile; path: string } | undefined;
    if (typeof svgPath === "string") {
      try {
        svg = { file: await create("--svg", svgPath), path: svgPath };
      } catch (error) {
        log?.close();
        throw error;
      }
    }
    return new RunOutputs(log, svg);
  }

  /**
   * Logs the samples of one interval (`start` to `end`, seconds since the
   * traffic started): the run's `onHistogram`.
   */
  onHistogram = (start: number, end: number, h: LatencyHistogram): void => {
    if (!this.#log) return;
    // The echoes after the stop come as one more span from the last end.
    const from = Math.max(start, this.#loggedTo);
    this.#log.write(from, Math.max(0, end - from), h);
    this.#loggedTo = Math.max(this.#loggedTo, end);
  };

  /** Draws the report into the SVG file, if asked, and closes the files. */
  async finish(report: DrawnReport, title: string): Promise<void> {
    try {
      if (this.#svg) {
        const intervals = (report.intervals ?? []).map(asPoint).filter((
          i,
        ) => i !== undefined);
        const svg = latencySvg({
          title,
          subtitle: `${report.seconds} s against ${report.target}, ${
            new Date().toISOString().slice(0, 19).replace("T", " ")
          } UTC`,
          series: [{
            label: "round trip",
            histogram: LatencyHistogram.decode(report.latency.histogram),
          }],
          ...(intervals.length
            ? { intervals: [{ label: "run", intervals }] }
            : {}),
        });
        await this.#writeSvg(svg);
      }
    } finally {
      this.close();
    }
  }

  /**
   * Draws a capacity search (`--rate @P99MS`) into the SVG file, if asked:
   * p99 and p50 against the offered rate, the target and the answer; then
   * closes the files.
   */
  async finishCapacity(plot: CapacityPlot): Promise<void> {
    try {
      await this.#writeSvg(capacitySvg(plot));
    } finally {
      this.close();
    }
  }

  /** Writes `svg` to the SVG file, if there is one. */
  async #writeSvg(svg: string): Promise<void> {
    if (!this.#svg) return;
    try {
      await writeAll(this.#svg.file, new TextEncoder().encode(svg));
    } catch (error) {
      throw fileError("write", "--svg", this.#svg.path, error);
    }
  }

  /** Closes the files. */
  close(): void {
    this.#log?.close();
    this.#log = undefined;
    this.#svg?.file.close();
    this.#svg = undefined;
  }

  /** Closes the files (`using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * The figures an interval series draws, from a TCP interval (msg/s) or a
 * UDP one (datagrams received a second), or undefined.
 */
function asPoint(i: unknown): IntervalPoint | undefined {
  const p = i as
    | Partial<IntervalPoint & { receivedPerSecond: number }>
    | undefined;
  const rate = p?.messagesPerSecond ?? p?.receivedPerSecond;
  if (
    typeof p?.start !== "number" || typeof p.end !== "number" ||
    typeof rate !== "number" || typeof p.latency?.p99 !== "number"
  ) return undefined;
  return {
    start: p.start,
    end: p.end,
    messagesPerSecond: rate,
    latency: { p99: p.latency.p99 },
  };
}
