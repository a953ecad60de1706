/**
 * HdrHistogram's standard encoding, V2 compressed, written and read here: a
 * 40-byte big-endian header (cookie 0x1c849313, payload length, normalizing
 * index offset, significant digits, lowest discernible and highest trackable
 * value, integer-to-double ratio), the counts by bucket index as ZigZag
 * LEB128 varints with a run of zeros as one negative number, the whole
 * zlib-deflated behind cookie 0x1c849314 and its length, in base64
 * (`HISTF...`). Java's `encodeIntoCompressedByteBuffer` writes this, and
 * every HdrHistogram (Java, C, Go, Rust, Python, JS) reads it.
 *
 * Private to this package: {@linkcode LatencyHistogram} encodes and decodes
 * with it.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { deflateSync, inflateSync } from "node:zlib";

/** V2 encoding cookie (0x1c849303 with word size 9, LEB128: 0x10). */
const V2_COOKIE = 0x1c849313;
/** V2 compressed encoding cookie. */
const V2_COMPRESSED_COOKIE = 0x1c849314;
/** Bytes of the V2 header before the counts. */
const HEADER = 40;

/**
 * An HdrHistogram's layout, from its header: which value range each counts
 * index stands for.
 */
export class HdrLayout {
  /** Smallest value told apart from 0 (a power of 2 in effect). */
  readonly lowest: number;
  /** Largest value it was made to hold. */
  readonly highest: number;
  /** Significant decimal digits kept (0 to 5). */
  readonly digits: number;
  /** log2 of half the sub-buckets of a bucket. */
  readonly halfMagnitude: number;
  /** log2 of the lowest discernible value, rounded down. */
  readonly unitMagnitude: number;

  /**
   * The layout of an HdrHistogram made with these arguments.
   *
   * @throws {RangeError} On arguments no HdrHistogram takes.
   */
  constructor(lowest: number, highest: number, digits: number) {
    if (
      !(Number.isSafeInteger(lowest) && lowest >= 1) ||
      !(Number.isInteger(digits) && digits >= 0 && digits <= 5) ||
      !(highest >= 2 * lowest)
    ) {
      throw new RangeError(
        `Cannot use an HdrHistogram of lowest "${lowest}", highest "${highest}", digits "${digits}"`,
      );
    }
    this.lowest = lowest;
    this.highest = highest;
    this.digits = digits;
    const single = 2 * 10 ** digits;
    const subMagnitude = Math.max(1, Math.ceil(Math.log2(single)));
    this.halfMagnitude = subMagnitude - 1;
    this.unitMagnitude = Math.floor(Math.log2(lowest));
  }

  /** The lowest value counts index `index` stands for. */
  valueAt(index: number): number {
    let bucket = Math.floor(index / 2 ** this.halfMagnitude) - 1;
    let sub = (index % 2 ** this.halfMagnitude) + 2 ** this.halfMagnitude;
    if (bucket < 0) {
      sub -= 2 ** this.halfMagnitude;
      bucket = 0;
    }
    return sub * 2 ** (bucket + this.unitMagnitude);
  }
}

/** An HdrHistogram as its encoding holds it: layout and counts by index. */
export interface HdrCounts {
  /** Which value each index stands for. */
  layout: HdrLayout;
  /** Count at each index, up to the last index with a count. */
  counts: number[];
}

/** Appends `n` (a whole number, |n| < 2^53) as a ZigZag LEB128 varint. */
function putVarint(out: number[], n: number): void {
  // ZigZag: 0, -1, 1, -2 ... as 0, 1, 2, 3 ...; numbers past 2^31 do not fit
  // JS's 32-bit bit operators, so this is arithmetic.
  let z = n >= 0 ? 2 * n : -2 * n - 1;
  for (let i = 0; i < 8 && z >= 0x80; i++) {
    out.push((z % 0x80) | 0x80);
    z = Math.floor(z / 0x80);
  }
  // After 8 bytes of 7 bits, a ninth takes all 8 bits (LEB128-64b9B).
  out.push(z);
}

/**
 * `counts` (by index, in `layout`) in the V2 compressed encoding, in
 * base64. Only indexes up to `length` are written (the last with a count).
 */
export function encodeHdr(
  layout: HdrLayout,
  counts: ArrayLike<number>,
  length: number,
): string {
  const payload: number[] = [];
  for (let i = 0; i < length;) {
    const count = counts[i++]!;
    if (count !== 0) {
      putVarint(payload, count);
      continue;
    }
    let zeros = 1;
    while (i < length && counts[i] === 0) zeros++, i++;
    putVarint(payload, zeros > 1 ? -zeros : 0);
  }
  const raw = new Uint8Array(HEADER + payload.length);
  const v = new DataView(raw.buffer);
  v.setInt32(0, V2_COOKIE);
  v.setInt32(4, payload.length);
  v.setInt32(8, 0); // normalizing index offset: none
  v.setInt32(12, layout.digits);
  v.setBigInt64(16, BigInt(layout.lowest));
  v.setBigInt64(24, BigInt(Math.min(layout.highest, Number.MAX_SAFE_INTEGER)));
  v.setFloat64(32, 1); // integer to double conversion ratio
  raw.set(payload, HEADER);
  const packed = deflateSync(raw);
  const out = new Uint8Array(8 + packed.length);
  const o = new DataView(out.buffer);
  o.setInt32(0, V2_COMPRESSED_COOKIE);
  o.setInt32(4, packed.length);
  out.set(packed, 8);
  return Buffer.from(out).toString("base64");
}

/**
 * Reads the V2 encoding, compressed (`HISTF...`) or not, from base64.
 *
 * @throws {TypeError} Saying what is wrong, when it is not one.
 */
export function decodeHdr(text: string): HdrCounts {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed) || trimmed.length < 12) {
    throw new TypeError("not base64");
  }
  let bytes = new Uint8Array(Buffer.from(trimmed, "base64"));
  let v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const cookie = v.getInt32(0);
  if (cookie === V2_COMPRESSED_COOKIE) {
    const length = v.getInt32(4);
    if (length < 0 || 8 + length > bytes.length) {
      throw new TypeError("its compressed length runs past its end");
    }
    try {
      bytes = new Uint8Array(inflateSync(bytes.subarray(8, 8 + length)));
    } catch {
      throw new TypeError("its compressed data does not inflate");
    }
    v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  } else if (cookie !== V2_COOKIE) {
    throw new TypeError(
      `its cookie 0x${(cookie >>> 0).toString(16)} is not HdrHistogram's V2`,
    );
  }
  if (bytes.length < HEADER || v.getInt32(0) !== V2_COOKIE) {
    throw new TypeError("its header is not HdrHistogram's V2");
  }
  const payloadLength = v.getInt32(4);
  if (payloadLength < 0) throw new TypeError("its payload length is negative");
  // Some writers (HdrHistogram_c of 2015) put the whole length here, header
  // included: the counts end at the data's end, as hdr-histogram-js reads.
  const end = Math.min(HEADER + payloadLength, bytes.length);
  let layout: HdrLayout;
  try {
    layout = new HdrLayout(
      Number(v.getBigInt64(16)),
      Number(v.getBigInt64(24)),
      v.getInt32(12),
    );
  } catch (error) {
    throw new TypeError((error as Error).message);
  }
  const counts: number[] = [];
  for (let at = HEADER; at < end;) {
    let z = 0;
    let scale = 1;
    for (let i = 0;; i++) {
      if (at >= end) throw new TypeError("a count runs past its end");
      const b = bytes[at++]!;
      z += (i === 8 ? b : b & 0x7f) * scale;
      scale *= 0x80;
      if (i === 8 || b < 0x80) break;
    }
    const n = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    if (n < 0) {
      if (counts.length - n > 1 << 24) throw new TypeError("too many zeros");
      for (let k = 0; k < -n; k++) counts.push(0);
    } else counts.push(n);
  }
  return { layout, counts };
}
