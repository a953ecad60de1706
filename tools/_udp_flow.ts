/**
 * Flows and the tally of the UDP load generator: one flow's socket,
 * buffers and ring of what it sent, how its next datagram is booked, and
 * how each datagram that comes back is sorted into received, duplicated,
 * reordered, corrupted or late, with its round trip and RFC 3550 jitter.
 * Private to `tools/load.ts` (`--udp`).
 *
 * @module
 */

import type { LatencyHistogram } from "./_histogram.ts";
import type { Pacer } from "./_load_pacer.ts";
import { ErrorSamples } from "./_report.ts";
import {
  type FlowPattern,
  flowPattern,
  headerCheck,
  payloadIntact,
  sequenceOf,
  writeDatagram,
} from "./_udp_datagram.ts";

/** Most datagrams one flow tracks at once (17 bytes each). */
export const MAX_RING = 1 << 22;

/** Counters of a run (one thread: no races). */
export class UdpTally extends ErrorSamples {
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
export interface UdpRun {
  readonly tally: UdpTally;
  /** Round trips of the current interval; replaced as each one ends. */
  histogram: LatencyHistogram;
  /** Where datagrams go, with the address the replies must come from. */
  readonly addr: Deno.NetAddr;
  readonly size: number;
  readonly flows: number;
  /** Milliseconds between datagrams of one flow; 0 floods. */
  readonly interval: number;
  /** The one timer of every flow's schedule (TCP's: `_load_pacer.ts`). */
  readonly pacer: Pacer;
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

/**
 * One flow: its socket, its pattern, the datagram it reuses for sending,
 * its receive buffer, and a ring of what it has sent, by sequence number.
 */
export class UdpFlow {
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
  /** The flow's random bytes, that every payload is cut from. */
  readonly pattern: FlowPattern;
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
    this.pattern = flowPattern(index, size);
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
 * Books the next datagram of `flow` in its ring and writes it into
 * `flow.out` without allocating. Returns its sequence number.
 */
export function prepare(run: UdpRun, flow: UdpFlow, now: number): number {
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
  writeDatagram(flow.out, flow.outView, flow.pattern, flow.index, seq, now);
  return seq;
}

/** Undoes {@linkcode prepare} for a datagram that could not be sent. */
export function unbook(flow: UdpFlow, seq: number): void {
  const slot = seq % flow.seqs.length;
  if (flow.seqs[slot] === seq) flow.seqs[slot] = -1;
}

/** Sorts one datagram that came back to `flow` into the counters. */
export function check(
  run: UdpRun,
  flow: UdpFlow,
  n: number,
  now: number,
): void {
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
  const seq = sequenceOf(v);
  if (seq >= flow.nextSeq) {
    t.corrupted++;
    t.note("a datagram came back that was never sent");
    return;
  }
  if (!payloadIntact(flow.recv, flow.recv32, flow.pattern, seq, n)) {
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

/**
 * The run's jitter, ms: the mean of its flows' RFC 3550 jitters, as iperf3
 * sums its streams, over the flows that received at least one datagram.
 */
export function meanJitter(flows: readonly UdpFlow[]): number {
  const jittered = flows.filter((f) => !Number.isNaN(f.lastTransit));
  return jittered.length > 0
    ? jittered.reduce((sum, f) => sum + f.jitter, 0) / jittered.length
    : 0;
}
