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
 * Private to this package: `tools/load.ts` parses the command line and
 * re-exports {@linkcode runUdpLoad} and {@linkcode formatUdpReport}.
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
import {
  formatSpan,
  type IntervalSpan,
  runIntervals,
} from "./_load_interval.ts";
import { bareHost, formatAddr } from "../_net.ts";
import { LatencyHistogram } from "./_histogram.ts";
import { fillXorshift32 } from "../_random.ts";
import {
  count,
  type CpuReport,
  cpuReport,
  ERROR_SAMPLES,
  ErrorSamples,
  formatCpu,
  formatPercentiles,
  type IntervalLatency,
  intervalLatency,
  type LatencySummary,
  round,
  summarize,
} from "./_report.ts";

/** Bytes of the header every datagram starts with. */
export const UDP_HEADER = 24;

/**
 * Largest datagram: 65,535 bytes of IPv4 packet less its 20-byte header and
 * UDP's 8 (RFC 768); IPv6 could carry 20 more, but no IPv4 path can.
 */
export const MAX_DATAGRAM = 65_507;

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

/** Distinct payload offsets a flow cycles through, 8 bytes apart. */
const SLOTS = 64;
/** Most datagrams one flow tracks at once (17 bytes each). */
const MAX_RING = 1 << 22;

/** Counters of a run (one thread: no races). */
class UdpTally extends ErrorSamples {
  sent = 0;
  received = 0;
  late = 0;
  duplicated = 0;
  reordered = 0;
  corrupted = 0;
  foreign = 0;
  refused = 0;
  sendErrors = 0;
  receiveErrors = 0;
  bytesSent = 0;
  bytesReceived = 0;
  /** Datagrams sent and not yet back (intact, in time or late). */
  outstanding = 0;

  /** What an interval counts as errors. */
  get errorCount(): number {
    return this.corrupted + this.refused + this.sendErrors +
      this.receiveErrors;
  }
}

/** What every flow of a run reads. */
interface UdpRun {
  readonly tally: UdpTally;
  /** Round trips of the current interval; replaced as each one ends. */
  histogram: LatencyHistogram;
  /** Where datagrams go, with the address the replies must come from. */
  readonly addr: Deno.NetAddr;
  readonly size: number;
  readonly flows: number;
  /** Milliseconds between datagrams of one flow; 0 floods. */
  readonly interval: number;
  /** Datagrams per flow at most; 0 is no limit. */
  readonly count: number;
  readonly lossTimeout: number;
  /** Aborts when sending should stop. */
  readonly stop: AbortSignal;
  /** Latest send of any flow (`performance.now()`). */
  lastSentAt: number;
  /** Called when `tally.outstanding` reaches 0 after sending stopped. */
  onSettled: () => void;
}

/** The 32-bit check of a header's first 20 bytes (FNV-1a over its words). */
function headerCheck(view: DataView): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < 20; i += 4) {
    h = Math.imul(h ^ view.getUint32(i), 0x01000193);
  }
  return h >>> 0;
}

/**
 * One flow: its socket, its pattern, the datagram it reuses for sending,
 * its receive buffer, and a ring of what it has sent, by sequence number.
 */
class UdpFlow {
  /** Position of this flow: in every header, and seeds its pattern. */
  readonly index: number;
  readonly conn: Deno.DatagramConn;
  /** The datagram being sent; header rewritten, payload copied, per send. */
  readonly out: Uint8Array;
  readonly outView: DataView;
  /** Receive buffer, one byte longer than a datagram, so a longer one shows. */
  readonly recv: Uint8Array;
  readonly recvView: DataView;
  readonly recv32: Int32Array;
  /** The flow's random bytes; datagram n's payload starts at (n % SLOTS) * 8. */
  readonly pattern: Uint8Array;
  readonly pattern32: Int32Array;
  /** Ring of sent datagrams: the sequence number in each slot, -1 if none. */
  seqs: Float64Array;
  /** When the datagram in each slot was sent. */
  sentAt: Float64Array;
  /** 1 once the datagram in each slot came back intact. */
  back: Uint8Array;
  /** Sequence number of the next datagram. */
  nextSeq = 0;
  /** Highest sequence number received so far (-1: none). */
  highest = -1;
  /** Round-trip time of the datagram received last (NaN: none yet). */
  lastTransit = NaN;
  /** RFC 3550 jitter so far, ms. */
  jitter = 0;

  constructor(
    index: number,
    conn: Deno.DatagramConn,
    size: number,
    ring: number,
  ) {
    this.index = index;
    this.conn = conn;
    this.out = new Uint8Array(size);
    this.outView = new DataView(this.out.buffer);
    const recv = new ArrayBuffer(Math.ceil((size + 1) / 4) * 4);
    this.recv = new Uint8Array(recv, 0, size + 1);
    this.recvView = new DataView(recv);
    this.recv32 = new Int32Array(recv);
    const payload = size - UDP_HEADER;
    const pattern = new ArrayBuffer(Math.ceil((payload + SLOTS * 8) / 4) * 4);
    this.pattern = new Uint8Array(pattern);
    this.pattern32 = new Int32Array(pattern);
    // Seeded by the flow: reproducible, no two flows alike.
    fillXorshift32(
      this.pattern32,
      Math.imul(index + 1, 0x9e3779b9) ^ 0x5bd1e995,
    );
    this.seqs = new Float64Array(ring).fill(-1);
    this.sentAt = new Float64Array(ring);
    this.back = new Uint8Array(ring);
  }

  /**
   * Doubles the ring, keeping every entry: a slot is never reused while its
   * datagram may still come back within twice the loss timeout.
   */
  grow(): void {
    const old = { seqs: this.seqs, sentAt: this.sentAt, back: this.back };
    const size = old.seqs.length * 2;
    this.seqs = new Float64Array(size).fill(-1);
    this.sentAt = new Float64Array(size);
    this.back = new Uint8Array(size);
    for (let i = 0; i < old.seqs.length; i++) {
      const seq = old.seqs[i]!;
      if (seq < 0) continue;
      const slot = seq % size;
      this.seqs[slot] = seq;
      this.sentAt[slot] = old.sentAt[i]!;
      this.back[slot] = old.back[i]!;
    }
  }
}

/**
 * Books the next datagram of `flow` in its ring and writes its header and
 * payload into `flow.out`: nothing is allocated (a copy of the payload is
 * the price of one reusable datagram). Returns its sequence number.
 */
function prepare(run: UdpRun, flow: UdpFlow, now: number): number {
  const seq = flow.nextSeq++;
  let slot = seq % flow.seqs.length;
  const held = flow.seqs[slot]!;
  if (
    held >= 0 && now - flow.sentAt[slot]! < 2 * run.lossTimeout &&
    flow.seqs.length < MAX_RING
  ) {
    flow.grow();
    slot = seq % flow.seqs.length;
  }
  flow.seqs[slot] = seq;
  flow.sentAt[slot] = now;
  flow.back[slot] = 0;
  const v = flow.outView;
  v.setUint32(0, flow.index);
  v.setUint32(4, Math.floor(seq / 2 ** 32));
  v.setUint32(8, seq >>> 0);
  v.setFloat64(12, now);
  v.setUint32(20, headerCheck(v));
  const at = (seq % SLOTS) * 8;
  flow.out.set(
    flow.pattern.subarray(at, at + run.size - UDP_HEADER),
    UDP_HEADER,
  );
  return seq;
}

/** Undoes {@linkcode prepare} for a datagram that could not be sent. */
function unbook(flow: UdpFlow, seq: number): void {
  const slot = seq % flow.seqs.length;
  if (flow.seqs[slot] === seq) flow.seqs[slot] = -1;
}

/** Whether the payload of the `n`-byte datagram in `flow.recv` is seq's. */
function payloadIntact(flow: UdpFlow, seq: number, n: number): boolean {
  // Header and pattern offsets are multiples of 4: compare by words.
  const payload = n - UDP_HEADER;
  const words = payload >> 2;
  const got = flow.recv32;
  const want = flow.pattern32;
  const w0 = (seq % SLOTS) * 2;
  for (let i = 0; i < words; i++) {
    if (got[UDP_HEADER / 4 + i] !== want[w0 + i]) return false;
  }
  const b0 = (seq % SLOTS) * 8;
  for (let i = words * 4; i < payload; i++) {
    if (flow.recv[UDP_HEADER + i] !== flow.pattern[b0 + i]) return false;
  }
  return true;
}

/** Sorts one datagram that came back to `flow` into the counters. */
function check(run: UdpRun, flow: UdpFlow, n: number, now: number): void {
  const t = run.tally;
  const v = flow.recvView;
  if (
    n !== run.size || v.getUint32(20) !== headerCheck(v) ||
    v.getUint32(0) !== flow.index
  ) {
    t.corrupted++;
    t.note(
      n !== run.size
        ? `a datagram came back with ${n > run.size ? "more than " : ""}${
          Math.min(n, run.size)
        } bytes, not ${run.size}`
        : v.getUint32(20) !== headerCheck(v)
        ? "a datagram came back with its header changed"
        : "a datagram came back to another flow than the one that sent it",
    );
    return;
  }
  const seq = v.getUint32(4) * 2 ** 32 + v.getUint32(8);
  if (seq >= flow.nextSeq) {
    t.corrupted++;
    t.note("a datagram came back that was never sent");
    return;
  }
  if (!payloadIntact(flow, seq, n)) {
    t.corrupted++;
    t.note("a datagram came back with its payload changed");
    return;
  }
  const slot = seq % flow.seqs.length;
  if (flow.seqs[slot] !== seq) {
    // No longer tracked: sent over twice the loss timeout ago.
    t.late++;
    return;
  }
  if (flow.back[slot] === 1) {
    t.duplicated++;
    return;
  }
  flow.back[slot] = 1;
  t.outstanding--;
  const rtt = now - flow.sentAt[slot]!;
  if (rtt > run.lossTimeout) {
    t.late++;
  } else {
    t.received++;
    t.bytesReceived += n;
    run.histogram.record(rtt);
    // RFC 3550 6.4.1, in arrival order: J += (|D| - J) / 16.
    if (!Number.isNaN(flow.lastTransit)) {
      flow.jitter += (Math.abs(rtt - flow.lastTransit) - flow.jitter) / 16;
    }
    flow.lastTransit = rtt;
    if (seq < flow.highest) t.reordered++;
    else flow.highest = seq;
  }
  if (t.outstanding === 0 && run.stop.aborted) run.onSettled();
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
    let now = performance.now();
    if (run.interval > 0) {
      // Timers fire at millisecond granularity; within 0.2 ms, send now.
      if (due > now + 0.2) {
        await sleep(due - now, run.stop);
        continue;
      }
      due += run.interval;
    }
    now = performance.now();
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

function validate(name: string, value: number, min: number, max: number) {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Cannot use ${name} "${value}": expected a whole number from ${min} to ${max}`,
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
  const run: UdpRun = {
    tally,
    histogram: new LatencyHistogram(),
    addr: { transport: "udp", hostname: address, port: options.port },
    size,
    flows,
    interval: rate > 0 ? 1000 / rate : 0,
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
    const lost = tally.sent - tally.received;
    // To 0.001%: one datagram in 100,000.
    const lostPercent = tally.sent > 0 ? round(lost / tally.sent * 100, 3) : 0;
    const jittered = sockets.filter((f) => !Number.isNaN(f.lastTransit));
    const jitterMs = jittered.length > 0
      ? round(
        jittered.reduce((sum, f) => sum + f.jitter, 0) / jittered.length,
        3,
      )
      : 0;
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
    const report: UdpLoadReport = {
      target,
      transport: "udp",
      flows,
      size,
      rate,
      flood: rate === 0,
      count,
      lossTimeout,
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
      latency: summarize(latency, options.percentiles),
      jitterMs,
      packets: tally.sent,
      "lost_packets": lost,
      "lost_percent": lostPercent,
      "jitter_ms": jitterMs,
      "out_of_order": tally.reordered,
      maxLoss: maxLoss ?? null,
      lossExceeded,
      cpu: cpuReport(cpu, seconds),
      intervals,
      errors: [...tally.errors],
      interrupted,
      ok: tally.received > 0 && tally.corrupted === 0 && !lossExceeded,
    };
    return report;
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
