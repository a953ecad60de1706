/**
 * `tools/load.ts merge REPORT...`: several runs of the load generator, on
 * several machines against one server, made one report, exactly: counts
 * summed, rates summed (the runs are taken to have run at the same time),
 * the HdrHistograms merged and the percentiles taken from the merged
 * histogram, never averaged. Reads `--json` reports (or `--json-stream`
 * output, whose last line is the report) and HdrHistogram interval logs
 * (`--histogram-log`, or any HdrHistogram writer's, values in ns).
 *
 * Private to this package: `tools/load.ts` runs it.
 *
 * @module
 */

import {
  CliError,
  type CommandSpec,
  describeError,
  fileError,
  parseCommandLine,
  UsageError,
} from "../_cli.ts";
import { LatencyHistogram } from "./_histogram.ts";
import { parseHistogramLog } from "./_hdr_log.ts";
import {
  count,
  ErrorSamples,
  formatPercentiles,
  type LatencySummary,
  round,
  summarize,
} from "./_report.ts";
import { type LatencySeries, latencySvg } from "./_plot.ts";

/** The counters of a TCP, TLS or Unix report that add up across runs. */
const STREAM_COUNTS = [
  "connections",
  "idle",
  "connected",
  "connectFailures",
  "resets",
  "closedByServer",
  "otherErrors",
  "messages",
  "bytesSent",
  "bytesEchoed",
  "mismatchedBytes",
  "missingBytes",
  "extraBytes",
] as const;
/** Its rates, which add up too when the runs ran at the same time. */
const STREAM_RATES = ["messagesPerSecond", "megabytesPerSecond"] as const;

/** The counters of a UDP report that add up across runs. */
const UDP_COUNTS = [
  "flows",
  "sent",
  "received",
  "lost",
  "late",
  "duplicated",
  "reordered",
  "corrupted",
  "foreign",
  "refused",
  "sendErrors",
  "receiveErrors",
  "bytesSent",
  "bytesReceived",
] as const;
const UDP_RATES = [
  "sentPerSecond",
  "receivedPerSecond",
  "megabytesPerSecond",
] as const;

/** One input of a merge, as read. */
export interface MergeSource {
  /** The file it came from. */
  file: string;
  /** A load.ts report, or an HdrHistogram interval log. */
  kind: "report" | "log";
  /** The report's fields (empty for a log). */
  report: Record<string, unknown>;
  /** Its round-trip latencies. */
  latency: LatencyHistogram;
  /** Its connect latencies (a TCP, TLS or Unix report). */
  connect?: LatencyHistogram;
  /** Seconds of traffic it covers. */
  seconds: number;
  /** For a log: its intervals' starts (s since the epoch), lengths and p99s. */
  intervals?: { start: number; length: number; histogram: LatencyHistogram }[];
}

/** What `merge` reports: the runs as one. */
export interface MergedReport {
  /** The inputs, in the order given. */
  sources: {
    file: string;
    kind: "report" | "log";
    target?: string;
    seconds: number;
    samples: number;
  }[];
  /** The servers the reports name (one when all ran against the same). */
  targets: string[];
  /** `tcp`, `tls`, `unix` or `udp` of the reports, `mixed`, or `log`. */
  transport: string;
  /** The longest run's seconds of traffic. */
  seconds: number;
  /** Every report's counters, summed (those of its transport). */
  counts: Record<string, number>;
  /** Every input's rates, summed: the runs are taken as simultaneous. */
  rates: Record<string, number>;
  /** Round-trip latency of every sample of every input, with its histogram. */
  latency: LatencySummary & { histogram: string };
  /** Connect latency of every report that has one, with its histogram. */
  connect?: LatencySummary & { histogram: string };
  /** Runs that were cut short (Ctrl-C). */
  interrupted: number;
  /** Every report's first distinct errors, first 5 ({@linkcode ErrorSamples}). */
  errors: string[];
  /** True when every report was `ok` (logs say nothing of it). */
  ok: boolean;
}

/** A latency object's histogram, or an error saying what is missing. */
function histogramOf(value: unknown, file: string, field: string) {
  const text = (value as { histogram?: unknown } | undefined)?.histogram;
  if (typeof text !== "string") {
    throw new CliError(
      `Cannot merge ${file}: its ${field} carries no histogram (a report of tools/load.ts --json from before histograms?)`,
    );
  }
  try {
    return LatencyHistogram.decode(text);
  } catch (error) {
    throw new CliError(
      `Cannot merge ${file}: ${field}: ${describeError(error)}`,
    );
  }
}

/**
 * Reads one input of a merge from its text: a JSON report, JSON lines
 * (`--json-stream`; the `end` event's report), or an interval log.
 *
 * @throws {CliError} When it is none of these.
 */
export function parseMergeSource(file: string, text: string): MergeSource {
  const trimmed = text.trim();
  if (trimmed.startsWith("{")) {
    let report: Record<string, unknown> | undefined;
    try {
      report = JSON.parse(trimmed);
    } catch {
      // JSON lines: the run's report is the `end` event's data.
      for (const line of trimmed.split("\n").reverse()) {
        try {
          const event = JSON.parse(line);
          if (event?.event === "end" && typeof event.data === "object") {
            report = event.data;
            break;
          }
        } catch {
          break;
        }
      }
    }
    if (
      report === undefined || typeof report !== "object" ||
      typeof report.latency !== "object" || typeof report.seconds !== "number"
    ) {
      throw new CliError(
        `Cannot merge ${file}: it is not a report of tools/load.ts --json`,
      );
    }
    return {
      file,
      kind: "report",
      report,
      latency: histogramOf(report.latency, file, "latency"),
      ...(typeof report.connect === "object"
        ? { connect: histogramOf(report.connect, file, "connect") }
        : {}),
      seconds: report.seconds,
    };
  }
  let log;
  try {
    log = parseHistogramLog(text);
  } catch (error) {
    throw new CliError(
      `Cannot merge ${file}: not a report of tools/load.ts --json nor an HdrHistogram log (${
        describeError(error)
      })`,
    );
  }
  const latency = new LatencyHistogram();
  for (const i of log.intervals) latency.merge(i.histogram);
  const first = Math.min(...log.intervals.map((i) => i.start));
  const last = Math.max(...log.intervals.map((i) => i.start + i.length));
  return {
    file,
    kind: "log",
    report: {},
    latency,
    seconds: last - first,
    intervals: log.intervals,
  };
}

/** The summary of `h` with its histogram. */
function withHistogram(h: LatencyHistogram) {
  return { ...summarize(h), histogram: h.encode() };
}

/**
 * Merges the inputs into one report.
 *
 * @throws {CliError} When reports of a stream and of UDP are mixed.
 */
export function mergeSources(sources: MergeSource[]): MergedReport {
  const reports = sources.filter((s) => s.kind === "report");
  const transports = [
    ...new Set(reports.map((s) => String(s.report.transport))),
  ];
  const udp = transports.includes("udp");
  if (udp && transports.length > 1) {
    throw new CliError(
      "Cannot merge UDP reports with TCP, TLS or Unix ones: their counts differ",
    );
  }
  const countKeys: readonly string[] = udp ? UDP_COUNTS : STREAM_COUNTS;
  const rateKeys: readonly string[] = udp ? UDP_RATES : STREAM_RATES;
  const counts: Record<string, number> = {};
  const rates: Record<string, number> = {};
  for (const key of countKeys) counts[key] = 0;
  for (const key of rateKeys) rates[key] = 0;
  const latency = new LatencyHistogram();
  let connect: LatencyHistogram | undefined;
  const errors = new ErrorSamples();
  let interrupted = 0;
  let ok = true;
  for (const s of sources) {
    latency.merge(s.latency);
    if (s.kind === "log") {
      // A log has samples and time only: its rate is theirs.
      if (!udp) {
        counts.messages! += s.latency.count;
        rates.messagesPerSecond! += s.seconds > 0
          ? s.latency.count / s.seconds
          : 0;
      }
      continue;
    }
    for (const key of countKeys) {
      const v = s.report[key];
      if (typeof v === "number") counts[key]! += v;
    }
    for (const key of rateKeys) {
      const v = s.report[key];
      if (typeof v === "number") rates[key]! += v;
    }
    if (s.connect) (connect ??= new LatencyHistogram()).merge(s.connect);
    if (s.report.interrupted === true) interrupted++;
    if (s.report.ok !== true) ok = false;
    for (const e of (s.report.errors as unknown[] | undefined) ?? []) {
      if (typeof e === "string") errors.note(e);
    }
  }
  for (const key of rateKeys) {
    rates[key] = key === "megabytesPerSecond"
      ? round(rates[key]!, 3)
      : Math.round(rates[key]!);
  }
  return {
    sources: sources.map((s) => ({
      file: s.file,
      kind: s.kind,
      ...(typeof s.report.target === "string"
        ? { target: s.report.target }
        : {}),
      seconds: round(s.seconds, 3),
      samples: s.latency.count,
    })),
    targets: [
      ...new Set(
        reports.map((s) => s.report.target).filter((t) =>
          typeof t === "string"
        ) as string[],
      ),
    ],
    transport: reports.length === 0
      ? "log"
      : transports.length === 1
      ? transports[0]!
      : "mixed",
    seconds: round(Math.max(0, ...sources.map((s) => s.seconds)), 3),
    counts,
    rates,
    latency: withHistogram(latency),
    ...(connect ? { connect: withHistogram(connect) } : {}),
    interrupted,
    errors: errors.errors,
    ok,
  };
}

/** The merged report as the few lines `merge` prints. */
export function formatMerged(m: MergedReport): string {
  const c = m.counts;
  const r = m.rates;
  const reports = m.sources.filter((s) => s.kind === "report").length;
  const logs = m.sources.length - reports;
  const what = [
    reports ? `${reports} report${reports === 1 ? "" : "s"}` : "",
    logs ? `${logs} log${logs === 1 ? "" : "s"}` : "",
  ].filter(Boolean).join(" and ");
  const lines = [
    `merged ${what}: ${m.sources.map((s) => s.file).join(", ")}${
      m.targets.length ? ` (against ${m.targets.join(", ")})` : ""
    }`,
  ];
  if (m.transport === "udp") {
    lines.push(
      `datagrams: ${count(c.sent!)} sent, ${count(c.received!)} received, ${
        count(c.lost!)
      } lost, ${count(c.corrupted!)} corrupted; ${
        count(r.receivedPerSecond!)
      } received/s in all`,
    );
  } else {
    lines.push(
      `throughput: ${count(r.messagesPerSecond!)} msg/s${
        reports ? `, ${r.megabytesPerSecond} MB/s` : ""
      } in all (the runs' rates summed); ${
        count(c.messages!)
      } messages, longest run ${m.seconds} s`,
    );
    if (reports) {
      lines.push(
        `connections: ${count(c.connected!)} of ${
          count(c.connections! + c.idle!)
        } up; ${c.connectFailures} failed to connect, ${c.resets} reset, ${c.closedByServer} closed by the server, ${c.otherErrors} other errors`,
        `bytes: ${count(c.mismatchedBytes!)} wrong, ${
          count(c.missingBytes!)
        } missing, ${count(c.extraBytes!)} extra`,
      );
    }
  }
  const l = m.latency;
  lines.push(
    `latency ms (${count(l.samples)} samples, from the merged histogram): ${
      formatPercentiles(l)
    }  (mean ${l.mean})`,
  );
  if (m.connect) {
    lines.push(`connect ms: ${formatPercentiles(m.connect)}`);
  }
  if (m.interrupted) lines.push(`interrupted: ${m.interrupted} of the runs`);
  for (const e of m.errors) lines.push(`error: ${e}`);
  lines.push(
    "histogram: HdrHistogram's compressed form in --json (latency.histogram)",
  );
  return lines.join("\n");
}

/** What `tools/load.ts merge` accepts. */
export const MERGE_SPEC: CommandSpec = {
  name: "tools/load.ts merge",
  summary:
    "Merge reports of tools/load.ts --json (or --json-stream), or HdrHistogram interval logs (--histogram-log), from runs on several machines against one server, into one report: counts and rates summed, histograms merged, percentiles of the whole.",
  positionals: "REPORT...",
  options: {
    json: {
      type: "boolean",
      description: "Print the merged report as one JSON object.",
    },
    svg: {
      type: "string",
      arg: "FILE",
      description:
        "Write the latency percentile spectrum of each input and of the whole to FILE (SVG).",
    },
  },
  epilog: `Examples (one server, two machines running the load):
  deno run --allow-net=10.0.0.5 tools/load.ts --host 10.0.0.5 -p 9000 -c 200 -d 30 --json > a.json
  deno run --allow-net=10.0.0.5 tools/load.ts --host 10.0.0.5 -p 9000 -c 200 -d 30 --json > b.json
  deno run --allow-read=a.json,b.json tools/load.ts merge a.json b.json

Values of a log are taken as ns (HdrHistogram's usual; a log's tags are
merged together). Exit status: 0; 1 when a report was not ok, or a file cannot
be read or is neither a report nor a log; 2 on a usage mistake.

Permissions: --allow-read of each REPORT; --allow-write=FILE for --svg.`,
};

/** Reads `path`, saying in one line why it cannot. */
async function readInput(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw fileError("read", "REPORT", path, error);
  }
}

/** Writes `text` to `path`, saying in one line why it cannot. */
async function writeOutput(
  path: string,
  text: string,
  option: string,
): Promise<void> {
  try {
    await Deno.writeTextFile(path, text);
  } catch (error) {
    throw fileError("write", option, path, error);
  }
}

/**
 * `tools/load.ts merge`'s command line: `args` after `merge`.
 *
 * @returns The exit code: 0, or 1 when a merged report is not `ok`.
 */
export async function mergeMain(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, MERGE_SPEC);
  if (!parsed) return 0;
  if (parsed.positionals.length === 0) {
    throw new UsageError(
      "Cannot merge nothing: name one or more reports (tools/load.ts merge a.json b.json)",
    );
  }
  const sources: MergeSource[] = [];
  for (const file of parsed.positionals) {
    sources.push(parseMergeSource(file, await readInput(file)));
  }
  const merged = mergeSources(sources);
  const svg = parsed.values.svg as string | undefined;
  if (svg !== undefined) {
    const series: LatencySeries[] = sources.map((s) => ({
      label: s.file,
      histogram: s.latency,
    }));
    if (sources.length > 1) {
      series.push({ label: "merged", histogram: mergedHistogram(sources) });
    }
    await writeOutput(
      svg,
      latencySvg({
        title: `Latency of ${sources.length} merged run${
          sources.length === 1 ? "" : "s"
        }`,
        series,
      }),
      "--svg",
    );
  }
  console.log(
    parsed.values.json ? JSON.stringify(merged) : formatMerged(merged),
  );
  return merged.ok || merged.transport === "log" ? 0 : 1;
}

/** Every input's latencies in one histogram. */
function mergedHistogram(sources: MergeSource[]): LatencyHistogram {
  const h = new LatencyHistogram();
  for (const s of sources) h.merge(s.latency);
  return h;
}
