/**
 * The UDP load generator's report: what a `--udp` run measured, built in
 * one place from its tally ({@linkcode buildUdpReport}), and how it, an
 * interval and a progress snapshot are printed. Private to `tools/load.ts`,
 * which re-exports the types.
 *
 * @module
 */

import { formatSpan } from "./_load_interval.ts";
import type { UdpTally } from "./_udp_flow.ts";
import {
  count,
  type CpuReport,
  cpuReport,
  ERROR_SAMPLES,
  formatCpu,
  formatPercentiles,
  type IntervalLatency,
  type LatencySummary,
  round,
} from "./_report.ts";

/** A snapshot of a UDP run in progress. */
export interface UdpLoadProgress {
  /** `running` while sending, `draining` while waiting for the last echoes. */
  phase: "running" | "draining";
  /** Milliseconds since sending started. */
  elapsed: number;
  /** Datagrams sent so far. */
  sent: number;
  /** Datagrams back intact in time so far. */
  received: number;
  /** While running: the interval that just ended, with its own figures. */
  interval?: UdpLoadInterval;
}

/** One interval of a UDP run, with its own figures (iperf3's intervals). */
export interface UdpLoadInterval {
  /** Seconds since sending started, when the interval began. */
  start: number;
  /** Seconds since sending started, when it ended. */
  end: number;
  /** Datagrams sent in the interval. */
  sent: number;
  /** Datagrams back intact in time in the interval (sent in it or before). */
  received: number;
  /** Datagrams sent per second in the interval, all flows together. */
  sentPerSecond: number;
  /** Datagrams received per second in the interval. */
  receivedPerSecond: number;
  /** Received megabytes (10^6 bytes) per second in the interval. */
  megabytesPerSecond: number;
  /** Round trips of the datagrams received in the interval, ms. */
  latency: IntervalLatency;
  /** Corrupted, refused, failed sends and receives in the interval. */
  errors: number;
}

/** What a UDP run measured. Every field is always present. */
export interface UdpLoadReport {
  /** `HOST:PORT` of the server. */
  target: string;
  /** Always `udp`. */
  transport: "udp";
  /** Flows (sockets). */
  flows: number;
  /** Datagram size in bytes, header included. */
  size: number;
  /** Datagrams per second per flow asked for; 0 floods. */
  rate: number;
  /** Whether the run flooded (`rate` 0). */
  flood: boolean;
  /** Datagrams per flow asked for; 0 is until the duration ends. */
  count: number;
  /** The loss timeout, ms. */
  lossTimeout: number;
  /** Seconds of sending the rates are computed over. */
  seconds: number;
  /** Datagrams sent. */
  sent: number;
  /** Datagrams back intact within the loss timeout, each counted once. */
  received: number;
  /** `sent - received`: not back intact within the loss timeout (late ones included). */
  lost: number;
  /** `lost` in percent of `sent`. */
  lostPercent: number;
  /** Intact first copies back after the loss timeout (counted in `lost`, not in `received`). */
  late: number;
  /** Extra intact copies of a datagram already back. */
  duplicated: number;
  /** Received datagrams that arrived after one of a higher sequence number. */
  reordered: number;
  /**
   * Datagrams back with a changed byte, another length, a damaged header,
   * or one this flow never sent; counted here only (a damaged copy does
   * not answer for its datagram, which is lost unless an intact copy comes).
   */
  corrupted: number;
  /** Datagrams from another address than the target's (not checked). */
  foreign: number;
  /** ICMP port unreachable reports (ECONNREFUSED on a send or a receive). */
  refused: number;
  /** Sends that failed otherwise (as a full buffer); those datagrams are not counted as sent. */
  sendErrors: number;
  /** Receives that failed otherwise; the flow stops receiving. */
  receiveErrors: number;
  /** Bytes sent. */
  bytesSent: number;
  /** Bytes of the received datagrams. */
  bytesReceived: number;
  /** Datagrams sent per second, all flows together. */
  sentPerSecond: number;
  /** Datagrams received per second, all flows together. */
  receivedPerSecond: number;
  /** Received megabytes (10^6 bytes) per second. */
  megabytesPerSecond: number;
  /** Round-trip time of each received datagram. */
  latency: LatencySummary;
  /**
   * RFC 3550 jitter (iperf3's), in ms: per flow J += (|D| - J) / 16 over
   * the differences D of successive round-trip times in order of arrival;
   * the mean over flows, as iperf3 sums its streams.
   */
  jitterMs: number;
  /** iperf3's name for `sent`. */
  packets: number;
  /** iperf3's name for `lost`. */
  "lost_packets": number;
  /** iperf3's name for `lostPercent`. */
  "lost_percent": number;
  /** iperf3's name for `jitterMs`. */
  "jitter_ms": number;
  /** iperf3's name for `reordered`. */
  "out_of_order": number;
  /** The `--max-loss` percent, or null when loss never fails the run. */
  maxLoss: number | null;
  /** Whether the loss was above `maxLoss`. */
  lossExceeded: boolean;
  /** CPU this process used while sending. */
  cpu: CpuReport;
  /** Each interval's own figures, in order. */
  intervals: UdpLoadInterval[];
  /** The first few distinct error messages, for a human. */
  errors: string[];
  /** The run was cut short by its signal (Ctrl-C). */
  interrupted: boolean;
  /**
   * True when something came back, nothing came back corrupted, and the
   * loss was not above `maxLoss`. Loss, duplicates and reordering alone are
   * what UDP allows: reported, not failures.
   */
  ok: boolean;
}

/** What {@linkcode buildUdpReport} makes a report of. */
export interface UdpReportInput {
  /** The run's settings, as the report states them. */
  settings:
    & Pick<
      UdpLoadReport,
      "target" | "flows" | "size" | "rate" | "count" | "lossTimeout"
    >
    & { maxLoss?: number };
  /** What the run counted. */
  tally: UdpTally;
  /** Seconds of sending. */
  seconds: number;
  /** The whole run's round trips. */
  latency: LatencySummary;
  /** The flows' mean RFC 3550 jitter, ms. */
  jitterMs: number;
  /** CPU this process used while sending (`process.cpuUsage(start)`). */
  cpu: { user: number; system: number };
  /** Each interval's own figures, in order. */
  intervals: UdpLoadInterval[];
  /** The run was cut short by its signal. */
  interrupted: boolean;
}

/**
 * The report of a UDP run from its settings and what it counted; says
 * what may be wrong when nothing came back.
 */
export function buildUdpReport(input: UdpReportInput): UdpLoadReport {
  const { settings, tally, seconds } = input;
  const { target, rate, maxLoss } = settings;
  const lost = tally.sent - tally.received;
  // To 0.001%: one datagram in 100,000.
  const lostPercent = tally.sent > 0 ? round(lost / tally.sent * 100, 3) : 0;
  const jitterMs = round(input.jitterMs, 3);
  const lossExceeded = maxLoss !== undefined && lostPercent > maxLoss;
  if (tally.sent > 0 && tally.received === 0) {
    tally.errors.unshift(
      `nothing came back from ${target}${
        tally.refused > 0
          ? " (ICMP port unreachable: nothing listens there)"
          : ": no echo service there, or every datagram was dropped"
      }`,
    );
    tally.errors.length = Math.min(tally.errors.length, ERROR_SAMPLES);
  }
  if (tally.sent === 0) tally.note(`not one datagram could be sent`);
  return {
    target,
    transport: "udp",
    flows: settings.flows,
    size: settings.size,
    rate,
    flood: rate === 0,
    count: settings.count,
    lossTimeout: settings.lossTimeout,
    seconds: round(seconds, 3),
    sent: tally.sent,
    received: tally.received,
    lost,
    lostPercent,
    late: tally.late,
    duplicated: tally.duplicated,
    reordered: tally.reordered,
    corrupted: tally.corrupted,
    foreign: tally.foreign,
    refused: tally.refused,
    sendErrors: tally.sendErrors,
    receiveErrors: tally.receiveErrors,
    bytesSent: tally.bytesSent,
    bytesReceived: tally.bytesReceived,
    sentPerSecond: seconds > 0 ? Math.round(tally.sent / seconds) : 0,
    receivedPerSecond: seconds > 0 ? Math.round(tally.received / seconds) : 0,
    megabytesPerSecond: seconds > 0
      ? round(tally.bytesReceived / seconds / 1e6, 2)
      : 0,
    latency: input.latency,
    jitterMs,
    packets: tally.sent,
    "lost_packets": lost,
    "lost_percent": lostPercent,
    "jitter_ms": jitterMs,
    "out_of_order": tally.reordered,
    maxLoss: maxLoss ?? null,
    lossExceeded,
    cpu: cpuReport(input.cpu, seconds),
    intervals: input.intervals,
    errors: [...tally.errors],
    interrupted: input.interrupted,
    ok: tally.received > 0 && tally.corrupted === 0 && !lossExceeded,
  };
}

/**
 * Renders a UDP report as the few lines `tools/load.ts --udp` prints.
 *
 * @param report What {@linkcode runUdpLoad} returned.
 * @returns Lines of text, without a trailing newline.
 */
export function formatUdpReport(report: UdpLoadReport): string {
  const l = report.latency;
  const lines = [
    `load: UDP echo of ${count(report.size)}-byte datagrams, ${
      count(report.flows)
    } flows, ${
      report.flood
        ? "flooding (--rate 0: as fast as the sockets take them, so loss measures how fast socket buffers overflow)"
        : `${report.rate} datagrams/s each`
    }${
      report.count ? `, ${count(report.count)} each at most` : ""
    }, ${report.seconds} s against ${report.target}`,
    `datagrams: ${count(report.sent)} sent, ${
      count(report.received)
    } received, ${count(report.lost)} lost (${report.lostPercent}%, ${
      count(report.late)
    } of them late), ${count(report.duplicated)} duplicated, ${
      count(report.reordered)
    } reordered, ${count(report.corrupted)} corrupted; loss timeout ${
      report.lossTimeout / 1000
    } s`,
    `throughput: ${count(report.receivedPerSecond)} datagrams/s received of ${
      count(report.sentPerSecond)
    } sent, ${report.megabytesPerSecond} MB/s echoed`,
    `rtt ms: ${formatPercentiles(l)}  (mean ${l.mean}, ${
      count(l.samples)
    } samples; its HdrHistogram in --json)`,
    `jitter ms: ${report.jitterMs} (RFC 3550 over round-trip times, as iperf3's jitter_ms)`,
  ];
  if (
    report.refused || report.sendErrors || report.receiveErrors ||
    report.foreign
  ) {
    lines.push(
      `errors: ${report.refused} refused (ICMP port unreachable), ${report.sendErrors} failed sends, ${report.receiveErrors} failed receives, ${report.foreign} from another address`,
    );
  }
  lines.push(formatCpu(report.cpu));
  for (const e of report.errors) lines.push(`error: ${e}`);
  const cut = report.interrupted
    ? `interrupted after ${report.seconds} s${report.ok ? "" : ", FAILED"}`
    : undefined;
  lines.push(
    cut !== undefined
      ? `result: ${cut}`
      : report.ok
      ? "result: ok"
      : report.lossExceeded
      ? `result: FAILED (loss ${report.lostPercent}% above --max-loss ${report.maxLoss}%)`
      : "result: FAILED",
  );
  return lines.join("\n");
}

/**
 * A progress snapshot as the parts of one status line, most important first:
 * while running, the figures of the interval that just ended.
 */
export function udpProgressParts(p: UdpLoadProgress): string[] {
  const i = p.interval;
  if (i === undefined) {
    return [
      `${p.phase} ${(p.elapsed / 1000).toFixed(1)} s`,
      `${count(p.sent)} sent`,
      `${count(p.received)} back in time`,
    ];
  }
  return [
    `running ${i.end.toFixed(1)} s: ${count(i.sentPerSecond)} sent/s`,
    `${count(i.receivedPerSecond)} back/s`,
    `p99 ${i.latency.p99.toFixed(3)} ms`,
    `${count(i.errors)} errors`,
  ];
}

/** Renders a UDP interval as one line of text, as iperf3 does. */
export function formatUdpInterval(i: UdpLoadInterval): string {
  return `${formatSpan(i)}  ${count(i.sentPerSecond).padStart(9)} sent/s  ${
    count(i.receivedPerSecond).padStart(9)
  } back/s  ${i.megabytesPerSecond.toFixed(2).padStart(8)} MB/s  p50 ${
    i.latency.p50.toFixed(3)
  } ms  p99 ${i.latency.p99.toFixed(3)} ms  ${count(i.errors)} errors`;
}
