/**
 * The load generator's run, {@linkcode runLoad}: the connect ramp (paced by
 * `connectRate`, timed per connection), the traffic on every connection at
 * once with its intervals, the early end when every connection is gone or
 * the signal aborts, and the drain; and {@linkcode runCapacitySearch} on it.
 * The engines move the bytes (`_load_net.ts`, `_load_deno.ts`), the flows
 * check them (`_load_flow.ts`), the report is built in `_load_report.ts`.
 * Private to `tools/load.ts`, which re-exports it.
 *
 * @module
 */

import net from "node:net";
import process from "node:process";
import { CliError, MAX_TIMER_MS, sleep } from "../_cli.ts";
import {
  connect,
  type ConnectEndpoint,
  formatEndpoint,
  type TlsClientOptions,
} from "../_net.ts";
import { connectEndpoint } from "../_net_options.ts";
import {
  describeShortage,
  isTooManyOpenFiles,
  openFilesLimit,
} from "./_load_nofile.ts";
import { LatencyHistogram } from "./_histogram.ts";
import { DEFAULT_PERCENTILES, intervalLatency, round } from "./_report.ts";
import { runIntervals } from "./_load_interval.ts";
import { Pacer } from "./_load_pacer.ts";
import { Pattern } from "./_load_pattern.ts";
import {
  type CapacityOptions,
  type CapacityReport,
  searchCapacity,
} from "./_load_capacity.ts";
import {
  describeConnectError,
  Flow,
  type LoadEngine,
  type LoadMode,
  loseOutstanding,
  type Run,
  STREAM_READ,
  Tally,
} from "./_load_flow.ts";
import { connectNode, driveNet, holdNet } from "./_load_net.ts";
import { driveConn, holdConn } from "./_load_deno.ts";
import {
  buildReport,
  type LoadEnd,
  type LoadInterval,
  type LoadProgress,
  type LoadReport,
} from "./_load_report.ts";

/**
 * Most active connections the `auto` engine drives with `Deno.Conn`;
 * past it, `node:net`. Measured on the project's machine: at 128 busy
 * connections Deno.TcpConn kept p99.9 at 5 ms, at 250 it was 400 ms.
 */
export const FAIR_LIMIT = 128;

/** What {@linkcode runLoad} does. */
export interface LoadOptions {
  /** Server name or address. Default `127.0.0.1`. */
  hostname?: string;
  /** Server port (1 to 65535); required unless `unix` is given. */
  port?: number;
  /** Connect to the Unix socket at this path instead of `hostname` and `port`. */
  unix?: string;
  /**
   * Speak TLS: how the server is verified (against `tls.serverName`, or
   * `hostname`) and what is presented. Not with `unix`.
   */
  tls?: TlsClientOptions;
  /** Connections that carry traffic. Default 50. */
  connections?: number;
  /** Connections opened and held without traffic, beside the active ones. Default 0. */
  idle?: number;
  /** Bytes per message (pingpong) or per write (stream). Default 64. */
  size?: number;
  /** `pingpong` (default) or `stream`. */
  mode?: LoadMode;
  /** How long traffic runs, in ms, once every connection is up. Default 5000. */
  duration?: number;
  /** Messages per second per connection (open loop); 0 is as fast as possible. Default 0. */
  rate?: number;
  /** Connects in flight at once while opening connections. Default 100. */
  ramp?: number;
  /**
   * Connections opened per second (tcpkali's `--connect-rate`), still at
   * most `ramp` in flight; 0 (default) opens them as fast as they come.
   */
  connectRate?: number;
  /** Stream mode: most bytes in flight per connection. Default 256 KiB. */
  window?: number;
  /**
   * How sockets are driven: `deno`, `Deno.Conn`, the faster, but unfair
   * past about 128 busy connections (some stall for seconds); `net`,
   * `node:net` (`node:tls`), fair to every connection; `auto` (default),
   * `deno` up to {@linkcode FAIR_LIMIT} active connections, `net` above.
   */
  engine?: LoadEngine | "auto";
  /** Give up on one connect (with its TLS handshake) after this many ms. Default 5000. */
  connectTimeout?: number;
  /** After the run, how long outstanding echoes may take, in ms. Default 5000. */
  drainTimeout?: number;
  /**
   * Milliseconds of one interval: the report's `intervals`, each with its
   * own figures, and the progress snapshots. Default 1000.
   */
  interval?: number;
  /** Called at each interval's end with its figures. */
  onInterval?: (interval: LoadInterval) => void;
  /** The percentiles the report lists. Default 50, 90, 99, 99.9. */
  percentiles?: readonly number[];
  /**
   * The bytes every message carries (tcpkali's `--message`), instead of
   * random ones; `size` is then its length. Every byte is still checked, but
   * connections that all send the same bytes cannot be told apart.
   */
  message?: Uint8Array;
  /**
   * Called with each interval's histogram as it ends (`start`, `end`:
   * seconds since the traffic started), then once with the echoes that
   * came back after the stop: `--histogram-log` writes them.
   */
  onHistogram?: (start: number, end: number, h: LatencyHistogram) => void;
  /**
   * Called with a snapshot each interval: while connecting, and at each
   * interval's end while running.
   */
  onProgress?: (progress: LoadProgress) => void;
  /** Aborting it ends the traffic early; the report covers the time run. */
  signal?: AbortSignal;
}

/**
 * Where `options` point: a Unix socket, or `hostname` and `port` over TCP or
 * TLS.
 *
 * @throws {RangeError} If the port is missing or out of range, or `unix`
 * comes with `tls`.
 */
function endpointOf(options: LoadOptions): ConnectEndpoint {
  const port = options.port ?? NaN;
  if (options.unix === undefined) validate("port", port, 1, 65535);
  return connectEndpoint({
    hostname: options.hostname ?? "127.0.0.1",
    port,
    ...(options.unix !== undefined ? { unix: options.unix } : {}),
    ...(options.tls !== undefined ? { tls: options.tls } : {}),
  });
}

/**
 * Checks one whole-number option of a run (both load modes').
 *
 * @throws {RangeError} Unless `value` is a whole number from `min` to `max`.
 */
export function validate(
  name: string,
  value: number,
  min: number,
  max: number,
): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Cannot use ${name} "${value}": expected a whole number from ${min} to ${max}`,
    );
  }
}

/**
 * Drives an echo server with `connections` connections for `duration` ms and
 * checks every byte that comes back. Connections open first (at most `ramp`
 * connects in flight), then traffic starts on all at once, stops after the
 * duration (or as soon as every connection is gone, or `signal` aborts), and
 * each connection waits for its outstanding echo before it closes. Never
 * throws for what the server does: failures are counted in the report, and
 * a run where nothing connected is reported `ended: "unconnected"`.
 *
 * Requires `--allow-net` to the server's address (a Unix socket:
 * `--allow-net=unix:PATH --allow-read=PATH --allow-write=PATH`).
 *
 * @param options What to run; only `port` (or `unix`) is required.
 * @returns The measured report.
 * @throws {RangeError} On an option out of range.
 * @throws {CliError} When a connect fails for want of a file descriptor
 * (the open-files limit), saying how to raise it.
 *
 * @example
 * ```ts ignore
 * import { runLoad } from "./load.ts";
 * const report = await runLoad({ port: 39304, connections: 10, duration: 1000 });
 * console.log(report.messagesPerSecond, report.latency.p99, report.ok);
 * ```
 */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const connections = options.connections ?? 50;
  const idle = options.idle ?? 0;
  const size = options.message?.length ?? options.size ?? 64;
  const mode = options.mode ?? "pingpong";
  const duration = options.duration ?? 5_000;
  const rate = options.rate ?? 0;
  const ramp = options.ramp ?? 100;
  const connectRate = options.connectRate ?? 0;
  const engine = (options.engine ?? "auto") === "auto"
    ? (connections > FAIR_LIMIT ? "net" : "deno")
    : options.engine;
  // Pingpong is a stream whose window is one message.
  const window = mode === "stream"
    ? Math.max(options.window ?? 256 * 1024, size)
    : size;
  const connectTimeout = options.connectTimeout ?? 5_000;
  const drainTimeout = options.drainTimeout ?? 5_000;
  const intervalMs = options.interval ?? 1_000;
  const endpoint = endpointOf(options);
  validate("connections", connections, 0, 1_000_000);
  validate("idle", idle, 0, 1_000_000);
  if (connections + idle === 0) {
    throw new RangeError(
      'Cannot use connections "0" with idle "0": open at least one connection',
    );
  }
  validate("size", size, 1, 16 * 1024 * 1024);
  validate("ramp", ramp, 1, 1_000_000);
  if (mode !== "pingpong" && mode !== "stream") {
    throw new RangeError(
      `Cannot use mode "${mode}": expected pingpong or stream`,
    );
  }
  if (engine !== "net" && engine !== "deno") {
    throw new RangeError(
      `Cannot use engine "${engine}": expected auto, net or deno`,
    );
  }
  if (!(duration > 0) || !(rate >= 0) || !Number.isFinite(rate)) {
    throw new RangeError(
      `Cannot use duration "${duration}" and rate "${rate}": expected a duration above 0 and a rate of 0 or more`,
    );
  }
  if (!(intervalMs > 0) || !Number.isFinite(intervalMs)) {
    throw new RangeError(
      `Cannot use interval "${intervalMs}": expected a number of ms above 0`,
    );
  }
  if (!(connectRate >= 0) || !Number.isFinite(connectRate)) {
    throw new RangeError(
      `Cannot use connectRate "${connectRate}": expected 0 (as fast as they come) or more connections per second`,
    );
  }

  const target = formatEndpoint(endpoint);
  const tally = new Tally();
  const stopper = new AbortController();
  let begin = () => {};
  const started = new Promise<void>((resolve) => begin = resolve);
  // One timer paces every connection; stopping wakes them all.
  const pacer = new Pacer();
  stopper.signal.addEventListener("abort", () => pacer.stop(), {
    once: true,
  });
  const run: Run = {
    tally,
    pattern: new Pattern(size, connections, options.message),
    histogram: new LatencyHistogram(),
    transport: endpoint.transport,
    size,
    connections,
    window,
    interval: rate > 0 ? 1000 / rate : 0,
    pacer,
    stop: stopper.signal,
    started,
    startedAt: 0,
  };
  let ended: LoadEnd = "duration";
  const onAbort = () => {
    if (ended === "duration") ended = "interrupted";
    stopper.abort();
  };
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener("abort", onAbort, { once: true });

  let phase: LoadProgress["phase"] = "connecting";
  const progress = options.onProgress;
  const snapshot = (interval?: LoadInterval): LoadProgress => ({
    phase,
    elapsed: run.startedAt > 0 ? performance.now() - run.startedAt : 0,
    connected: tally.connected,
    target: connections + idle,
    messages: tally.messages,
    bytes: tally.bytesEchoed,
    errors: tally.errorCount,
    ...(interval === undefined ? {} : { interval }),
  });
  // While connecting, a snapshot an interval; while running, one at each
  // interval's end, with its figures.
  const ticker = progress
    ? setInterval(() => {
      if (phase === "connecting") progress(snapshot());
    }, intervalMs)
    : undefined;

  const flows: Flow[] = [];
  const idlers: Flow[] = [];
  const running: Promise<void>[] = [];
  const holding: Promise<void>[] = [];
  const rampStart = performance.now();
  const readLength = mode === "stream" ? Math.max(STREAM_READ, size) : size;
  let next = 0;
  // Each connection is handed to its engine as soon as it is up (so that a
  // reset while others connect is noticed) but sends nothing before `begin`.
  function adopt(i: number, conn: Deno.Conn | net.Socket): void {
    if (i < connections) {
      const flow = new Flow(run, flows.length, readLength);
      flows.push(flow);
      running.push(
        conn instanceof net.Socket
          ? driveNet(run, flow, conn)
          : driveConn(run, flow, conn),
      );
    } else {
      const flow = new Flow(run, i, 16);
      idlers.push(flow);
      holding.push(
        conn instanceof net.Socket
          ? holdNet(run, flow, conn)
          : holdConn(run, flow, conn),
      );
    }
  }
  // The connect phase, timed from each connect call until the connection is
  // ready to send (TCP connect, plus the TLS handshake).
  const connectHistogram = new LatencyHistogram();
  const connectInterval = connectRate > 0 ? 1000 / connectRate : 0;
  /** Set when a connect failed for want of a file descriptor. */
  let shortage: string | undefined;
  async function connector(): Promise<void> {
    while (next < connections + idle && !stopper.signal.aborted) {
      const i = next++;
      if (connectInterval > 0) {
        // Connect i is due i intervals after the first; one that is late
        // (every --ramp slot was busy) goes at once, and the connects/s
        // achieved tells the shortfall.
        const due = rampStart + i * connectInterval;
        for (let wait = due - performance.now(); wait > 0.2;) {
          await sleep(Math.min(wait, MAX_TIMER_MS), stopper.signal);
          if (stopper.signal.aborted) break;
          wait = due - performance.now();
        }
        if (stopper.signal.aborted) break;
      }
      const start = performance.now();
      try {
        const conn = engine === "net"
          ? await connectNode(endpoint, connectTimeout)
          : await connect(endpoint, { timeout: connectTimeout });
        connectHistogram.record(performance.now() - start);
        tally.opened(i < connections);
        adopt(i, conn);
      } catch (error) {
        if (isTooManyOpenFiles(error)) {
          // This machine's limit, not the server's doing: the run cannot
          // be what was asked, so it stops, saying how to raise it.
          shortage ??= describeShortage(
            `-c ${connections}${idle > 0 ? ` + --idle ${idle}` : ""}`,
            connections + idle,
            await openFilesLimit(),
          );
          stopper.abort();
          return;
        }
        tally.connectFailures++;
        tally.note(
          `cannot connect to ${target}: ${
            describeConnectError(endpoint, error)
          }`,
        );
      }
    }
  }
  // The run's latencies: each interval's histogram is merged in as it ends.
  const latency = new LatencyHistogram();
  const intervals: LoadInterval[] = [];
  try {
    await Promise.all(
      Array.from({ length: Math.min(ramp, connections + idle) }, connector),
    );
    if (shortage !== undefined) throw new CliError(shortage);
    const connectMs = performance.now() - rampStart;
    if (tally.everConnected === 0 && ended === "duration") {
      ended = "unconnected";
    }
    // Every connection may be gone by now, or go while the traffic runs:
    // then the run ends at once.
    const gone = () =>
      connections > 0 ? tally.active === 0 : tally.connected === 0;
    tally.onGone = () => {
      if (phase === "running" && ended === "duration") {
        ended = "disconnected";
        stopper.abort();
      }
    };
    if (ended === "duration" && gone()) ended = "disconnected";
    if (ended !== "duration") stopper.abort();

    phase = "running";
    const cpuStart = process.cpuUsage();
    run.startedAt = performance.now();
    for (const flow of flows) {
      // Spread the open-loop schedules over one interval, not all at once.
      flow.due = run.startedAt + run.interval * (flow.index / connections);
    }
    begin();
    let before = { messages: 0, bytes: 0, errors: tally.errorCount };
    const stoppedAt = await runIntervals({
      startedAt: run.startedAt,
      duration,
      interval: intervalMs,
      stop: stopper.signal,
      cut: (span) => {
        const h = run.histogram;
        run.histogram = new LatencyHistogram();
        latency.merge(h);
        const per = (n: number) => span.seconds > 0 ? n / span.seconds : 0;
        const messages = tally.messages - before.messages;
        const interval: LoadInterval = {
          start: span.start,
          end: span.end,
          messages,
          messagesPerSecond: Math.round(per(messages)),
          megabytesPerSecond: round(
            per(tally.bytesEchoed - before.bytes) / 1e6,
            3,
          ),
          latency: intervalLatency(h),
          connected: tally.connected,
          errors: tally.errorCount - before.errors,
        };
        before = {
          messages: tally.messages,
          bytes: tally.bytesEchoed,
          errors: tally.errorCount,
        };
        if (ended === "unconnected") return;
        intervals.push(interval);
        options.onInterval?.(interval);
        options.onHistogram?.(span.start, span.end, h);
        progress?.(snapshot(interval));
      },
    });
    stopper.abort();
    const cpu = process.cpuUsage(cpuStart);
    const messagesAtStop = tally.messages;
    const bytesAtStop = tally.bytesEchoed;
    phase = "draining";

    // Give outstanding echoes their time, then close what still waits.
    const drainTimer = setTimeout(() => {
      for (const flow of flows) {
        if (!flow.done) {
          tally.note(
            `echo not complete ${drainTimeout / 1000} s after the run`,
          );
          loseOutstanding(run, flow);
          flow.close();
        }
      }
    }, drainTimeout);
    await Promise.all(running);
    clearTimeout(drainTimer);
    for (const flow of idlers) flow.close();
    await Promise.all(holding);
    tally.connected = 0;
    latency.merge(run.histogram);
    if (run.histogram.count > 0) {
      const at = (t: number) => round((t - run.startedAt) / 1000, 3);
      options.onHistogram?.(
        at(stoppedAt),
        at(performance.now()),
        run.histogram,
      );
    }

    return buildReport({
      settings: {
        target,
        transport: endpoint.transport,
        mode,
        connections,
        idle,
        size,
        window: mode === "stream" ? window : 0,
        rate,
        engine,
        connectRate,
      },
      tally,
      latency,
      connect: connectHistogram,
      connectMs,
      seconds: ended === "unconnected" ? 0 : (stoppedAt - run.startedAt) / 1000,
      messages: messagesAtStop,
      bytes: bytesAtStop,
      cpu,
      intervals,
      ended,
      percentiles: options.percentiles ?? DEFAULT_PERCENTILES,
    });
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
    options.signal?.removeEventListener("abort", onAbort);
    stopper.abort();
    begin();
    for (const flow of flows) flow.close();
    for (const flow of idlers) flow.close();
  }
}

/**
 * Capacity search (tcpkali's `-r @latency`): the highest total message rate
 * at which the server's p99 stays under `targetP99` ms. A closed-loop probe,
 * then open-loop {@linkcode runLoad} steps of `duration` each (at most
 * `maxSteps`, default 12): the rate doubles from an eighth of the probe's
 * until a step misses (p99 over the target, under 95% of the rate achieved,
 * or an error), then bisects to within 5%.
 *
 * Requires `--allow-net` to the server's address, as {@linkcode runLoad}.
 *
 * @param options As {@linkcode runLoad}'s (`rate` is set by the search),
 * plus `targetP99`.
 * @returns Every step and the answer.
 * @throws {RangeError} On an option out of range.
 *
 * @example
 * ```ts ignore
 * import { runCapacitySearch } from "./load.ts";
 * const r = await runCapacitySearch({ port: 39304, targetP99: 5 });
 * console.log(r.answer, r.steps.length);
 * ```
 */
export function runCapacitySearch(
  options: CapacityOptions,
): Promise<CapacityReport> {
  return searchCapacity(runLoad, options);
}
