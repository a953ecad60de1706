/**
 * The UDP mode of the load generator (`tools/load.ts --udp`): the echo
 * service of RFC 862 over datagrams, measured as `iperf3 -u` measures a path
 * (loss, jitter) and checked as the TCP mode checks a stream (every byte).
 *
 * Each flow is one socket of its own (bound to the target's family, port 0)
 * that sends sequence-numbered, timestamped datagrams at a fixed rate and
 * checks every datagram that comes back. A datagram is a 24-byte header
 * (flow, sequence number, send time, a checksum of those) and a payload cut
 * from the flow's own random pattern at an offset set by the sequence
 * number, so a changed byte, a wrong length, another flow's datagram or a
 * stale buffer sent again is caught. What comes back is sorted into
 * received, duplicated, reordered, corrupted and late; what does not come
 * back intact within the loss timeout is lost. Round-trip times go into the
 * same histogram as the TCP mode's; jitter is RFC 3550's (iperf3's) over
 * round-trip transit times, the only transit an echo shows.
 *
 * This module is the engine: the flows' sockets, their senders and
 * receivers, and the run's clock; the datagram is `_udp_datagram.ts`, the
 * flows and their tally `_udp_flow.ts`, the report `_udp_report.ts`.
 * Private to this package: `tools/load.ts` parses the command line and
 * re-exports {@linkcode runUdpLoad}.
 *
 * @module
 */

import dns from "node:dns";
import process from "node:process";
import { CliError, describeError, isClosed, sleep } from "../_cli.ts";
import {
  describeShortage,
  isTooManyOpenFiles,
  openFilesLimit,
} from "./_load_nofile.ts";
import { type IntervalSpan, runIntervals } from "./_load_interval.ts";
import { validate } from "./_load_run.ts";
import { EARLY, Pacer } from "./_load_pacer.ts";
import { bareHost, formatAddr } from "../_net.ts";
import { LatencyHistogram } from "./_histogram.ts";
import { intervalLatency, round, summarize } from "./_report.ts";
import { MAX_DATAGRAM, UDP_HEADER } from "./_udp_datagram.ts";
import {
  check,
  MAX_RING,
  meanJitter,
  prepare,
  UdpFlow,
  type UdpRun,
  UdpTally,
  unbook,
} from "./_udp_flow.ts";
import {
  buildUdpReport,
  type UdpLoadInterval,
  type UdpLoadProgress,
  type UdpLoadReport,
} from "./_udp_report.ts";

/**
 * Datagrams per second per flow when no rate is given. A millisecond timer
 * keeps 1 ms spacing (a higher rate goes out in bursts per tick), and 50
 * flows at 1,000 are 50,000 datagrams a second, about a third of what a
 * plain Deno `receive`/`send` loop echoes on the project's machine: a
 * correct server keeps up without loss, so a loss means something.
 */
export const DEFAULT_UDP_RATE = 1_000;

/** Most flows one run opens (each is a socket, and a file descriptor). */
export const MAX_FLOWS = 10_000;

/** What {@linkcode runUdpLoad} does. */
export interface UdpLoadOptions {
  /** Server name or address. Default `127.0.0.1`. */
  hostname?: string;
  /** Server port, 1 to 65535. */
  port: number;
  /** Flows, each a socket of its own. Default 50. */
  flows?: number;
  /** Bytes per datagram, header included: 24 to 65,507. Default 64. */
  size?: number;
  /**
   * Datagrams per second per flow; 0 floods (sends as fast as the socket
   * takes them, which measures how fast socket buffers overflow more than
   * the server). Default {@linkcode DEFAULT_UDP_RATE}.
   */
  rate?: number;
  /** Datagrams per flow at most; 0 (default) sends until the duration ends. */
  count?: number;
  /** How long sending runs, in ms. Default 5000. */
  duration?: number;
  /** A datagram not back intact this many ms after it was sent is lost. Default 1000. */
  lossTimeout?: number;
  /** Loss above this many percent fails the run; undefined (default) never does. */
  maxLoss?: number;
  /**
   * Milliseconds of one interval: the report's `intervals`, each with its
   * own figures, and the progress snapshots. Default 1000.
   */
  interval?: number;
  /** Called at each interval's end with its figures. */
  onInterval?: (interval: UdpLoadInterval) => void;
  /** The percentiles the report lists. Default 50, 90, 99, 99.9. */
  percentiles?: readonly number[];
  /**
   * Called with each interval's histogram as it ends (`start`, `end`:
   * seconds since the sending started), then once with the echoes of the
   * drain: `--histogram-log` writes them.
   */
  onHistogram?: (start: number, end: number, h: LatencyHistogram) => void;
  /** Called at each interval's end with a snapshot, and while draining. */
  onProgress?: (progress: UdpLoadProgress) => void;
  /** Aborting it ends the sending early; the report covers the time run. */
  signal?: AbortSignal;
}

/** Whether an error is what an ICMP port unreachable turns into. */
function isRefused(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionRefused ||
    (error as { code?: unknown } | null)?.code === "ECONNREFUSED";
}

/** Sends the datagrams of `flow` on its schedule until the run stops. */
async function sender(run: UdpRun, flow: UdpFlow, startedAt: number) {
  const t = run.tally;
  // Spread the flows' schedules over one interval, not all at once.
  let due = startedAt + run.interval * (flow.index / run.flows);
  while (!run.stop.aborted && (run.count === 0 || flow.nextSeq < run.count)) {
    if (run.interval > 0) {
      // As TCP's dueTime: what is due within EARLY ms goes now, the rest
      // waits for the run's one timer. A datagram carries the time it
      // really went, and the schedule keeps its rate.
      if (due > performance.now() + EARLY) {
        await run.pacer.wait(due);
        continue;
      }
      due += run.interval;
    }
    const now = performance.now();
    const seq = prepare(run, flow, now);
    t.outstanding++;
    try {
      await flow.conn.send(flow.out, run.addr);
      t.sent++;
      t.bytesSent += run.size;
      if (now > run.lastSentAt) run.lastSentAt = now;
    } catch (error) {
      unbook(flow, seq);
      t.outstanding--;
      if (isClosed(error)) return;
      if (isRefused(error)) {
        t.refused++;
      } else {
        t.sendErrors++;
        t.note(`cannot send: ${describeError(error)}`);
        // A full buffer clears by itself; do not spin on it.
        if (run.interval === 0) await sleep(1, run.stop);
      }
    }
  }
}

/** Receives and checks what comes back to `flow` until its socket closes. */
async function receiver(run: UdpRun, flow: UdpFlow): Promise<void> {
  const t = run.tally;
  const { hostname, port } = run.addr;
  while (true) {
    let data: Uint8Array;
    let from: Deno.Addr;
    try {
      [data, from] = await flow.conn.receive(flow.recv);
    } catch (error) {
      if (isClosed(error)) return;
      if (isRefused(error)) {
        t.refused++;
        continue;
      }
      t.receiveErrors++;
      t.note(`cannot receive: ${describeError(error)}`);
      return;
    }
    const now = performance.now();
    const a = from as Deno.NetAddr;
    if (a.port !== port || a.hostname !== hostname) {
      t.foreign++;
      t.note(`a datagram came from ${formatAddr(a)}, not the target`);
      continue;
    }
    check(run, flow, data.length, now);
  }
}

/**
 * The address `hostname` names: an IP address as it is, a name through
 * the system resolver (as a TCP connect resolves it), first answer.
 */
async function resolveTarget(hostname: string): Promise<string> {
  const bare = bareHost(hostname);
  if (/^[\d.]+$/.test(bare) || bare.includes(":")) return bare;
  try {
    return (await dns.promises.lookup(bare)).address;
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    throw new RangeError(
      `Cannot resolve "${hostname}": ${
        code === "EPERM"
          ? `permission denied (it needs --allow-net=${bare})`
          : code === "ENOTFOUND"
          ? "no such name"
          : describeError(error)
      }`,
    );
  }
}
/**
 * Drives a UDP echo server with `flows` sockets, each sending datagrams on
 * its own schedule, and checks every datagram that comes back. Sending
 * stops after `duration` (or `count` datagrams a flow); then the run waits
 * until every datagram is back or its loss timeout has passed, so it ends
 * at most `duration + lossTimeout` after it began. Never throws for what
 * the server does: loss and faults are counted in the report.
 *
 * Requires `--allow-net` to the server's address (and to the loopback
 * address of its family, where the flows bind; `0.0.0.0` or `[::]` for
 * another host).
 *
 * @param options What to run; only `port` is required.
 * @returns The measured report.
 * @throws {RangeError} On an option out of range, or a name that does not
 * resolve.
 * @throws {CliError} When a flow's socket cannot be opened for want of a
 * file descriptor (the open-files limit), saying how to raise it.
 *
 * @example
 * ```ts ignore
 * import { runUdpLoad } from "./_udp_load.ts";
 * const report = await runUdpLoad({ port: 39304, flows: 10, duration: 1000 });
 * console.log(report.lostPercent, report.jitterMs, report.latency.p99);
 * ```
 */
export async function runUdpLoad(
  options: UdpLoadOptions,
): Promise<UdpLoadReport> {
  const flows = options.flows ?? 50;
  const size = options.size ?? 64;
  const rate = options.rate ?? DEFAULT_UDP_RATE;
  const count = options.count ?? 0;
  const duration = options.duration ?? 5_000;
  const lossTimeout = options.lossTimeout ?? 1_000;
  const maxLoss = options.maxLoss;
  validate("port", options.port, 1, 65535);
  validate("flows", flows, 1, MAX_FLOWS);
  validate("size", size, UDP_HEADER, MAX_DATAGRAM);
  validate("count", count, 0, Number.MAX_SAFE_INTEGER);
  if (!(rate >= 0 && rate <= 1_000_000)) {
    throw new RangeError(
      `Cannot use rate "${rate}": expected 0 (flood) to 1000000 datagrams per second`,
    );
  }
  if (!(duration > 0) || !(lossTimeout > 0)) {
    throw new RangeError(
      `Cannot use duration "${duration}" and lossTimeout "${lossTimeout}": expected both above 0`,
    );
  }
  if (maxLoss !== undefined && !(maxLoss >= 0 && maxLoss <= 100)) {
    throw new RangeError(
      `Cannot use maxLoss "${maxLoss}": expected 0 to 100 percent`,
    );
  }
  const hostname = options.hostname ?? "127.0.0.1";
  const address = await resolveTarget(hostname);
  const v6 = address.includes(":");
  const loopback = v6 ? address === "::1" : address.startsWith("127.");
  const bind = loopback ? (v6 ? "::1" : "127.0.0.1") : (v6 ? "::" : "0.0.0.0");
  const target = formatAddr({ hostname, port: options.port });

  const tally = new UdpTally();
  const stopper = new AbortController();
  let settle = () => {};
  const settled = new Promise<void>((resolve) => settle = resolve);
  const pacer = new Pacer();
  stopper.signal.addEventListener("abort", () => pacer.stop(), { once: true });
  const run: UdpRun = {
    tally,
    histogram: new LatencyHistogram(),
    addr: { transport: "udp", hostname: address, port: options.port },
    size,
    flows,
    interval: rate > 0 ? 1000 / rate : 0,
    pacer,
    count,
    lossTimeout,
    stop: stopper.signal,
    lastSentAt: 0,
    onSettled: () => settle(),
  };
  // Enough slots for 2.5 loss timeouts at the rate (a flood grows them).
  let ring = 64;
  const wanted = rate > 0 ? rate * lossTimeout / 1000 * 2.5 + 16 : 4096;
  while (ring < Math.min(wanted, MAX_RING)) ring *= 2;
  if (count > 0) { while (ring > 64 && ring / 2 >= count) ring /= 2; }

  const sockets: UdpFlow[] = [];
  let interrupted = false;
  const onAbort = () => {
    interrupted = true;
    stopper.abort();
  };
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  let startedAt = 0;
  const progress = options.onProgress;
  const latency = new LatencyHistogram();
  const intervals: UdpLoadInterval[] = [];
  let before = { sent: 0, received: 0, bytes: 0, errors: 0 };
  /** Ends an interval: its figures, from the counters and its histogram. */
  const cut = (span: IntervalSpan) => {
    const h = run.histogram;
    run.histogram = new LatencyHistogram();
    latency.merge(h);
    const per = (n: number) => span.seconds > 0 ? n / span.seconds : 0;
    const interval: UdpLoadInterval = {
      start: span.start,
      end: span.end,
      sent: tally.sent - before.sent,
      received: tally.received - before.received,
      sentPerSecond: Math.round(per(tally.sent - before.sent)),
      receivedPerSecond: Math.round(per(tally.received - before.received)),
      megabytesPerSecond: round(
        per(tally.bytesReceived - before.bytes) / 1e6,
        3,
      ),
      latency: intervalLatency(h),
      errors: tally.errorCount - before.errors,
    };
    before = {
      sent: tally.sent,
      received: tally.received,
      bytes: tally.bytesReceived,
      errors: tally.errorCount,
    };
    intervals.push(interval);
    options.onInterval?.(interval);
    options.onHistogram?.(span.start, span.end, h);
    progress?.({
      phase: "running",
      elapsed: performance.now() - startedAt,
      sent: tally.sent,
      received: tally.received,
      interval,
    });
  };
  try {
    for (let i = 0; i < flows; i++) {
      let conn: Deno.DatagramConn;
      try {
        conn = Deno.listenDatagram({
          transport: "udp",
          hostname: bind,
          port: 0,
        });
      } catch (error) {
        if (!isTooManyOpenFiles(error)) throw error;
        throw new CliError(
          describeShortage(`-c ${flows} flows`, flows, await openFilesLimit()),
        );
      }
      sockets.push(new UdpFlow(i, conn, size, ring));
    }
    const receiving = sockets.map((flow) => receiver(run, flow));
    const cpuStart = process.cpuUsage();
    startedAt = performance.now();
    // The senders end at the duration, or at --count: then the run stops.
    const sending = Promise.all(
      sockets.map((flow) => sender(run, flow, startedAt)),
    ).then(() => stopper.abort());
    const stoppedAt = await runIntervals({
      startedAt,
      duration,
      interval: options.interval ?? 1_000,
      stop: stopper.signal,
      cut,
    });
    stopper.abort();
    await sending;
    const cpu = process.cpuUsage(cpuStart);
    progress?.({
      phase: "draining",
      elapsed: performance.now() - startedAt,
      sent: tally.sent,
      received: tally.received,
    });
    // Every datagram is back, or the last one's loss timeout has passed.
    if (tally.outstanding > 0) {
      const wait = run.lastSentAt + lossTimeout - performance.now();
      if (wait > 0) {
        let drainTimer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          settled,
          new Promise<void>((resolve) =>
            drainTimer = setTimeout(resolve, wait)
          ),
        ]);
        clearTimeout(drainTimer);
      }
    }
    for (const flow of sockets) flow.conn.close();
    await Promise.all(receiving);
    // Echoes of the drain count in the whole run's latencies.
    latency.merge(run.histogram);
    if (run.histogram.count > 0) {
      const at = (t: number) => round((t - startedAt) / 1000, 3);
      options.onHistogram?.(
        at(stoppedAt),
        at(performance.now()),
        run.histogram,
      );
    }

    const seconds = (stoppedAt - startedAt) / 1000;
    return buildUdpReport({
      settings: { target, flows, size, rate, count, lossTimeout, maxLoss },
      tally,
      seconds,
      latency: summarize(latency, options.percentiles),
      jitterMs: meanJitter(sockets),
      cpu,
      intervals,
      interrupted,
    });
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    stopper.abort();
    for (const flow of sockets) {
      try {
        flow.conn.close();
      } catch {
        // Closed after the drain already.
      }
    }
  }
}
