/**
 * The load generator's report: what a TCP, TLS or Unix run measured, built
 * in one place from a run's tallies and histograms ({@linkcode buildReport}),
 * and how it and a progress snapshot are printed. Private to
 * `tools/load.ts`, which re-exports the types.
 *
 * @module
 */

import type { LatencyHistogram } from "./_histogram.ts";
import { formatSpan } from "./_load_interval.ts";
import type { LoadEngine, LoadMode, Tally } from "./_load_flow.ts";
import {
  count,
  type CpuReport,
  cpuReport,
  formatCpu,
  formatPercentiles,
  type IntervalLatency,
  type LatencySummary,
  round,
  summarize,
} from "./_report.ts";

/** One interval of a run's traffic, with its own figures (iperf3's intervals). */
export interface LoadInterval {
  /** Seconds since the traffic started, when the interval began. */
  start: number;
  /** Seconds since the traffic started, when it ended. */
  end: number;
  /** Messages echoed and checked in the interval. */
  messages: number;
  /** Messages per second in the interval, all connections together. */
  messagesPerSecond: number;
  /** Echoed megabytes (10^6 bytes) per second in the interval. */
  megabytesPerSecond: number;
  /** Round trips of the messages completed in the interval, ms. */
  latency: IntervalLatency;
  /** Connections open at the interval's end. */
  connected: number;
  /** Errors counted in the interval (failed connects, resets, closes, wrong bytes). */
  errors: number;
}

/** A snapshot of a run in progress. */
export interface LoadProgress {
  /** `connecting`, `running` or `draining`. */
  phase: "connecting" | "running" | "draining";
  /** Milliseconds since the traffic started (0 while connecting). */
  elapsed: number;
  /** Connections open now. */
  connected: number;
  /** Connections asked for (active plus idle). */
  target: number;
  /** Messages echoed and checked so far. */
  messages: number;
  /** Bytes echoed and checked so far. */
  bytes: number;
  /** Failed connects, resets, closes by the server, and wrong bytes so far. */
  errors: number;
  /** While running: the interval that just ended, with its own figures. */
  interval?: LoadInterval;
}

/**
 * How a run ended: it ran its `duration`; it was `interrupted` (its signal
 * aborted, as by Ctrl-C); every connection was gone before the end
 * (`disconnected`); or not one connection came up (`unconnected`).
 */
export type LoadEnd =
  | "duration"
  | "interrupted"
  | "disconnected"
  | "unconnected";

/** What a run measured. Every field is always present. */
export interface LoadReport {
  /** `HOST:PORT` of the server, or the path of its Unix socket. */
  target: string;
  /** How the connections were carried. */
  transport: "tcp" | "tls" | "unix";
  /** The mode run. */
  mode: LoadMode;
  /** Active connections asked for. */
  connections: number;
  /** Idle connections asked for. */
  idle: number;
  /** Message size in bytes. */
  size: number;
  /** Stream window in bytes (0 in pingpong mode). */
  window: number;
  /** Messages per second per connection asked for; 0 is closed loop. */
  rate: number;
  /** Socket API used. */
  engine: LoadEngine;
  /** Connections that came up (active and idle). */
  connected: number;
  /** Milliseconds the connect ramp took. */
  connectMs: number;
  /** Connections per second asked for (`connectRate`); 0 is as fast as they come. */
  connectRate: number;
  /** Connections that came up per second of the connect ramp. */
  connectsPerSecond: number;
  /**
   * Each connection's connect phase, from the connect call until it is
   * ready to send: the TCP connect, plus the TLS handshake.
   */
  connect: LatencySummary;
  /** Connects that failed or timed out. */
  connectFailures: number;
  /** Connections reset by the peer (ECONNRESET, EPIPE). */
  resets: number;
  /** Connections the server closed before the run was over. */
  closedByServer: number;
  /** Connections that failed some other way. */
  otherErrors: number;
  /** Seconds of traffic the rates are computed over. */
  seconds: number;
  /**
   * Messages echoed and checked in the whole run, those in flight at the
   * end of the timed seconds included (as many as latency samples).
   */
  messages: number;
  /** Messages per second over the timed seconds, all connections together. */
  messagesPerSecond: number;
  /** Bytes written to the server in the whole run. */
  bytesSent: number;
  /** Bytes echoed back and checked in the whole run. */
  bytesEchoed: number;
  /** Echoed megabytes (10^6 bytes) per second during the timed seconds. */
  megabytesPerSecond: number;
  /** Echoed bytes that differ from what was sent at that offset. */
  mismatchedBytes: number;
  /** Bytes sent that never came back (peer closed, reset, or drain timed out). */
  missingBytes: number;
  /** Bytes that came back beyond what was sent. */
  extraBytes: number;
  /** Round-trip latency of each message. */
  latency: LatencySummary;
  /** CPU this process used during the timed seconds. */
  cpu: CpuReport;
  /** Each interval's own figures, in order. */
  intervals: LoadInterval[];
  /** The first few distinct error messages, for a human. */
  errors: string[];
  /** How the run ended. */
  ended: LoadEnd;
  /** The run was cut short by its signal (Ctrl-C): `ended` is `interrupted`. */
  interrupted: boolean;
  /**
   * Why the run ended early or failed, in one line; empty when it ran its
   * duration and is `ok`.
   */
  reason: string;
  /** True when every connection came up and every byte came back intact. */
  ok: boolean;
}

/** What the connect phase is, by transport, for the report. */
const CONNECT_PHASE = {
  tcp: "TCP connect",
  tls: "TCP connect + TLS handshake",
  unix: "Unix socket connect",
} as const;

/**
 * Renders a report as the few lines `tools/load.ts` prints.
 *
 * @param report What {@linkcode runLoad} returned.
 * @returns Lines of text, without a trailing newline.
 */
export function formatReport(report: LoadReport): string {
  const l = report.latency;
  const c = report.connect;
  const what = report.mode === "stream"
    ? `stream of ${count(report.size)}-byte writes, window ${
      count(report.window)
    } bytes`
    : `pingpong of ${count(report.size)}-byte messages`;
  const lines = [
    `load: ${what}, ${count(report.connections)} connections${
      report.idle ? ` + ${count(report.idle)} idle` : ""
    }${
      report.rate ? `, ${report.rate} msg/s each (open loop)` : ""
    }, ${report.seconds} s against ${report.target}${
      report.transport === "tcp" ? "" : ` over ${report.transport}`
    } (engine ${report.engine})`,
    `connections: ${count(report.connected)} of ${
      count(report.connections + report.idle)
    } up in ${report.connectMs} ms; ${report.connectFailures} failed to connect, ${report.resets} reset, ${report.closedByServer} closed by the server, ${report.otherErrors} other errors`,
    `connect ms (${CONNECT_PHASE[report.transport]}): ${
      formatPercentiles(c)
    }  (mean ${c.mean}); ${count(report.connectsPerSecond)} connects/s${
      report.connectRate ? ` (asked ${report.connectRate}/s)` : ""
    }`,
    `throughput: ${
      count(report.messagesPerSecond)
    } msg/s, ${report.megabytesPerSecond} MB/s echoed (${
      count(report.messages)
    } messages, those in flight at the end included)`,
    `latency ms: ${formatPercentiles(l)}  (mean ${l.mean}, ${
      count(l.samples)
    } samples; its HdrHistogram in --json)`,
    `bytes: ${count(report.bytesEchoed)} of ${
      count(report.bytesSent)
    } echoed and checked; ${count(report.mismatchedBytes)} mismatched, ${
      count(report.missingBytes)
    } missing, ${count(report.extraBytes)} extra`,
    formatCpu(report.cpu),
  ];
  for (const e of report.errors) lines.push(`error: ${e}`);
  if (report.ended === "disconnected") lines.push(`ended: ${report.reason}`);
  lines.push(
    report.interrupted
      ? `result: interrupted after ${report.seconds} s${
        report.ok ? "" : ", FAILED"
      }`
      : report.ok
      ? "result: ok"
      : "result: FAILED",
  );
  return lines.join("\n");
}

/** Renders an interval as one line of text, as iperf3 does. */
export function formatInterval(i: LoadInterval, target: number): string {
  return `${formatSpan(i)}  ${count(i.messagesPerSecond).padStart(9)} msg/s  ${
    i.megabytesPerSecond.toFixed(2).padStart(8)
  } MB/s  p50 ${i.latency.p50.toFixed(3)} ms  p99 ${
    i.latency.p99.toFixed(3)
  } ms  ${count(i.connected)}/${count(target)} up  ${count(i.errors)} errors`;
}

/**
 * A progress snapshot as the parts of one status line, most important first
 * (a narrow terminal shows the first ones): while running, the figures of
 * the interval that just ended, never a running average.
 */
export function progressParts(p: LoadProgress): string[] {
  const up = `${count(p.connected)}/${count(p.target)} up`;
  const errors = `${count(p.errors)} errors`;
  const i = p.interval;
  if (p.phase !== "running" || i === undefined) {
    return [
      p.phase === "running"
        ? `running ${(p.elapsed / 1000).toFixed(1)} s`
        : p.phase,
      up,
      errors,
    ];
  }
  return [
    `running ${i.end.toFixed(1)} s: ${count(i.messagesPerSecond)} msg/s`,
    `${i.megabytesPerSecond.toFixed(1)} MB/s`,
    `p99 ${i.latency.p99.toFixed(3)} ms`,
    up,
    errors,
  ];
}

/** What {@linkcode buildReport} makes a report of: a run's settings and what it counted. */
export interface ReportInput {
  /** The run's settings, as the report states them. */
  settings: Pick<
    LoadReport,
    | "target"
    | "transport"
    | "mode"
    | "connections"
    | "idle"
    | "size"
    | "window"
    | "rate"
    | "engine"
    | "connectRate"
  >;
  /** The run's counters, after the drain. */
  tally: Tally;
  /** Round trips of the messages. */
  latency: LatencyHistogram;
  /** Connect phases of the connections. */
  connect: LatencyHistogram;
  /** Milliseconds the connect ramp took. */
  connectMs: number;
  /** Seconds of traffic, from the start until the stop. */
  seconds: number;
  /** Messages echoed and checked by the stop: the rate is theirs. */
  messages: number;
  /** Bytes echoed and checked by the stop. */
  bytes: number;
  /** `process.cpuUsage()`'s difference over the traffic, µs. */
  cpu: { user: number; system: number };
  /** Each interval's figures. */
  intervals: LoadInterval[];
  /** How the run ended. */
  ended: LoadEnd;
  /** The percentiles the summaries list. */
  percentiles: readonly number[];
}

/**
 * The report of a run: every figure rounded to what it can mean, and `ok`
 * when every connection came up and every byte came back intact. The one
 * place a {@linkcode LoadReport} is made.
 */
export function buildReport(input: ReportInput): LoadReport {
  const { tally, seconds, connectMs } = input;
  const per = (n: number) => seconds > 0 ? n / seconds : 0;
  const report: LoadReport = {
    ...input.settings,
    connected: tally.everConnected,
    connectMs: round(connectMs, 1),
    connectsPerSecond: connectMs > 0
      ? Math.round(tally.everConnected / (connectMs / 1000))
      : 0,
    connect: summarize(input.connect, input.percentiles),
    connectFailures: tally.connectFailures,
    resets: tally.resets,
    closedByServer: tally.closedByServer,
    otherErrors: tally.otherErrors,
    seconds: round(seconds, 3),
    messages: tally.messages,
    messagesPerSecond: Math.round(per(input.messages)),
    bytesSent: tally.bytesSent,
    bytesEchoed: tally.bytesEchoed,
    megabytesPerSecond: round(per(input.bytes) / 1e6, 2),
    mismatchedBytes: tally.mismatchedBytes,
    missingBytes: tally.missingBytes,
    extraBytes: tally.extraBytes,
    latency: summarize(input.latency, input.percentiles),
    cpu: cpuReport(input.cpu, seconds),
    intervals: input.intervals,
    errors: [...tally.errors],
    ended: input.ended,
    interrupted: input.ended === "interrupted",
    reason: "",
    ok: false,
  };
  report.ok = report.connectFailures === 0 && report.resets === 0 &&
    report.closedByServer === 0 && report.otherErrors === 0 &&
    report.mismatchedBytes === 0 && report.missingBytes === 0 &&
    report.extraBytes === 0;
  report.reason = reasonOf(report);
  return report;
}

/** Why `report`'s run ended early or failed, in one line ("" if neither). */
function reasonOf(report: LoadReport): string {
  const first = report.errors[0];
  switch (report.ended) {
    case "unconnected":
      return first ?? `cannot connect to ${report.target}`;
    case "disconnected":
      return `every connection is gone after ${report.seconds} s${
        first === undefined ? "" : ` (${first})`
      }`;
    case "interrupted":
      return `interrupted after ${report.seconds} s`;
  }
  if (report.ok) return "";
  return first ?? "some bytes did not come back intact";
}
