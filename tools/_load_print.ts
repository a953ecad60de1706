/**
 * What the load generator's command line prints: each interval as it ends
 * (a text line or a JSON line), the final report (text, JSON, or the last
 * JSON line of `--json-stream`), and the exit code it makes. Private to
 * `tools/load.ts`.
 *
 * @module
 */

import { CliError, EXIT_INTERRUPTED } from "../_cli.ts";
import type { StatusLine } from "../_status_line.ts";
import { formatReport, type LoadReport } from "./_load_report.ts";

/** What the command line prints while a run goes and at its end. */
export interface Printing {
  /** Intervals on stdout as they end: text lines, JSON lines, or none. */
  intervals: "text" | "json" | "none";
  /** The status line on stderr. */
  progress: boolean;
  /** The final report: text, one JSON object, or a JSON line `{event: "end"}`. */
  report: "text" | "json" | "json-stream";
}

/**
 * The `onInterval` of a run that prints each interval on stdout as `print`
 * says (a text line by `format`, or a JSON line), or none.
 */
export function intervalPrinter<I>(
  print: Printing,
  status: StatusLine,
  format: (interval: I) => string,
): ((interval: I) => void) | undefined {
  if (print.intervals === "none") return undefined;
  return (interval) => {
    status.clear();
    console.log(
      print.intervals === "json"
        ? JSON.stringify({ event: "interval", data: interval })
        : format(interval),
    );
  };
}

/** Prints a final report on stdout as `print` says (text by `format`). */
export function printReport<R>(
  report: R,
  print: Printing,
  format: (report: R) => string,
): void {
  console.log(
    print.report === "text" ? format(report) : JSON.stringify(
      print.report === "json" ? report : { event: "end", data: report },
    ),
  );
}

/**
 * Prints `report` as `print` says and returns the exit code: 130 when it
 * was interrupted; 1 when nothing connected (in text, as a one-line error),
 * or it failed without `--allow-errors`; 0 otherwise.
 *
 * @throws {CliError} In text, when nothing connected.
 */
export function finish(
  report: LoadReport,
  print: Printing,
  allowErrors: boolean,
): number {
  if (report.ended === "unconnected" && print.report === "text") {
    throw new CliError(report.reason);
  }
  printReport(report, print, formatReport);
  if (report.interrupted) return EXIT_INTERRUPTED;
  if (report.ended === "unconnected") return 1;
  return report.ok || allowErrors ? 0 : 1;
}
