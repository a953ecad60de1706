#!/usr/bin/env -S deno run --allow-net
/**
 * An echo load generator that checks every byte: the notes' "Scalability"
 * heading, which has nothing under it, made into a tool to point at any echo
 * server, the way tcpkali or rust_echo_bench are used.
 *
 * Each connection sends messages cut from its own byte pattern and checks
 * every byte that comes back, so a server that corrupts, drops, duplicates or
 * mixes up connections' data is caught. Two modes: `pingpong` (send a
 * message, wait for all of it, repeat) and `stream` (keep up to a window of
 * bytes in flight, writing and reading at once). `--rate` makes it open loop:
 * messages are due on a fixed schedule and latency counts from when a message
 * was due, not when it went out, so a stalled server cannot hide its stalls
 * (coordinated omission). Latencies go into a log-bucket histogram, never an
 * array of samples; the per-message path reuses its buffers.
 *
 * Two socket engines: `Deno.Conn`, the faster, and `node:net` (`node:tls`
 * over TLS), which stays fair past about 128 busy connections where
 * `Deno.Conn` starves some connections for seconds (a load generator must not
 * report its own stalls as the server's). Both speak TCP, TLS (`--tls`) and
 * Unix sockets (`--unix PATH`). The connect phase (the TCP connect, plus the
 * TLS handshake) is timed apart, and `--connect-rate` paces it, so that what
 * a handshake costs is measured too.
 *
 * `--udp` drives a UDP echo instead (`_udp_load.ts`): flows of
 * sequence-numbered datagrams at a paced rate, each checked, with loss,
 * duplicates, reordering, corruption, late arrivals, round-trip percentiles
 * and RFC 3550 jitter counted, under iperf3's names too.
 *
 * This file is the entry point: `main` runs what `_load_cli.ts` (the
 * options, the help text and their checks) parses, and prints through
 * `_load_print.ts`.
 *
 * @example
 * ```sh
 * deno run --allow-net=127.0.0.1 tools/load.ts --port 39304 -c 50 -d 5
 * ```
 *
 * @module
 */

import {
  CliError,
  EXIT_INTERRUPTED,
  parseCommandLine,
  type ParsedArgs,
  runMain,
  shutdownSignal,
} from "../_cli.ts";
import { StatusLine } from "../_status_line.ts";
import { LatencyHistogram } from "./_histogram.ts";
import type { CpuReport, IntervalLatency, LatencySummary } from "./_report.ts";
import { RunOutputs } from "./_hdr_outputs.ts";
import { mergeMain } from "./_merge.ts";
import {
  FAIR_LIMIT,
  type LoadOptions,
  runCapacitySearch,
  runLoad,
} from "./_load_run.ts";
import {
  type CapacityOptions,
  type CapacityReport,
  type CapacityStep,
  formatCapacityAnswer,
  formatCapacityProbe,
  formatCapacityStart,
  formatCapacityStep,
} from "./_load_capacity.ts";
import type { LoadEngine, LoadMode } from "./_load_flow.ts";
import {
  formatInterval,
  formatReport,
  type LoadEnd,
  type LoadInterval,
  type LoadProgress,
  type LoadReport,
  progressParts,
} from "./_load_report.ts";
import {
  DEFAULT_UDP_RATE,
  runUdpLoad,
  type UdpLoadOptions,
} from "./_udp_load.ts";
import { MAX_DATAGRAM, UDP_HEADER } from "./_udp_datagram.ts";
import {
  formatUdpInterval,
  formatUdpReport,
  type UdpLoadInterval,
  type UdpLoadProgress,
  type UdpLoadReport,
  udpProgressParts,
} from "./_udp_report.ts";
import { parseLoadCommand, parseUdpCommand, SPEC } from "./_load_cli.ts";
import {
  finish,
  intervalPrinter,
  type Printing,
  printReport,
} from "./_load_print.ts";

export { LatencyHistogram };
export { FAIR_LIMIT, runCapacitySearch, runLoad };
export type { LoadOptions };
export type { CpuReport, IntervalLatency, LatencySummary };
export { formatReport };
export type { CapacityOptions, CapacityReport, CapacityStep };
export type {
  LoadEnd,
  LoadEngine,
  LoadInterval,
  LoadMode,
  LoadProgress,
  LoadReport,
};
export {
  DEFAULT_UDP_RATE,
  formatUdpReport,
  MAX_DATAGRAM,
  runUdpLoad,
  UDP_HEADER,
  type UdpLoadInterval,
  type UdpLoadOptions,
  type UdpLoadProgress,
  type UdpLoadReport,
};

/**
 * The UDP mode's command line (`--udp`): checks its options, runs
 * {@linkcode runUdpLoad}, prints the report; returns the exit code.
 */
async function udpMain(
  v: ParsedArgs["values"],
): Promise<number> {
  const { options, interval, print } = await parseUdpCommand(v);
  using outputs = await RunOutputs.open(v, "Logged by tools/load.ts --udp");
  using status = new StatusLine();
  using shutdown = shutdownSignal();
  let report: UdpLoadReport;
  try {
    report = await runUdpLoad({
      ...options,
      signal: shutdown.signal,
      interval,
      onInterval: intervalPrinter(print, status, formatUdpInterval),
      onProgress: print.progress
        ? (p) => status.show(udpProgressParts(p))
        : undefined,
      onHistogram: outputs.onHistogram,
    });
  } catch (error) {
    // A name that does not resolve: a runtime failure, not a usage one.
    if (error instanceof RangeError) throw new CliError(error.message);
    throw error;
  }
  status.clear();
  await outputs.finish(
    report,
    `load.ts --udp: ${report.size}-byte datagrams, ${report.flows} flows`,
  );
  printReport(report, print, formatUdpReport);
  if (report.interrupted) return EXIT_INTERRUPTED;
  if (report.ok) return 0;
  // --allow-errors forgives corruption, never a loss above --max-loss or
  // a run where nothing came back.
  return v["allow-errors"] === true && report.received > 0 &&
      !report.lossExceeded
    ? 0
    : 1;
}

/**
 * The command line: parses `args`, runs the load, prints the report.
 *
 * @param args Command-line arguments, as `Deno.args`.
 * @returns The exit code.
 */
export async function main(args: string[]): Promise<number> {
  if (args[0] === "merge") return await mergeMain(args.slice(1));
  const parsed = parseCommandLine(args, SPEC);
  if (!parsed) return 0;
  const v = parsed.values;
  if (v.udp === true) return await udpMain(v);
  const { options: command, total, rate, targetP99, interval, print } =
    await parseLoadCommand(v);
  using status = new StatusLine();
  using shutdown = shutdownSignal();
  const options: LoadOptions = {
    ...command,
    signal: shutdown.signal,
    onProgress: print.progress
      ? (p) => status.show(progressParts(p))
      : undefined,
  };
  if (targetP99 !== undefined) {
    return await capacityMain(v, options, targetP99, print, status);
  }
  using outputs = await RunOutputs.open(v, "Logged by tools/load.ts");
  const report = await runLoad({
    ...options,
    rate,
    interval,
    onInterval: intervalPrinter(
      print,
      status,
      (i: LoadInterval) => formatInterval(i, total),
    ),
    onHistogram: outputs.onHistogram,
  });
  status.clear();
  await outputs.finish(
    report,
    `load.ts: ${report.mode} of ${report.size}-byte messages, ${report.connections} connections`,
  );
  return finish(report, print, v["allow-errors"] === true);
}

/**
 * The command line of a capacity search (`--rate @P99MS`): prints the probe
 * and each step as they end (text lines, or JSON lines with
 * `--json-stream`), then the answer; `--svg` draws p99 against the offered
 * rate. Returns the exit code.
 */
async function capacityMain(
  v: ParsedArgs["values"],
  options: LoadOptions,
  targetP99: number,
  print: Printing,
  status: StatusLine,
): Promise<number> {
  const say = (event: string, data: unknown, text: () => string) => {
    if (print.report === "json") return;
    status.clear();
    console.log(
      print.report === "json-stream" ? JSON.stringify({ event, data }) : text(),
    );
  };
  // parseCapacityTarget refused --histogram-log: only --svg is open here.
  // Open the picture's file first: a path that cannot be written fails now.
  using outputs = await RunOutputs.open(v, "Logged by tools/load.ts");
  say("start", { targetP99 }, () =>
    formatCapacityStart({
      targetP99,
      connections: options.connections ?? 50,
      seconds: (options.duration ?? 5_000) / 1000,
    }));
  const report = await runCapacitySearch({
    ...options,
    targetP99,
    onProbe: (p) => say("probe", p, () => formatCapacityProbe(p)),
    onStep: (s) => say("step", s, () => formatCapacityStep(s, targetP99)),
  });
  status.clear();
  await outputs.finishCapacity({
    title: `capacity of ${report.target}: p99 under ${targetP99} ms`,
    subtitle:
      `${report.connections} connections, ${report.mode} of ${report.size}-byte messages, ${report.stepSeconds} s a step`,
    steps: report.steps,
    targetP99,
    ...(report.answer === null ? {} : { answer: report.answer }),
  });
  printReport(report, print, formatCapacityAnswer);
  if (report.interrupted) return EXIT_INTERRUPTED;
  return report.ok ? 0 : 1;
}

if (import.meta.main) runMain(main);
