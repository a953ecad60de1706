/**
 * The UDP load generator's datagram: its 24-byte header (flow, sequence
 * number, send time, a check of those) and its payload, cut from the
 * flow's own random pattern at an offset set by the sequence number, and
 * how a datagram that came back is checked against them. Private to
 * `tools/load.ts` (`--udp`).
 *
 * @module
 */

import { fillXorshift32 } from "../_random.ts";

/** Bytes of the header every datagram starts with. */
export const UDP_HEADER = 24;

/**
 * Largest datagram: 65,535 bytes of IPv4 packet less its 20-byte header and
 * UDP's 8 (RFC 768); IPv6 could carry 20 more, but no IPv4 path can.
 */
export const MAX_DATAGRAM = 65_507;

/** Distinct payload offsets a flow cycles through, 8 bytes apart. */
export const SLOTS = 64;

/** The 32-bit check of a header's first 20 bytes (FNV-1a over its words). */
export function headerCheck(view: DataView): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < 20; i += 4) {
    h = Math.imul(h ^ view.getUint32(i), 0x01000193);
  }
  return h >>> 0;
}

/** A flow's random bytes, the same memory as 32-bit words, and its payloads. */
export interface FlowPattern {
  /** Datagram n's payload starts at (n % SLOTS) * 8. */
  readonly bytes: Uint8Array;
  readonly words: Int32Array;
  /** Slot i's payload, a view of `bytes` made once. */
  readonly payloads: readonly Uint8Array[];
}

/**
 * The pattern of flow `index` for datagrams of `size` bytes, seeded by the
 * flow: reproducible, no two flows alike.
 */
export function flowPattern(index: number, size: number): FlowPattern {
  const payload = size - UDP_HEADER;
  const pattern = new ArrayBuffer(Math.ceil((payload + SLOTS * 8) / 4) * 4);
  const words = new Int32Array(pattern);
  fillXorshift32(words, Math.imul(index + 1, 0x9e3779b9) ^ 0x5bd1e995);
  const payloads = Array.from(
    { length: SLOTS },
    (_, i) => new Uint8Array(pattern, i * 8, payload),
  );
  return { bytes: new Uint8Array(pattern), words, payloads };
}

/**
 * Writes the header and payload of datagram `seq` of flow `index`, sent at
 * `now`, into `out` (`view` over the same memory): nothing is allocated (a
 * copy of the payload is the price of one reusable datagram).
 */
export function writeDatagram(
  out: Uint8Array,
  view: DataView,
  pattern: FlowPattern,
  index: number,
  seq: number,
  now: number,
): void {
  view.setUint32(0, index);
  view.setUint32(4, Math.floor(seq / 2 ** 32));
  view.setUint32(8, seq >>> 0);
  view.setFloat64(12, now);
  view.setUint32(20, headerCheck(view));
  out.set(pattern.payloads[seq % SLOTS]!, UDP_HEADER);
}

/** The sequence number in a datagram's header. */
export function sequenceOf(view: DataView): number {
  return view.getUint32(4) * 2 ** 32 + view.getUint32(8);
}

/**
 * Whether the payload of the `n`-byte datagram in `got` (`got32`: the same
 * memory as words) is datagram `seq`'s of `pattern`.
 */
export function payloadIntact(
  got: Uint8Array,
  got32: Int32Array,
  pattern: FlowPattern,
  seq: number,
  n: number,
): boolean {
  // Header and pattern offsets are multiples of 4: compare by words.
  const payload = n - UDP_HEADER;
  const words = payload >> 2;
  const want = pattern.words;
  const w0 = (seq % SLOTS) * 2;
  for (let i = 0; i < words; i++) {
    if (got32[UDP_HEADER / 4 + i] !== want[w0 + i]) return false;
  }
  const b0 = (seq % SLOTS) * 8;
  for (let i = words * 4; i < payload; i++) {
    if (got[UDP_HEADER + i] !== pattern.bytes[b0 + i]) return false;
  }
  return true;
}
