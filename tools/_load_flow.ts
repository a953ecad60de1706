/**
 * Flows and tallies of the load generator: one connection's state and
 * buffers, what goes out next and how what comes back is checked and timed,
 * the counters a run shares, and how a failure is sorted into them. Both
 * engines (`_load_net.ts`, `_load_deno.ts`) move bytes through these, so they
 * check alike. Private to `tools/load.ts`.
 *
 * @module
 */

import { describeError, isPeerGone } from "../_cli.ts";
import { type ConnectEndpoint, ConnectError } from "../_net.ts";
import {
  describeTlsAlert,
  describeTlsConnectFailure,
  describeTlsError,
} from "../_tls_errors.ts";
import type { LatencyHistogram } from "./_histogram.ts";
import { countMismatches, type Pattern } from "./_load_pattern.ts";
import { ErrorSamples } from "./_report.ts";
import { EARLY, type Pacer } from "./_load_pacer.ts";

/** How each connection drives the server. */
export type LoadMode = "pingpong" | "stream";

/** Which socket API drives the connections; see {@linkcode LoadOptions}. */
export type LoadEngine = "net" | "deno";

/** Stream reads go into a buffer of this size (or the message size, if larger). */
export const STREAM_READ = 64 * 1024;

/** Counters shared by every connection of a run (one thread: no races). */
export class Tally extends ErrorSamples {
  /** Connections open now. */
  connected = 0;
  /** Active connections (those that carry traffic) open now. */
  active = 0;
  /**
   * Called when the last connection closes: the last active one, or the
   * last of all when there are none (`-c 0 --idle N`).
   */
  onGone: () => void = () => {};
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

  /** Books a connection as up. */
  opened(active: boolean): void {
    this.connected++;
    this.everConnected++;
    if (active) this.active++;
  }

  /** Books a connection as closed; the last one calls `onGone`. */
  closed(active: boolean): void {
    this.connected--;
    if (active) this.active--;
    if ((active && this.active === 0) || this.connected === 0) this.onGone();
  }

  get errorCount(): number {
    return this.connectFailures + this.resets + this.closedByServer +
      this.otherErrors + (this.mismatchedBytes > 0 ? 1 : 0) +
      (this.extraBytes > 0 ? 1 : 0);
  }
}

/** What every connection of a run reads; fixed once traffic starts. */
export interface Run {
  readonly tally: Tally;
  readonly pattern: Pattern;
  /**
   * Round trips of the current interval; the run takes it at each interval's
   * end and puts a fresh one here.
   */
  histogram: LatencyHistogram;
  /** How the connections are carried (setNoDelay exists for tcp and tls). */
  readonly transport: ConnectEndpoint["transport"];
  readonly size: number;
  /** Active connections. */
  readonly connections: number;
  readonly window: number;
  /** Milliseconds between messages of one connection; 0 is closed loop. */
  readonly interval: number;
  /** Open loop: wakes each connection as its next message comes due. */
  readonly pacer: Pacer;
  /** Aborts when traffic should stop (duration over or caller's signal). */
  readonly stop: AbortSignal;
  /** Resolves when traffic starts, once every connection is up. */
  readonly started: Promise<void>;
  /** When traffic started (`performance.now()`). */
  startedAt: number;
}

/**
 * One connection's state and reusable buffers. The engines move bytes; the
 * flow decides what goes out next ({@linkcode nextMessage}) and checks what
 * comes back ({@linkcode consume}), so both engines check alike. Pingpong is
 * a stream whose window is one message.
 */
export class Flow {
  /** Position of this connection; picks its first slot and its schedule. */
  readonly index: number;
  /** Carries traffic (not an idle connection). */
  readonly active: boolean;
  /** Receive buffer, 4 bytes longer than a read so reads can start aligned. */
  readonly recv: Uint8Array;
  /** `recv` as 32-bit words. */
  readonly recv32: Int32Array;
  /** `recv` viewed from offsets 0..3, made once. */
  readonly recvViews: Uint8Array[];
  /** Most bytes one read may bring. */
  readonly readLength: number;
  /** When each message in flight was due, by message number mod length. */
  readonly ring: Float64Array;
  /** Bytes written so far. */
  sent = 0;
  /** Bytes echoed and checked so far. */
  received = 0;
  /** Slot of the next message to send. */
  sendSlot: number;
  /** Number of the next message to send. */
  sendIndex = 0;
  /** Open loop: when the next message is due. */
  due = 0;
  /** Slot of the message being received. */
  recvSlot: number;
  /** Number of the message being received. */
  recvIndex = 0;
  /** Bytes of the message being received already checked. */
  offset = 0;
  /** The flow has ended; its connection is closed or closing. */
  done = false;
  /** Closes the connection (set by the engine). */
  close: () => void = () => {};
  /** Deno engine: wakes the writer when the window opens. */
  wake: (() => void) | undefined = undefined;

  constructor(run: Run, index: number, readLength: number) {
    this.index = index;
    this.active = index < run.connections;
    this.readLength = readLength;
    const buffer = new ArrayBuffer(Math.ceil((readLength + 4) / 4) * 4);
    this.recv = new Uint8Array(buffer);
    this.recv32 = new Int32Array(buffer);
    this.recvViews = [0, 1, 2, 3].map((a) =>
      new Uint8Array(buffer, a, readLength)
    );
    this.ring = new Float64Array(Math.ceil(run.window / run.size) + 1);
    this.sendSlot = this.recvSlot = index % run.pattern.slots;
  }
}

/**
 * What the {@linkcode Flow}s of a run allocate, in bytes: each connection's
 * receive buffer and ring of due times (an idle one's are small), as the
 * constructor above and `runLoad` size them.
 */
export function flowBytes(
  options: {
    mode: LoadMode;
    size: number;
    window: number;
    connections: number;
    idle: number;
  },
): number {
  const stream = options.mode === "stream";
  const window = stream ? Math.max(options.window, options.size) : options.size;
  const ring = (Math.ceil(window / options.size) + 1) * 8;
  const recv = (stream ? Math.max(STREAM_READ, options.size) : options.size) +
    8;
  return options.connections * (recv + ring) + options.idle * (24 + ring);
}

/** Whether `flow` may send another message without passing the window. */
export function windowOpen(run: Run, flow: Flow): boolean {
  return flow.sent - flow.received + run.size <= run.window;
}

/**
 * Books the next message of `flow` as sent at `start` and returns its bytes:
 * a view made once, so nothing is allocated.
 */
export function nextMessage(run: Run, flow: Flow, start: number): Uint8Array {
  flow.ring[flow.sendIndex % flow.ring.length] = start;
  flow.sendIndex++;
  flow.sent += run.size;
  run.tally.bytesSent += run.size;
  const view = run.pattern.views[flow.sendSlot]!;
  flow.sendSlot = flow.sendSlot + 1 === run.pattern.slots
    ? 0
    : flow.sendSlot + 1;
  return view;
}

/**
 * Open loop: when the next message may go. Returns when its latency counts
 * from, the earlier of its due time and now, or -1 if it is not due within
 * {@linkcode EARLY} ms (then the pacer wakes it).
 */
export function dueTime(run: Run, flow: Flow): number {
  const now = performance.now();
  if (run.interval === 0) return now;
  if (flow.due > now + EARLY) return -1;
  const due = flow.due;
  flow.due += run.interval;
  // Sent early: latency counts from now; late: from when it was due.
  return Math.min(due, now);
}

/**
 * Checks `n` echoed bytes that sit at `flow.recv[at..]` against what was
 * sent at that offset, message by message, and times each message that is
 * now complete. Bytes beyond what was sent are counted as extra.
 */
export function consume(run: Run, flow: Flow, at: number, n: number): void {
  // Bytes a read brought after the run gave up on the flow (the drain timed
  // out and counted them missing) are neither checked nor extra.
  if (flow.done) return;
  const { pattern, size, tally } = run;
  if (flow.received + n > flow.sent) {
    tally.extraBytes += flow.received + n - flow.sent;
    tally.note("the server sent more bytes than it was sent");
    n = flow.sent - flow.received;
  }
  flow.received += n;
  tally.bytesEchoed += n;
  while (n > 0) {
    const take = Math.min(n, size - flow.offset);
    tally.mismatchedBytes += countMismatches(
      flow.recv,
      flow.recv32,
      at,
      pattern.bytes,
      pattern.words,
      flow.recvSlot * pattern.stride + flow.offset,
      take,
    );
    at += take;
    n -= take;
    flow.offset += take;
    if (flow.offset === size) {
      run.histogram.record(
        performance.now() - flow.ring[flow.recvIndex % flow.ring.length]!,
      );
      flow.recvIndex++;
      tally.messages++;
      flow.offset = 0;
      flow.recvSlot = flow.recvSlot + 1 === pattern.slots
        ? 0
        : flow.recvSlot + 1;
    }
  }
}

/** Counts the bytes `flow` will never get back, once. */
export function loseOutstanding(run: Run, flow: Flow): void {
  run.tally.missingBytes += flow.sent - flow.received;
  flow.sent = flow.received;
}

/** Sorts a failure of `flow` into the run's counters. */
export function recordFailure(run: Run, flow: Flow, error: unknown): void {
  if (flow.done) return; // the run closed it; the drain counted the loss
  const code = (error as { code?: unknown } | null)?.code;
  if (
    isPeerGone(error) || code === "ECONNRESET" || code === "EPIPE" ||
    code === "ECONNABORTED"
  ) {
    run.tally.resets++;
  } else {
    run.tally.otherErrors++;
  }
  run.tally.note(describeNetError(error));
  loseOutstanding(run, flow);
}

/**
 * Why a connect failed, in one line, from either engine: `_net.ts`'s reason,
 * or a `node:net` / `node:tls` error read as {@linkcode describeTlsError}
 * reads a certificate failure.
 */
export function describeConnectError(
  endpoint: ConnectEndpoint,
  error: unknown,
): string {
  if (error instanceof ConnectError) return error.reason;
  // node:tls: the server's refusal (an alert on our client certificate,
  // with TLS 1.2; a hang-up; no TLS at all) says more than the error.
  const refused = endpoint.transport === "tls"
    ? describeTlsConnectFailure(error)
    : undefined;
  if (refused !== undefined) return refused;
  const e = error as { code?: unknown; host?: unknown } | null;
  if (e?.code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `certificate is not valid for "${e.host}"; connect by a name it ` +
      `holds or give it with --server-name`;
  }
  if (e?.code === "UNABLE_TO_VERIFY_LEAF_SIGNATURE") {
    // Deno's node:tls gives every other verify failure this one code.
    return "certificate not verified: expired, not valid yet, or from an " +
      "unknown CA (node:tls does not say which; --engine deno does)";
  }
  return e?.code === undefined
    ? describeTlsError(error)
    : describeNetError(error);
}

/** {@linkcode describeError}, also for `node:net` errors (which carry a code). */
export function describeNetError(error: unknown): string {
  const alert = describeTlsAlert(error);
  if (alert !== undefined) return alert;
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ECONNRESET") return "connection reset by peer";
  if (code === "EPIPE") return "broken pipe";
  return describeError(error);
}

/** Notes that the server closed `flow` while bytes were owed or the run went on. */
export function recordClose(run: Run, flow: Flow, idle: boolean): void {
  run.tally.closedByServer++;
  run.tally.note(
    idle
      ? "idle connection closed by the server"
      : "connection closed by the server",
  );
  loseOutstanding(run, flow);
}
