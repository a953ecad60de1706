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
 * @example
 * ```sh
 * deno run --allow-net=127.0.0.1 tools/load.ts --port 39304 -c 50 -d 5
 * ```
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import process from "node:process";
import {
  CliError,
  type CommandSpec,
  describeError,
  isClosed,
  isPeerGone,
  MAX_TIMER_MS,
  parseCommandLine,
  parseHost,
  parseInteger,
  parseSeconds,
  runMain,
  shutdownSignal,
  sleep,
  UsageError,
} from "../_cli.ts";
import {
  bareHost,
  CLIENT_ENDPOINT_OPTIONS,
  connect,
  type ConnectEndpoint,
  connectEndpoint,
  ConnectError,
  formatEndpoint,
  parseClientEndpoint,
  TLS_LIMITS_HELP,
  type TlsClientOptions,
  writeAll,
} from "../_net.ts";
import {
  describeTlsAlert,
  describeTlsConnectFailure,
  describeTlsError,
} from "../_tls_errors.ts";
import { LatencyHistogram } from "./_histogram.ts";
import {
  count,
  type CpuReport,
  cpuReport,
  ErrorSamples,
  formatCpu,
  formatPercentiles,
  type LatencySummary,
  round,
  summarize,
} from "./_report.ts";

import {
  DEFAULT_UDP_RATE,
  formatUdpProgress,
  formatUdpReport,
  MAX_DATAGRAM,
  MAX_FLOWS,
  runUdpLoad,
  UDP_HEADER,
  type UdpLoadOptions,
  type UdpLoadProgress,
  type UdpLoadReport,
} from "./_udp_load.ts";

export { LatencyHistogram };
export type { CpuReport, LatencySummary };
export {
  DEFAULT_UDP_RATE,
  formatUdpReport,
  MAX_DATAGRAM,
  runUdpLoad,
  UDP_HEADER,
  type UdpLoadOptions,
  type UdpLoadProgress,
  type UdpLoadReport,
};

/** How each connection drives the server. */
export type LoadMode = "pingpong" | "stream";

/** Which socket API drives the connections; see {@linkcode LoadOptions}. */
export type LoadEngine = "net" | "deno";

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
  cpu: CpuReport;
  /** The first few distinct error messages, for a human. */
  errors: string[];
  /** True when every connection came up and every byte came back intact. */
  ok: boolean;
}

/** Most memory the shared byte pattern may take. */
const PATTERN_BUDGET = 64 * 1024 * 1024;
/** Deno engine: pingpong messages up to this size use the one-loop path. */
const PINGPONG_LIMIT = 64 * 1024;
/** Stream reads go into a buffer of this size (or the message size, if larger). */
const STREAM_READ = 64 * 1024;

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
class Tally extends ErrorSamples {
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
  /** How the connections are carried (setNoDelay exists for tcp and tls). */
  readonly transport: ConnectEndpoint["transport"];
  readonly size: number;
  /** Active connections. */
  readonly connections: number;
  readonly window: number;
  /** Milliseconds between messages of one connection; 0 is closed loop. */
  readonly interval: number;
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
class Flow {
  /** Position of this connection; picks its first slot and its schedule. */
  readonly index: number;
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
function flowBytes(
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
function windowOpen(run: Run, flow: Flow): boolean {
  return flow.sent - flow.received + run.size <= run.window;
}

/**
 * Books the next message of `flow` as sent at `start` and returns its bytes:
 * a view made once, so nothing is allocated.
 */
function nextMessage(run: Run, flow: Flow, start: number): Uint8Array {
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
 * Open loop: when the next message may go. Returns the time it was due, or
 * -1 if it is not due yet (then `flow.due - performance.now()` ms remain).
 */
function dueTime(run: Run, flow: Flow): number {
  if (run.interval === 0) return performance.now();
  // Timers fire at millisecond granularity; within 0.2 ms, send now.
  if (flow.due > performance.now() + 0.2) return -1;
  const due = flow.due;
  flow.due += run.interval;
  return due;
}

/**
 * Checks `n` echoed bytes that sit at `flow.recv[at..]` against what was
 * sent at that offset, message by message, and times each message that is
 * now complete. Bytes beyond what was sent are counted as extra.
 */
function consume(run: Run, flow: Flow, at: number, n: number): void {
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
function loseOutstanding(run: Run, flow: Flow): void {
  run.tally.missingBytes += flow.sent - flow.received;
  flow.sent = flow.received;
}

/** Sorts a failure of `flow` into the run's counters. */
function recordFailure(run: Run, flow: Flow, error: unknown): void {
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
function describeConnectError(
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
function describeNetError(error: unknown): string {
  const alert = describeTlsAlert(error);
  if (alert !== undefined) return alert;
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "ECONNREFUSED") return "connection refused";
  if (code === "ECONNRESET") return "connection reset by peer";
  if (code === "EPIPE") return "broken pipe";
  return describeError(error);
}

/** Notes that the server closed `flow` while bytes were owed or the run went on. */
function recordClose(run: Run, flow: Flow, idle: boolean): void {
  run.tally.closedByServer++;
  run.tally.note(
    idle
      ? "idle connection closed by the server"
      : "connection closed by the server",
  );
  loseOutstanding(run, flow);
}

// ---------------------------------------------------------------------------
// Engine "net": node:net sockets. Deno's node:net serves many busy
// connections fairly; Deno.Conn, past about 128 busy connections on one
// event loop, serves some and starves others for seconds (FINDINGS.md), and
// a load generator that starves its own connections reports its own stalls
// as the server's. The price is a Buffer the runtime allocates per read,
// which is copied into the flow's buffer at once.

/**
 * Opens a `node:net` socket to `endpoint` within `timeout` ms: `net.connect`
 * over TCP and to a Unix socket, `tls.connect` over TLS, ready once the
 * handshake is done (and the server's certificate verified as `connect` of
 * `_net.ts` verifies it: `caCerts` beside the default roots, against
 * `serverName` or else the host). The one place the `net` engine connects.
 */
function connectNode(
  endpoint: ConnectEndpoint,
  timeout: number,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    let ready = "connect";
    if (endpoint.transport === "unix") {
      socket = net.connect({ path: endpoint.path });
    } else if (endpoint.transport === "tcp") {
      socket = net.connect({
        host: bareHost(endpoint.hostname),
        port: endpoint.port,
      });
    } else {
      const host = bareHost(endpoint.hostname);
      const t = endpoint.tls;
      // SNI carries names only (RFC 6066); an address is verified all the same.
      const servername = t.serverName ?? (net.isIP(host) ? undefined : host);
      socket = tls.connect({
        host,
        port: endpoint.port,
        ...(servername === undefined ? {} : { servername }),
        // Deno's node:tls hands `ca` to Deno.startTls as caCerts: trusted
        // beside the default roots, as `connect` of _net.ts trusts them.
        ...(t.caCerts ? { ca: t.caCerts } : {}),
        ...(t.cert === undefined ? {} : { cert: t.cert, key: t.key }),
        ...(t.alpn ? { ALPNProtocols: t.alpn } : {}),
      });
      ready = "secureConnect";
    }
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new ConnectError(
          formatEndpoint(endpoint),
          `timed out after ${timeout / 1000} s`,
        ),
      );
    }, timeout);
    const onError = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.once("error", onError);
    socket.once(ready, () => {
      clearTimeout(timer);
      socket.off("error", onError);
      // A TLS alert read with the handshake's last bytes is emitted before
      // the engine's listeners are on (they are a microtask away): without
      // a listener it would be thrown. The engine finds it in `errored`.
      socket.on("error", ignore);
      resolve(socket);
    });
  });
}

/** An error listener that leaves the error to `socket.errored`. */
function ignore(): void {}

/**
 * Whether `socket` failed before its engine took it; if so, counts the
 * failure and finishes the flow.
 */
function failedEarly(
  run: Run,
  flow: Flow,
  socket: net.Socket,
  finish: () => void,
): boolean {
  if (socket.errored === null) return false;
  recordFailure(run, flow, socket.errored);
  finish();
  return true;
}

/** Drives one active `node:net` connection until the run ends. */
function driveNet(run: Run, flow: Flow, socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (run.transport !== "unix") socket.setNoDelay(true);
    let blocked = false; // the socket's buffer is full: wait for "drain"
    let timer: ReturnType<typeof setTimeout> | undefined; // open loop: waiting for the next due time
    const finish = () => {
      if (flow.done) return;
      flow.done = true;
      run.tally.connected--;
      if (timer !== undefined) clearTimeout(timer);
      run.stop.removeEventListener("abort", onStop);
      socket.destroy();
      resolve();
    };
    flow.close = finish;
    const pump = () => {
      timer = undefined;
      while (!blocked && !run.stop.aborted && windowOpen(run, flow)) {
        const start = dueTime(run, flow);
        if (start < 0) {
          timer = setTimeout(pump, flow.due - performance.now());
          return;
        }
        blocked = !socket.write(nextMessage(run, flow, start));
      }
      if (run.stop.aborted && flow.received >= flow.sent) finish();
    };
    const onStop = () => pump();
    run.stop.addEventListener("abort", onStop, { once: true });
    // Until traffic starts, only failures are watched.
    let live = false;
    socket.on("drain", () => {
      blocked = false;
      if (live && timer === undefined) pump();
    });
    socket.on("data", (chunk: Uint8Array) => {
      for (let i = 0; i < chunk.length;) {
        const take = Math.min(chunk.length - i, flow.readLength);
        const at = flow.offset & 3;
        flow.recv.set(
          take === chunk.length ? chunk : chunk.subarray(i, i + take),
          at,
        );
        consume(run, flow, at, take);
        i += take;
      }
      if (live && timer === undefined) pump();
    });
    socket.on("error", (error: Error) => {
      recordFailure(run, flow, error);
      finish();
    });
    socket.on("close", () => {
      if (!flow.done) {
        recordClose(run, flow, false);
        finish();
      }
    });
    if (failedEarly(run, flow, socket, finish)) return;
    run.started.then(() => {
      live = true;
      if (!flow.done) pump();
    });
  });
}

/** Holds an idle `node:net` connection until `flow.close()`. */
function holdNet(run: Run, flow: Flow, socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const finish = () => {
      if (flow.done) return;
      flow.done = true;
      run.tally.connected--;
      socket.destroy();
      resolve();
    };
    flow.close = finish;
    socket.on("data", (chunk: Uint8Array) => {
      run.tally.extraBytes += chunk.length;
      run.tally.note("the server wrote on an idle connection");
    });
    socket.on("error", (error: Error) => {
      recordFailure(run, flow, error);
      finish();
    });
    socket.on("close", () => {
      if (!flow.done) {
        recordClose(run, flow, true);
        finish();
      }
    });
    failedEarly(run, flow, socket, finish);
  });
}

// ---------------------------------------------------------------------------
// Engine "deno": Deno.Conn (TCP, TLS or a Unix socket, opened by `connect`
// of _net.ts), a writer and a reader per connection sharing the window.
// Nothing is allocated per message but the promises Deno's I/O needs:
// messages are prebuilt views, replies land in the flow's buffer.

/** Closes a Deno connection once. */
function conCloser(run: Run, flow: Flow, conn: Deno.Conn): () => void {
  return () => {
    if (flow.done) return;
    flow.done = true;
    run.tally.connected--;
    try {
      conn.close();
    } catch {
      // Already closed by a failed operation: nothing left to release.
    }
    const wake = flow.wake;
    flow.wake = undefined;
    wake?.();
  };
}

/** Drives one active Deno connection until the run ends. */
async function driveConn(
  run: Run,
  flow: Flow,
  conn: Deno.Conn,
): Promise<void> {
  // Only a TCP connection has the setting (a TlsConn has none, nor a Unix
  // socket).
  if (run.transport === "tcp") (conn as Deno.TcpConn).setNoDelay(true);
  flow.close = conCloser(run, flow, conn);
  await run.started;
  try {
    if (run.window === run.size && run.size <= PINGPONG_LIMIT) {
      await connPingpong(run, flow, conn);
    } else {
      await Promise.all([
        connWriter(run, flow, conn),
        connReader(run, flow, conn),
      ]);
    }
  } catch (error) {
    recordFailure(run, flow, error);
  }
  flow.close();
}

/**
 * Pingpong of a small message in one loop: write it, read until its echo is
 * all back. The writer/reader pair would cost a wake-up promise per message;
 * a message this small fits the socket buffers, so writing first cannot
 * deadlock against the server's echo.
 */
async function connPingpong(
  run: Run,
  flow: Flow,
  conn: Deno.Conn,
): Promise<void> {
  while (!run.stop.aborted && !flow.done) {
    const start = dueTime(run, flow);
    if (start < 0) {
      await sleep(flow.due - performance.now(), run.stop);
      continue;
    }
    const message = nextMessage(run, flow, start);
    const n = await conn.write(message);
    if (n < message.length) await writeAll(conn, message.subarray(n));
    while (flow.received < flow.sent) {
      const at = flow.offset & 3;
      const got = await conn.read(flow.recvViews[at]!);
      if (got === null) {
        recordClose(run, flow, false);
        return;
      }
      consume(run, flow, at, got);
    }
  }
}

/** Writes messages while the window is open and they are due. */
async function connWriter(
  run: Run,
  flow: Flow,
  conn: Deno.Conn,
): Promise<void> {
  while (!run.stop.aborted && !flow.done) {
    if (!windowOpen(run, flow)) {
      await new Promise<void>((resolve) => flow.wake = resolve);
      continue;
    }
    const start = dueTime(run, flow);
    if (start < 0) {
      await sleep(flow.due - performance.now(), run.stop);
      continue;
    }
    await writeAll(conn, nextMessage(run, flow, start));
  }
  // Nothing more will be written. If every byte is back, the reader waits on
  // a read that will never complete: closing ends it.
  if (flow.received >= flow.sent) flow.close();
}

/** Reads and checks the echo until every byte sent is back. */
async function connReader(
  run: Run,
  flow: Flow,
  conn: Deno.Conn,
): Promise<void> {
  while (!flow.done) {
    // Read at the alignment of the expected bytes so they compare by words.
    const at = flow.offset & 3;
    let n: number | null;
    try {
      n = await conn.read(flow.recvViews[at]!);
    } catch (error) {
      if (flow.done && isClosed(error)) return;
      throw error;
    }
    if (n === null) {
      if (!(run.stop.aborted && flow.received >= flow.sent)) {
        recordClose(run, flow, false);
      }
      flow.close();
      return;
    }
    consume(run, flow, at, n);
    const wake = flow.wake;
    if (wake !== undefined && windowOpen(run, flow)) {
      flow.wake = undefined;
      wake();
    }
    if (run.stop.aborted && flow.received >= flow.sent) flow.close();
  }
}

/** Holds an idle Deno connection, noticing if the server closes or writes. */
async function holdConn(
  run: Run,
  flow: Flow,
  conn: Deno.Conn,
): Promise<void> {
  flow.close = conCloser(run, flow, conn);
  try {
    const n = await conn.read(flow.recv);
    if (n === null) {
      if (!flow.done) recordClose(run, flow, true);
    } else {
      run.tally.extraBytes += n;
      run.tally.note("the server wrote on an idle connection");
    }
  } catch (error) {
    if (!(flow.done && isClosed(error))) recordFailure(run, flow, error);
  }
  flow.close();
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
 * Requires `--allow-net` to the server's address (a Unix socket:
 * `--allow-net=unix:PATH --allow-read=PATH --allow-write=PATH`).
 *
 * @param options What to run; only `port` (or `unix`) is required.
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
  const connections = options.connections ?? 50;
  const idle = options.idle ?? 0;
  const size = options.size ?? 64;
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
  const run: Run = {
    tally,
    pattern: new Pattern(size, connections),
    histogram: new LatencyHistogram(),
    transport: endpoint.transport,
    size,
    connections,
    window,
    interval: rate > 0 ? 1000 / rate : 0,
    stop: stopper.signal,
    started,
    startedAt: 0,
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
        adopt(i, conn);
        tally.connected++;
        tally.everConnected++;
      } catch (error) {
        tally.connectFailures++;
        tally.note(
          `cannot connect to ${target}: ${
            describeConnectError(endpoint, error)
          }`,
        );
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

    phase = "running";
    const cpuStart = process.cpuUsage();
    run.startedAt = performance.now();
    const timer = setTimeout(() => stopper.abort(), duration);
    for (const flow of flows) {
      // Spread the open-loop schedules over one interval, not all at once.
      flow.due = run.startedAt + run.interval * (flow.index / connections);
    }
    begin();
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

    const seconds = (stoppedAt - run.startedAt) / 1000;
    const report: LoadReport = {
      target,
      transport: endpoint.transport,
      mode,
      connections,
      idle,
      size,
      window: mode === "stream" ? window : 0,
      rate,
      engine,
      connected: tally.everConnected,
      connectMs: round(connectMs, 1),
      connectRate,
      connectsPerSecond: connectMs > 0
        ? Math.round(tally.everConnected / (connectMs / 1000))
        : 0,
      connect: summarize(connectHistogram),
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
      latency: summarize(run.histogram),
      cpu: cpuReport(cpu, seconds),
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
    begin();
    for (const flow of flows) flow.close();
    for (const flow of idlers) flow.close();
  }
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
    } messages)`,
    `latency ms: ${formatPercentiles(l)}  (mean ${l.mean}, ${
      count(l.samples)
    } samples)`,
    `bytes: ${count(report.bytesEchoed)} of ${
      count(report.bytesSent)
    } echoed and checked; ${count(report.mismatchedBytes)} mismatched, ${
      count(report.missingBytes)
    } missing, ${count(report.extraBytes)} extra`,
    formatCpu(report.cpu),
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

/**
 * Most connections one run opens, with and without traffic: each
 * connection to one HOST:PORT takes a local port of its own, and a host has
 * 65535 ports (Linux lends 28,232 by default, `ip_local_port_range`).
 */
const MAX_CONNECTIONS = 65_535;

/**
 * Largest `--window`: about three times what the four socket buffers on an
 * echo's path hold at Linux's default maxima (4-6 MiB each, `tcp_wmem`,
 * `tcp_rmem`); bytes in flight beyond them only wait in this process.
 */
const MAX_WINDOW = 64 * 1024 * 1024;

/**
 * Most the connections' buffers may take: more fails as "Array buffer
 * allocation failed" or wakes the OOM killer. The bench's largest run (1,000
 * connections, 16 KiB stream writes) takes 70 MB.
 */
const MAX_FLOW_BYTES = 4 * 1024 ** 3;

const SPEC: CommandSpec = {
  name: "tools/load.ts",
  summary:
    "Drive an echo server with many connections and check every byte that comes back.",
  options: {
    ...CLIENT_ENDPOINT_OPTIONS,
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
    "connect-rate": {
      type: "string",
      arg: "N",
      description:
        "Open connections at N per second (as tcpkali), at most --ramp in flight; default as fast as they come.",
    },
    window: {
      type: "string",
      default: "262144",
      arg: "BYTES",
      description: "Stream mode: most bytes in flight per connection.",
    },
    engine: {
      type: "string",
      default: "auto",
      arg: "ENGINE",
      description:
        "deno: Deno.Conn, faster, unfair past ~128 busy connections; net: node:net (node:tls), fair; auto: deno up to 128 connections, net above.",
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
      description:
        "Give up on a connect (with its TLS handshake) after this long.",
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
      description:
        "Exit 0 even if bytes mismatched or connections failed (--udp: datagrams came back corrupted).",
    },
    udp: {
      type: "boolean",
      description:
        "UDP echo: each of -c flows sends sequence-numbered datagrams of -s bytes (24 to 65507, header included) at --rate and checks each one back.",
    },
    count: {
      type: "string",
      arg: "N",
      description:
        "--udp: send at most N datagrams a flow (the run still ends at --duration).",
    },
    "loss-timeout": {
      type: "string",
      default: "1",
      arg: "SECONDS",
      description:
        "--udp: a datagram not back intact this long after it was sent is lost (one back later is late).",
    },
    "max-loss": {
      type: "string",
      arg: "PERCENT",
      description:
        "--udp: exit 1 when more than PERCENT of the datagrams are lost; default loss is only reported.",
    },
  },
  epilog: `Exit status: 0 when every connection came up and every byte came back
intact, 1 otherwise (or with --allow-errors, only when nothing could connect),
2 on a usage mistake. Progress goes to stderr: one live line on a terminal,
a line a second otherwise. Ctrl-C (or SIGTERM, SIGHUP) ends the run early and
still reports; a second one stops at once (exit 130).

--udp: every flow is a socket sending at --rate datagrams a second (default
${DEFAULT_UDP_RATE}: 1 ms apart, what a millisecond timer keeps; with no pacing UDP
load measures how fast socket buffers overflow); --rate 0 floods, and the report
says so. Counted: sent, received, lost (not back intact within --loss-timeout;
lost_packets, lost_percent as iperf3), late, duplicated, reordered
(out_of_order), corrupted; RTT percentiles and RFC 3550 jitter (jitter_ms).
Loss is reported, not an error, unless above --max-loss; exit 1 also when
nothing came back or something came back corrupted.

The connect phase (TCP connect, plus the TLS handshake with --tls) has its own
percentiles and connects/s in the report: with --tls -c 0 --idle N, connects/s
is handshakes per second; --connect-rate paces them.
${TLS_LIMITS_HELP}

Examples:
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 -c 1000 -d 10
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 --mode stream -s 16384 -c 10
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 -c 50 --rate 1000 --json
  deno run --allow-net=localhost --allow-read=ca.pem tools/load.ts --host localhost -p 39304 --tls --ca ca.pem
  deno run --allow-net=127.0.0.1 --allow-read=ca.pem tools/load.ts -p 39304 --tls --ca ca.pem -c 0 --idle 2000 --connect-rate 500
  deno run --allow-net=127.0.0.1 tools/load.ts -p 39304 --udp -c 10 --rate 500 --max-loss 1
  deno run --allow-net=unix:/tmp/echo.sock --allow-read=/tmp/echo.sock --allow-write=/tmp/echo.sock tools/load.ts --unix /tmp/echo.sock`,
};

/**
 * Parses a rate option (`--rate`, `--connect-rate`): 0 when not given, else
 * 0.001 to 1,000,000 per second, at least one per 1000 s (a due time a timer
 * holds), at most one per microsecond.
 *
 * @throws {UsageError} Naming the option and the range.
 */
function parseRate(
  value: unknown,
  name: string,
  what: string,
  zero?: string,
): number {
  if (value === undefined) return 0;
  const text = String(value);
  const rate = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(text) ? Number(text) : NaN;
  if (zero !== undefined && rate === 0) return 0;
  if (!(rate >= 0.001 && rate <= 1_000_000)) {
    throw new UsageError(
      `Cannot parse ${name} "${text}": expected ${
        zero === undefined ? "" : `0 (${zero}) or `
      }0.001 to 1000000 ${what} per second`,
    );
  }
  return rate;
}

/** The TCP options that mean nothing over UDP, with their defaults. */
const TCP_ONLY: Record<string, string | undefined> = {
  tls: undefined,
  unix: undefined,
  mode: "pingpong",
  window: "262144",
  engine: "auto",
  idle: "0",
  ramp: "100",
  "connect-rate": undefined,
  "connect-timeout": "5",
  "drain-timeout": "5",
};

/**
 * The UDP mode's command line (`--udp`): checks its options, runs
 * {@linkcode runUdpLoad}, prints the report; returns the exit code.
 */
async function udpMain(
  v: Record<string, string | boolean | (string | boolean)[] | undefined>,
): Promise<number> {
  for (const [name, byDefault] of Object.entries(TCP_ONLY)) {
    const value = v[name];
    if (value !== undefined && value !== false && String(value) !== byDefault) {
      throw new UsageError(
        `--${name} and --udp do not combine: ${
          name === "tls"
            ? "DTLS is not supported"
            : name === "unix"
            ? "datagrams go to a HOST:PORT"
            : "it is an option of the TCP modes"
        }`,
      );
    }
  }
  const hostname = parseHost(v.host, "--host");
  const port = parseInteger(v.port, "--port", 1, 65535);
  const flows = parseInteger(v.connections, "--connections", 1, MAX_FLOWS);
  const size = parseInteger(v.size, "--size", UDP_HEADER, MAX_DATAGRAM);
  const rate = v.rate === undefined
    ? DEFAULT_UDP_RATE
    : parseRate(v.rate, "--rate", "datagrams", "flood");
  const count = v.count === undefined
    ? 0
    : parseInteger(v.count, "--count", 1, 1_000_000_000);
  const duration = parseSeconds(v.duration, "--duration");
  const lossTimeout = parseSeconds(v["loss-timeout"], "--loss-timeout");
  let maxLoss: number | undefined;
  if (v["max-loss"] !== undefined) {
    const text = String(v["max-loss"]);
    maxLoss = /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(text) ? Number(text) : NaN;
    if (!(maxLoss >= 0 && maxLoss <= 100)) {
      throw new UsageError(
        `Cannot parse --max-loss "${text}": expected 0 to 100 percent`,
      );
    }
  }
  const quiet = v.quiet === true;
  const live = !quiet && Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
  let shown = false;
  using shutdown = shutdownSignal();
  let report: UdpLoadReport;
  try {
    report = await runUdpLoad({
      hostname,
      port,
      flows,
      size,
      rate,
      count,
      duration,
      lossTimeout,
      maxLoss,
      signal: shutdown.signal,
      progressInterval: live ? 250 : 1_000,
      onProgress: quiet ? undefined : (p) => {
        if (live) {
          Deno.stderr.writeSync(
            encoder.encode(`\r\x1b[K${formatUdpProgress(p)}`),
          );
          shown = true;
        } else {
          console.error(formatUdpProgress(p));
        }
      },
    });
  } catch (error) {
    // A name that does not resolve: a runtime failure, not a usage one.
    if (error instanceof RangeError) throw new CliError(error.message);
    throw error;
  }
  if (shown) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
  console.log(
    v.json === true ? JSON.stringify(report) : formatUdpReport(report),
  );
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
  const parsed = parseCommandLine(args, SPEC);
  if (!parsed) return 0;
  const v = parsed.values;
  if (v.udp === true) return await udpMain(v);
  for (const name of ["count", "max-loss"]) {
    if (v[name] !== undefined) throw new UsageError(`--${name} needs --udp`);
  }
  if (v["loss-timeout"] !== "1") {
    throw new UsageError("--loss-timeout needs --udp");
  }
  const mode = String(v.mode);
  if (mode !== "pingpong" && mode !== "stream") {
    throw new UsageError(
      `Cannot parse --mode "${mode}": expected pingpong or stream`,
    );
  }
  const engine = String(v.engine);
  if (engine !== "auto" && engine !== "net" && engine !== "deno") {
    throw new UsageError(
      `Cannot parse --engine "${engine}": expected auto, net or deno`,
    );
  }
  // A port to connect to: 0 is a usage mistake here, as in --check.
  if (v.unix === undefined) parseInteger(v.port, "--port", 1, 65535);
  const connections = parseInteger(
    v.connections,
    "--connections",
    0,
    MAX_CONNECTIONS,
  );
  const idle = parseInteger(v.idle, "--idle", 0, MAX_CONNECTIONS);
  if (connections + idle === 0) {
    throw new UsageError(
      'Cannot use --connections "0" without --idle: open at least one connection',
    );
  }
  if (connections + idle > MAX_CONNECTIONS) {
    throw new UsageError(
      `Cannot use --connections "${connections}" with --idle "${idle}": ` +
        `at most ${MAX_CONNECTIONS} connections in all (each takes a local port)`,
    );
  }
  const size = parseInteger(v.size, "--size", 1, 16 * 1024 * 1024);
  const window = parseInteger(v.window, "--window", 1, MAX_WINDOW);
  const bytes = flowBytes({ mode, size, window, connections, idle });
  if (bytes > MAX_FLOW_BYTES) {
    const gib = (n: number) => `${(n / 1024 ** 3).toFixed(1)} GiB`;
    const what = mode === "stream"
      ? `--window "${window}" with --size "${size}" and`
      : `--size "${size}" with`;
    throw new UsageError(
      `Cannot use ${what} ${connections + idle} connections: their buffers ` +
        `would take ${gib(bytes)}, at most ${gib(MAX_FLOW_BYTES)}`,
    );
  }
  const rate = parseRate(v.rate, "--rate", "messages");
  const connectRate = parseRate(
    v["connect-rate"],
    "--connect-rate",
    "connections",
  );
  const duration = parseSeconds(v.duration, "--duration");
  const ramp = parseInteger(v.ramp, "--ramp", 1, MAX_CONNECTIONS);
  const connectTimeout = parseSeconds(
    v["connect-timeout"],
    "--connect-timeout",
  );
  const drainTimeout = parseSeconds(v["drain-timeout"], "--drain-timeout");
  // Last: it reads the certificate files, a failure that is not a usage
  // mistake.
  const endpoint = await parseClientEndpoint(v);
  const json = v.json === true;
  const quiet = v.quiet === true;
  const live = !quiet && Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
  let shown = false;
  using shutdown = shutdownSignal();
  const report = await runLoad({
    ...(endpoint.transport === "unix" ? { unix: endpoint.path } : {
      hostname: endpoint.hostname,
      port: endpoint.port,
      ...(endpoint.transport === "tls" ? { tls: endpoint.tls } : {}),
    }),
    connections,
    idle,
    size,
    mode,
    engine,
    duration,
    rate,
    ramp,
    connectRate,
    window,
    connectTimeout,
    drainTimeout,
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
