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
 * @example
 * ```sh
 * deno run --allow-net=127.0.0.1 tools/load.ts --port 39304 -c 50 -d 5
 * ```
 *
 * @module
 */

import process from "node:process";
import {
  CliError,
  type CommandSpec,
  describeError,
  formatAddress,
  parseCommandLine,
  parseInteger,
  parseSeconds,
  runMain,
  shutdownSignal,
  UsageError,
} from "../_cli.ts";
import { DEFAULT_PORT, isClosed, isPeerGone, sleep } from "../servers/_echo.ts";
import { LatencyHistogram } from "./_histogram.ts";

export { LatencyHistogram };

/** How each connection drives the server. */
export type LoadMode = "pingpong" | "stream";

/** What {@linkcode runLoad} does. */
export interface LoadOptions {
  /** Server address. Default `127.0.0.1`. */
  hostname?: string;
  /** Server port. */
  port: number;
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
  /** Stream mode: most bytes in flight per connection. Default 256 KiB. */
  window?: number;
  /** Give up on one connect after this many ms. Default 5000. */
  connectTimeout?: number;
  /** After the run, how long outstanding echoes may take, in ms. Default 5000. */
  drainTimeout?: number;
  /** Called with a snapshot every `progressInterval` ms while running. */
  onProgress?: (progress: LoadProgress) => void;
  /** Milliseconds between progress snapshots. Default 1000. */
  progressInterval?: number;
  /** Aborting it ends the traffic early; the report covers the time run. */
  signal?: AbortSignal;
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
}

/** Round-trip latency summary, in milliseconds. */
export interface LatencySummary {
  /** Messages timed. */
  samples: number;
  /** Fastest round trip. */
  min: number;
  /** Mean round trip. */
  mean: number;
  /** Median. */
  p50: number;
  /** 90th percentile. */
  p90: number;
  /** 99th percentile. */
  p99: number;
  /** 99.9th percentile. */
  p999: number;
  /** Slowest round trip. */
  max: number;
}

/** What a run measured. Every field is always present. */
export interface LoadReport {
  /** `HOST:PORT` of the server. */
  target: string;
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
  /** Connections that came up (active and idle). */
  connected: number;
  /** Milliseconds the connect ramp took. */
  connectMs: number;
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
  /** Messages echoed and checked during those seconds. */
  messages: number;
  /** Messages per second, all connections together. */
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
  cpu: {
    /** User time, ms. */
    userMs: number;
    /** System time, ms. */
    systemMs: number;
    /** (user + system) / wall time, in percent of one core. */
    percent: number;
  };
  /** The first few distinct error messages, for a human. */
  errors: string[];
  /** True when every connection came up and every byte came back intact. */
  ok: boolean;
}

/** Most memory the shared byte pattern may take. */
const PATTERN_BUDGET = 64 * 1024 * 1024;
/** Messages up to this size are written before reading; larger ones at once. */
const SEQUENTIAL_LIMIT = 64 * 1024;
/** Stream reads go into a buffer of this size (or the message size, if larger). */
const STREAM_READ = 64 * 1024;
/** Most distinct error messages kept for the report. */
const ERROR_SAMPLES = 5;

/**
 * The bytes every connection sends: `slots` random messages laid end to end,
 * each on an 8-byte boundary so that checks can compare 4 bytes at a time.
 * Connection `i` sends slot `i`, then `i + 1`, and so on (mod `slots`), so at
 * any message number no two connections (up to `slots` of them) send the same
 * bytes, and a server that mixes connections up is caught.
 */
class Pattern {
  /** Bytes per message. */
  readonly size: number;
  /** Distance between slot starts: `size` rounded up to 8. */
  readonly stride: number;
  /** Number of distinct messages. */
  readonly slots: number;
  /** The slots, end to end. */
  readonly bytes: Uint8Array;
  /** The same memory as 32-bit words, for fast comparison. */
  readonly words: Int32Array;
  /** One view per slot, made once so sending allocates nothing. */
  readonly views: Uint8Array[];

  constructor(size: number, connections: number) {
    this.size = size;
    this.stride = Math.ceil(size / 8) * 8;
    const wanted = Math.max(connections, 64);
    this.slots = Math.max(
      2,
      Math.min(wanted, Math.floor(PATTERN_BUDGET / this.stride)),
    );
    this.bytes = new Uint8Array(this.slots * this.stride);
    this.words = new Int32Array(this.bytes.buffer);
    // xorshift32 with a fixed seed: reproducible, and no two slots alike.
    let x = 0x9e3779b9 | 0;
    for (let i = 0; i < this.words.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      this.words[i] = x;
    }
    this.views = [];
    for (let s = 0; s < this.slots; s++) {
      this.views.push(
        this.bytes.subarray(s * this.stride, s * this.stride + size),
      );
    }
  }
}

/**
 * Counts the bytes of `got[gi .. gi+len)` that differ from
 * `want[wi .. wi+len)`, four at a time where both offsets share an alignment.
 */
function countMismatches(
  got: Uint8Array,
  got32: Int32Array,
  gi: number,
  want: Uint8Array,
  want32: Int32Array,
  wi: number,
  len: number,
): number {
  let bad = 0;
  const end = gi + len;
  if (((gi ^ wi) & 3) === 0) {
    while (gi < end && (gi & 3) !== 0) {
      if (got[gi++] !== want[wi++]) bad++;
    }
    const wordEnd = end >> 2;
    let g = gi >> 2;
    let w = wi >> 2;
    if ((gi & 3) === 0 && g < wordEnd) {
      for (; g < wordEnd; g++, w++) {
        if (got32[g] !== want32[w]) {
          for (let b = g << 2, c = w << 2, e = b + 4; b < e; b++, c++) {
            if (got[b] !== want[c]) bad++;
          }
        }
      }
      gi = g << 2;
      wi = w << 2;
    }
  }
  while (gi < end) {
    if (got[gi++] !== want[wi++]) bad++;
  }
  return bad;
}

/** Counters shared by every connection of a run (one thread: no races). */
class Tally {
  /** Connections open now. */
  connected = 0;
  /** Connections that came up at all. */
  everConnected = 0;
  connectFailures = 0;
  resets = 0;
  closedByServer = 0;
  otherErrors = 0;
  messages = 0;
  bytesSent = 0;
  bytesEchoed = 0;
  mismatchedBytes = 0;
  missingBytes = 0;
  extraBytes = 0;
  /** Distinct error messages, first few only. */
  readonly errors: string[] = [];

  note(message: string): void {
    if (this.errors.length < ERROR_SAMPLES && !this.errors.includes(message)) {
      this.errors.push(message);
    }
  }

  get errorCount(): number {
    return this.connectFailures + this.resets + this.closedByServer +
      this.otherErrors + (this.mismatchedBytes > 0 ? 1 : 0) +
      (this.extraBytes > 0 ? 1 : 0);
  }
}

/** What every connection of a run reads; fixed once traffic starts. */
interface Run {
  readonly tally: Tally;
  readonly pattern: Pattern;
  readonly histogram: LatencyHistogram;
  readonly size: number;
  /** Active connections. */
  readonly connections: number;
  readonly window: number;
  /** Milliseconds between messages of one connection; 0 is closed loop. */
  readonly interval: number;
  /** Aborts when traffic should stop (duration over or caller's signal). */
  readonly stop: AbortSignal;
  /** When traffic started (`performance.now()`). */
  startedAt: number;
  /** Set when the drain timed out: flows still open lost bytes. */
  drainExpired: boolean;
}

/** One active connection and its reusable buffers. */
class Flow {
  /** Position of this connection; picks its first slot. */
  readonly index: number;
  readonly conn: Deno.TcpConn;
  /** Receive buffer, 4 bytes longer than used so reads can start aligned. */
  readonly recv: Uint8Array;
  readonly recv32: Int32Array;
  /** `recv` viewed from offsets 0..3, made once (stream mode). */
  readonly recvViews: Uint8Array[];
  /** Bytes written so far. */
  sent = 0;
  /** Bytes echoed and checked so far. */
  received = 0;
  /** This flow ended on its own terms or was closed by the run. */
  done = false;
  /** Stream mode: wakes the writer when the window opens. */
  wake: (() => void) | undefined = undefined;

  constructor(index: number, conn: Deno.TcpConn, readLength: number) {
    this.index = index;
    this.conn = conn;
    const buffer = new ArrayBuffer(Math.ceil((readLength + 4) / 4) * 4);
    this.recv = new Uint8Array(buffer);
    this.recv32 = new Int32Array(buffer);
    this.recvViews = [0, 1, 2, 3].map((a) =>
      new Uint8Array(buffer, a, readLength)
    );
  }

  /** Closes the connection once; later calls do nothing. */
  close(): void {
    if (this.done) return;
    this.done = true;
    try {
      this.conn.close();
    } catch {
      // Already closed by a failed operation: nothing left to release.
    }
  }
}

/** Sorts a failure of `flow` into the run's counters. */
function recordFailure(run: Run, flow: Flow, error: unknown): void {
  if (flow.done && isClosed(error)) {
    // The run closed it: a drain timeout, counted as missing bytes below.
    return;
  }
  if (isPeerGone(error)) run.tally.resets++;
  else run.tally.otherErrors++;
  run.tally.note(describeError(error));
}

/** Writes all of `bytes`; partial writes are rare, so slicing then is fine. */
async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let n = await conn.write(bytes);
  while (n < bytes.length) {
    n += await conn.write(bytes.subarray(n));
  }
}

/** Waits until the run says the next message is due, then returns when it was. */
async function pace(run: Run, due: number): Promise<number> {
  const now = performance.now();
  // Timers fire at millisecond granularity; within 0.2 ms, send now.
  if (due > now + 0.2) await sleep(due - now, run.stop);
  return due;
}

/**
 * Pingpong: send one message, read until all of it is back and checked,
 * repeat. Nothing is allocated per message but the promises Deno's I/O
 * needs: the message is a prebuilt view of the pattern and the reply lands
 * in the flow's own buffer.
 */
async function pingpong(run: Run, flow: Flow): Promise<void> {
  const { conn, recv, recv32 } = flow;
  const { pattern, size, histogram, tally } = run;
  let slot = flow.index % pattern.slots;
  // Spread the connections' schedules over one interval, not all at once.
  let due = run.startedAt + run.interval * (flow.index / run.connections);
  let got = 0;
  try {
    while (!run.stop.aborted) {
      let start: number;
      if (run.interval > 0) {
        start = await pace(run, due);
        due += run.interval;
        if (run.stop.aborted) break;
      } else {
        start = performance.now();
      }
      const message = pattern.views[slot]!;
      const at = slot * pattern.stride;
      // A large message is written while its echo is read: written first, it
      // would fill both socket buffers and deadlock against the server.
      const writing = size <= SEQUENTIAL_LIMIT
        ? undefined
        : writeAll(conn, message);
      if (writing === undefined) await writeAll(conn, message);
      flow.sent += size;
      tally.bytesSent += size;
      got = 0;
      while (got < size) {
        let n = await conn.read(recv);
        if (n === null) {
          tally.closedByServer++;
          tally.note("connection closed by the server");
          tally.missingBytes += size - got;
          flow.close();
          return;
        }
        if (got + n > size) {
          tally.extraBytes += got + n - size;
          n = size - got;
        }
        tally.mismatchedBytes += countMismatches(
          recv,
          recv32,
          0,
          pattern.bytes,
          pattern.words,
          at + got,
          n,
        );
        got += n;
        flow.received += n;
        tally.bytesEchoed += n;
      }
      if (writing !== undefined) await writing;
      histogram.record(performance.now() - start);
      tally.messages++;
      slot = slot + 1 === pattern.slots ? 0 : slot + 1;
    }
  } catch (error) {
    recordFailure(run, flow, error);
    tally.missingBytes += flow.sent - flow.received;
  }
  flow.close();
}

/** Stream mode: a writer and a reader per connection, sharing a window. */
async function stream(run: Run, flow: Flow): Promise<void> {
  const ring = new Float64Array(Math.ceil(run.window / run.size) + 1);
  try {
    await Promise.all([
      streamWriter(run, flow, ring),
      streamReader(run, flow, ring),
    ]);
  } catch (error) {
    recordFailure(run, flow, error);
    run.tally.missingBytes += flow.sent - flow.received;
  }
  flow.close();
}

/** Writes messages while the window has room, noting when each was due. */
async function streamWriter(
  run: Run,
  flow: Flow,
  ring: Float64Array,
): Promise<void> {
  const { pattern, size, window, tally } = run;
  let slot = flow.index % pattern.slots;
  let due = run.startedAt + run.interval * (flow.index / run.connections);
  let index = 0;
  while (!run.stop.aborted && !flow.done) {
    if (flow.sent - flow.received + size > window) {
      await new Promise<void>((resolve) => flow.wake = resolve);
      continue;
    }
    let start: number;
    if (run.interval > 0) {
      start = await pace(run, due);
      due += run.interval;
      if (run.stop.aborted) break;
    } else {
      start = performance.now();
    }
    ring[index % ring.length] = start;
    index++;
    // Count the bytes as sent before the write resolves: the reader may see
    // their echo first.
    flow.sent += size;
    tally.bytesSent += size;
    await writeAll(flow.conn, pattern.views[slot]!);
    slot = slot + 1 === pattern.slots ? 0 : slot + 1;
  }
  // Nothing more will be written. If every byte is back the reader is
  // waiting on a read that will never complete: closing ends it.
  if (flow.received >= flow.sent) flow.close();
}

/** Reads and checks the echo, chunk by chunk, timing each message. */
async function streamReader(
  run: Run,
  flow: Flow,
  ring: Float64Array,
): Promise<void> {
  const { pattern, size, histogram, tally } = run;
  const { recv, recv32, recvViews, conn } = flow;
  let slot = flow.index % pattern.slots;
  let offset = 0; // bytes of the current message already checked
  let index = 0; // message number being received
  while (!flow.done) {
    // Start the read at the same alignment as the expected bytes so that
    // they compare a word at a time.
    const align = offset & 3;
    let n: number | null;
    try {
      n = await conn.read(recvViews[align]!);
    } catch (error) {
      if (flow.done && isClosed(error) && flow.received >= flow.sent) return;
      throw error;
    }
    if (n === null) {
      if (run.stop.aborted && flow.received >= flow.sent) break;
      tally.closedByServer++;
      tally.note("connection closed by the server");
      tally.missingBytes += flow.sent - flow.received;
      flow.sent = flow.received;
      break;
    }
    if (flow.received + n > flow.sent) {
      tally.extraBytes += flow.received + n - flow.sent;
      n = flow.sent - flow.received;
    }
    flow.received += n;
    tally.bytesEchoed += n;
    let at = align;
    while (n > 0) {
      const take = Math.min(n, size - offset);
      tally.mismatchedBytes += countMismatches(
        recv,
        recv32,
        at,
        pattern.bytes,
        pattern.words,
        slot * pattern.stride + offset,
        take,
      );
      at += take;
      n -= take;
      offset += take;
      if (offset === size) {
        histogram.record(performance.now() - ring[index % ring.length]!);
        index++;
        tally.messages++;
        offset = 0;
        slot = slot + 1 === pattern.slots ? 0 : slot + 1;
      }
    }
    const wake = flow.wake;
    if (wake !== undefined && flow.sent - flow.received + size <= run.window) {
      flow.wake = undefined;
      wake();
    }
    if (run.stop.aborted && flow.received >= flow.sent) break;
  }
  const wake = flow.wake;
  flow.wake = undefined;
  wake?.();
}

/** Holds an idle connection, noticing if the server closes or writes to it. */
async function hold(run: Run, flow: Flow): Promise<void> {
  try {
    const n = await flow.conn.read(flow.recv);
    if (n === null) {
      if (!flow.done) {
        run.tally.closedByServer++;
        run.tally.note("idle connection closed by the server");
      }
    } else {
      run.tally.extraBytes += n;
      run.tally.note("server wrote on an idle connection");
    }
  } catch (error) {
    recordFailure(run, flow, error);
  }
  flow.close();
}

function validate(name: string, value: number, min: number, max: number) {
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
 * duration, and each connection waits for its outstanding echo before it
 * closes. Never throws for what the server does: failures are counted in the
 * report.
 *
 * Requires `--allow-net` to the server's address.
 *
 * @param options What to run; only `port` is required.
 * @returns The measured report.
 * @throws {RangeError} On an option out of range.
 * @throws {CliError} When not one connection could be opened.
 *
 * @example
 * ```ts ignore
 * import { runLoad } from "./load.ts";
 * const report = await runLoad({ port: 39304, connections: 10, duration: 1000 });
 * console.log(report.messagesPerSecond, report.latency.p99, report.ok);
 * ```
 */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port;
  const connections = options.connections ?? 50;
  const idle = options.idle ?? 0;
  const size = options.size ?? 64;
  const mode = options.mode ?? "pingpong";
  const duration = options.duration ?? 5_000;
  const rate = options.rate ?? 0;
  const ramp = options.ramp ?? 100;
  const window = mode === "stream"
    ? Math.max(options.window ?? 256 * 1024, size)
    : 0;
  const connectTimeout = options.connectTimeout ?? 5_000;
  const drainTimeout = options.drainTimeout ?? 5_000;
  validate("port", port, 1, 65535);
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
  if (!(duration > 0) || !(rate >= 0) || !Number.isFinite(rate)) {
    throw new RangeError(
      `Cannot use duration "${duration}" and rate "${rate}": expected a duration above 0 and a rate of 0 or more`,
    );
  }

  const target = formatAddress({ hostname, port });
  const tally = new Tally();
  const stopper = new AbortController();
  const run: Run = {
    tally,
    pattern: new Pattern(size, connections),
    histogram: new LatencyHistogram(),
    size,
    connections,
    window,
    interval: rate > 0 ? 1000 / rate : 0,
    stop: stopper.signal,
    startedAt: 0,
    drainExpired: false,
  };
  const onAbort = () => stopper.abort();
  options.signal?.addEventListener("abort", onAbort, { once: true });

  let phase: LoadProgress["phase"] = "connecting";
  const progress = options.onProgress;
  const ticker = progress
    ? setInterval(() =>
      progress({
        phase,
        elapsed: run.startedAt > 0 ? performance.now() - run.startedAt : 0,
        connected: tally.connected,
        target: connections + idle,
        messages: tally.messages,
        bytes: tally.bytesEchoed,
        errors: tally.errorCount,
      }), options.progressInterval ?? 1_000)
    : undefined;

  const flows: Flow[] = [];
  const idlers: Flow[] = [];
  const rampStart = performance.now();
  const readLength = mode === "stream" ? Math.max(STREAM_READ, size) : size;
  let next = 0;
  async function connector(): Promise<void> {
    while (next < connections + idle && !stopper.signal.aborted) {
      const i = next++;
      // A timer of our own rather than AbortSignal.timeout, so that it is
      // cleared as soon as the connect settles.
      const giveUp = new AbortController();
      const timer = setTimeout(() => giveUp.abort(), connectTimeout);
      try {
        const conn = await Deno.connect({
          hostname,
          port,
          signal: giveUp.signal,
        });
        if (i < connections) {
          conn.setNoDelay(true);
          flows.push(new Flow(flows.length, conn, readLength));
        } else {
          idlers.push(new Flow(i, conn, 16));
        }
        tally.connected++;
        tally.everConnected++;
      } catch (error) {
        tally.connectFailures++;
        tally.note(
          giveUp.signal.aborted
            ? `connect to ${target} timed out`
            : `cannot connect to ${target}: ${describeError(error)}`,
        );
      } finally {
        clearTimeout(timer);
      }
    }
  }
  try {
    await Promise.all(
      Array.from({ length: Math.min(ramp, connections + idle) }, connector),
    );
    const connectMs = performance.now() - rampStart;
    if (tally.everConnected === 0) {
      throw new CliError(
        tally.errors[0] ?? `cannot connect to ${target}`,
      );
    }

    const holding = idlers.map((flow) => hold(run, flow));
    phase = "running";
    const cpuStart = process.cpuUsage();
    run.startedAt = performance.now();
    const timer = setTimeout(() => stopper.abort(), duration);
    const running = flows.map((flow) =>
      mode === "stream" ? stream(run, flow) : pingpong(run, flow)
    );
    await new Promise<void>((resolve) => {
      if (stopper.signal.aborted) resolve();
      else {stopper.signal.addEventListener("abort", () => resolve(), {
          once: true,
        });}
    });
    clearTimeout(timer);
    const stoppedAt = performance.now();
    const cpu = process.cpuUsage(cpuStart);
    const messagesAtStop = tally.messages;
    const bytesAtStop = tally.bytesEchoed;
    phase = "draining";

    // Give outstanding echoes their time, then close what is still waiting:
    // its missing bytes are counted by the flow as it fails.
    const drainTimer = setTimeout(() => {
      run.drainExpired = true;
      for (const flow of flows) {
        if (!flow.done) {
          tally.missingBytes += flow.sent - flow.received;
          tally.note(
            `echo not complete ${drainTimeout / 1000} s after the run`,
          );
          flow.sent = flow.received;
          flow.close();
        }
      }
    }, drainTimeout);
    await Promise.all(running);
    clearTimeout(drainTimer);
    for (const flow of idlers) flow.close();
    await Promise.all(holding);
    tally.connected = 0;

    const seconds = (stoppedAt - run.startedAt) / 1000;
    const h = run.histogram;
    const cpuMs = (cpu.user + cpu.system) / 1000;
    const report: LoadReport = {
      target,
      mode,
      connections,
      idle,
      size,
      window,
      rate,
      connected: tally.everConnected,
      connectMs: round(connectMs, 1),
      connectFailures: tally.connectFailures,
      resets: tally.resets,
      closedByServer: tally.closedByServer,
      otherErrors: tally.otherErrors,
      seconds: round(seconds, 3),
      messages: messagesAtStop,
      messagesPerSecond: Math.round(messagesAtStop / seconds),
      bytesSent: tally.bytesSent,
      bytesEchoed: tally.bytesEchoed,
      megabytesPerSecond: round(bytesAtStop / seconds / 1e6, 2),
      mismatchedBytes: tally.mismatchedBytes,
      missingBytes: tally.missingBytes,
      extraBytes: tally.extraBytes,
      latency: {
        samples: h.count,
        min: round(h.min, 4),
        mean: round(h.mean, 4),
        p50: round(h.percentile(50), 4),
        p90: round(h.percentile(90), 4),
        p99: round(h.percentile(99), 4),
        p999: round(h.percentile(99.9), 4),
        max: round(h.max, 4),
      },
      cpu: {
        userMs: Math.round(cpu.user / 1000),
        systemMs: Math.round(cpu.system / 1000),
        percent: Math.round((cpuMs / (seconds * 1000)) * 100),
      },
      errors: [...tally.errors],
      ok: false,
    };
    report.ok = report.connectFailures === 0 && report.resets === 0 &&
      report.closedByServer === 0 && report.otherErrors === 0 &&
      report.mismatchedBytes === 0 && report.missingBytes === 0 &&
      report.extraBytes === 0;
    return report;
  } finally {
    if (ticker !== undefined) clearInterval(ticker);
    options.signal?.removeEventListener("abort", onAbort);
    stopper.abort();
    for (const flow of flows) flow.close();
    for (const flow of idlers) flow.close();
  }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Formats a count with thousands separators. */
function count(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/**
 * Renders a report as the few lines `tools/load.ts` prints.
 *
 * @param report What {@linkcode runLoad} returned.
 * @returns Lines of text, without a trailing newline.
 */
export function formatReport(report: LoadReport): string {
  const l = report.latency;
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
    }, ${report.seconds} s against ${report.target}`,
    `connections: ${count(report.connected)} of ${
      count(report.connections + report.idle)
    } up in ${report.connectMs} ms; ${report.connectFailures} failed to connect, ${report.resets} reset, ${report.closedByServer} closed by the server, ${report.otherErrors} other errors`,
    `throughput: ${
      count(report.messagesPerSecond)
    } msg/s, ${report.megabytesPerSecond} MB/s echoed (${
      count(report.messages)
    } messages)`,
    `latency ms: p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  p99.9 ${l.p999}  max ${l.max}  (mean ${l.mean}, ${
      count(l.samples)
    } samples)`,
    `bytes: ${count(report.bytesEchoed)} of ${
      count(report.bytesSent)
    } echoed and checked; ${count(report.mismatchedBytes)} mismatched, ${
      count(report.missingBytes)
    } missing, ${count(report.extraBytes)} extra`,
    `load generator CPU: ${report.cpu.percent}% of one core (user ${report.cpu.userMs} ms, system ${report.cpu.systemMs} ms)${
      report.cpu.percent >= 90
        ? ": saturated, so the figures may be the generator's limit, not the server's"
        : ""
    }`,
  ];
  for (const e of report.errors) lines.push(`error: ${e}`);
  lines.push(report.ok ? "result: ok" : "result: FAILED");
  return lines.join("\n");
}

/** Renders a progress snapshot as one line. */
function formatProgress(p: LoadProgress): string {
  const secs = p.elapsed / 1000;
  const rate = secs > 0 ? p.messages / secs : 0;
  const mb = secs > 0 ? p.bytes / secs / 1e6 : 0;
  return `${p.phase} ${secs.toFixed(1)} s: ${count(rate)} msg/s, ${
    mb.toFixed(1)
  } MB/s, ${count(p.connected)}/${
    count(p.target)
  } connections up, ${p.errors} errors`;
}

const SPEC: CommandSpec = {
  name: "tools/load.ts",
  summary:
    "Drive an echo server with many connections and check every byte that comes back.",
  options: {
    host: {
      type: "string",
      default: "127.0.0.1",
      arg: "HOST",
      description: "Server address.",
    },
    port: {
      type: "string",
      short: "p",
      default: String(DEFAULT_PORT),
      arg: "PORT",
      description: "Server port.",
    },
    connections: {
      type: "string",
      short: "c",
      default: "50",
      arg: "N",
      description: "Connections carrying traffic.",
    },
    size: {
      type: "string",
      short: "s",
      default: "64",
      arg: "BYTES",
      description: "Message size (pingpong) or write size (stream).",
    },
    mode: {
      type: "string",
      default: "pingpong",
      arg: "MODE",
      description:
        "pingpong: send, wait for the whole echo, repeat; stream: keep a window in flight.",
    },
    duration: {
      type: "string",
      short: "d",
      default: "5",
      arg: "SECONDS",
      description: "How long traffic runs once the connections are up.",
    },
    rate: {
      type: "string",
      arg: "MSGS_PER_S",
      description:
        "Messages per second per connection, open loop (latency counts from when each was due).",
    },
    ramp: {
      type: "string",
      default: "100",
      arg: "N",
      description: "Connects in flight at once while opening connections.",
    },
    window: {
      type: "string",
      default: "262144",
      arg: "BYTES",
      description: "Stream mode: most bytes in flight per connection.",
    },
    idle: {
      type: "string",
      default: "0",
      arg: "N",
      description: "Extra connections held open without traffic.",
    },
    "connect-timeout": {
      type: "string",
      default: "5",
      arg: "SECONDS",
      description: "Give up on a connect after this long.",
    },
    "drain-timeout": {
      type: "string",
      default: "5",
      arg: "SECONDS",
      description: "After the run, time allowed for outstanding echoes.",
    },
    json: {
      type: "boolean",
      description: "Print the report as one JSON object.",
    },
    quiet: {
      type: "boolean",
      short: "q",
      description: "No progress lines while running.",
    },
    "allow-errors": {
      type: "boolean",
      description: "Exit 0 even if bytes mismatched or connections failed.",
    },
  },
  epilog: `Exit status: 0 when every connection came up and every byte came back
intact, 1 otherwise (or with --allow-errors, only when nothing could connect),
2 on a usage mistake. Progress goes to stderr: one live line on a terminal,
a line a second otherwise. Ctrl-C ends the run early and still reports.

Examples:
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 -c 1000 -d 10
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 --mode stream -s 16384 -c 10
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 -c 50 --rate 1000 --json`,
};

/**
 * The command line: parses `args`, runs the load, prints the report.
 *
 * @param args Command-line arguments, as `Deno.args`.
 * @returns The exit code.
 */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, SPEC);
  if (!parsed) return 0;
  const v = parsed.values;
  const mode = String(v.mode);
  if (mode !== "pingpong" && mode !== "stream") {
    throw new UsageError(
      `Cannot parse --mode "${mode}": expected pingpong or stream`,
    );
  }
  const connections = parseInteger(v.connections, "--connections", 0);
  const idle = parseInteger(v.idle, "--idle", 0);
  if (connections + idle === 0) {
    throw new UsageError(
      'Cannot use --connections "0" without --idle: open at least one connection',
    );
  }
  let rate = 0;
  if (v.rate !== undefined) {
    const text = String(v.rate);
    rate = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(text) ? Number(text) : NaN;
    if (!(rate > 0) || !Number.isFinite(rate)) {
      throw new UsageError(
        `Cannot parse --rate "${text}": expected messages per second above 0`,
      );
    }
  }
  const json = v.json === true;
  const quiet = v.quiet === true;
  const live = !quiet && Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
  let shown = false;
  using shutdown = shutdownSignal();
  const report = await runLoad({
    hostname: String(v.host),
    port: parseInteger(v.port, "--port", 1, 65535),
    connections,
    idle,
    size: parseInteger(v.size, "--size", 1, 16 * 1024 * 1024),
    mode,
    duration: parseSeconds(v.duration, "--duration"),
    rate,
    ramp: parseInteger(v.ramp, "--ramp", 1),
    window: parseInteger(v.window, "--window", 1),
    connectTimeout: parseSeconds(v["connect-timeout"], "--connect-timeout"),
    drainTimeout: parseSeconds(v["drain-timeout"], "--drain-timeout"),
    signal: shutdown.signal,
    progressInterval: live ? 250 : 1_000,
    onProgress: quiet ? undefined : (p) => {
      if (live) {
        Deno.stderr.writeSync(encoder.encode(`\r\x1b[K${formatProgress(p)}`));
        shown = true;
      } else {
        console.error(formatProgress(p));
      }
    },
  });
  if (shown) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
  console.log(json ? JSON.stringify(report) : formatReport(report));
  return report.ok || v["allow-errors"] === true ? 0 : 1;
}

if (import.meta.main) runMain(main);
