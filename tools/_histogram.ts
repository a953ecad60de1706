/**
 * The load generator's latency histogram: an HdrHistogram of nanoseconds
 * with 3 significant digits (lowest discernible value 1, highest 2^43 - 1:
 * about 2.4 hours), its counts in HdrHistogram's own index layout, so that
 * {@linkcode LatencyHistogram.encode} writes HdrHistogram's standard form
 * (`_hdr_codec.ts`) and any HdrHistogram implementation (Java, Go, Rust,
 * Python, C, JS) reads and merges a report's histogram. Recording is a few
 * arithmetic operations and one array increment: no allocation, which
 * matters on the load generator's per-message path (npm's hdr-histogram-js
 * took 2 to 4% off the load generator's ceiling: docs/performance.md).
 *
 * Private to this package: `tools/load.ts` re-exports it.
 *
 * @module
 */

import { decodeHdr, encodeHdr, HdrLayout } from "./_hdr_codec.ts";

/** Sub-bucket bits: 2048 sub-buckets in the first bucket, 1024 in each after. */
const SUB_BITS = 11;
const SUB_COUNT = 1 << SUB_BITS;
const HALF_COUNT = SUB_COUNT >> 1;
/** Largest exponent tracked: 2^43 ns is about 2.4 hours. */
const MAX_BITS = 43;
const BUCKETS = SUB_COUNT + (MAX_BITS - SUB_BITS) * HALF_COUNT;
const MAX_VALUE = 2 ** MAX_BITS - 1;
const TWO_32 = 2 ** 32;
/** HdrHistogram's (1, 2^43 - 1, 3): the layout of every histogram here. */
const LAYOUT = new HdrLayout(1, MAX_VALUE, 3);

/** Index of the highest set bit of a whole number below 2^53. */
function highestBit(value: number): number {
  if (value < TWO_32) return 31 - Math.clz32(value);
  return 63 - Math.clz32(Math.floor(value / TWO_32));
}

/** Bucket index of a whole number of nanoseconds: HdrHistogram's index. */
function indexOf(ns: number): number {
  if (ns < SUB_COUNT) return ns;
  const shift = highestBit(ns) - SUB_BITS + 1;
  return SUB_COUNT + (shift - 1) * HALF_COUNT +
    (Math.floor(ns / 2 ** shift) - HALF_COUNT);
}

/** Lowest value (ns) that falls into bucket `index`. */
function lowestIn(index: number): number {
  if (index < SUB_COUNT) return index;
  const shift = Math.floor((index - SUB_COUNT) / HALF_COUNT) + 1;
  const sub = (index - SUB_COUNT) % HALF_COUNT + HALF_COUNT;
  return sub * 2 ** shift;
}

/** Highest value (ns) that falls into bucket `index`. */
function highestIn(index: number): number {
  if (index < SUB_COUNT) return index;
  const shift = Math.floor((index - SUB_COUNT) / HALF_COUNT) + 1;
  const sub = (index - SUB_COUNT) % HALF_COUNT + HALF_COUNT;
  return (sub + 1) * 2 ** shift - 1;
}

/**
 * Latencies in milliseconds, kept as counts in log-spaced buckets of
 * nanoseconds with a resolution of 1 ns below 2,048 ns and at most 1/1,024
 * of the value above (percentiles report a bucket's highest value, capped at
 * the true maximum). {@linkcode LatencyHistogram.encode} gives HdrHistogram's
 * standard form (V2 compressed, base64), {@linkcode LatencyHistogram.decode}
 * reads it back, from this or any other implementation.
 *
 * @example
 * ```ts
 * import { LatencyHistogram } from "./_histogram.ts";
 * const h = new LatencyHistogram();
 * for (let ms = 1; ms <= 100; ms++) h.record(ms);
 * console.log(h.percentile(50)); // about 50
 * const copy = LatencyHistogram.decode(h.encode());
 * console.log(copy.count); // 100
 * ```
 */
export class LatencyHistogram {
  /** Samples per bucket, in HdrHistogram's index layout. */
  #counts = new Float64Array(BUCKETS);
  /** Samples recorded. */
  #count = 0;
  /** Their sum, ns. */
  #sumNs = 0;
  /** The smallest and largest sample, ns. */
  #minNs = Infinity;
  #maxNs = 0;

  /** Adds one sample of `ms` milliseconds (negative counts as 0). */
  record(ms: number): void {
    let ns = Math.round(ms * 1e6);
    if (!(ns > 0)) ns = 0;
    if (ns > MAX_VALUE) ns = MAX_VALUE;
    this.#counts[indexOf(ns)]!++;
    this.#count++;
    this.#sumNs += ns;
    if (ns < this.#minNs) this.#minNs = ns;
    if (ns > this.#maxNs) this.#maxNs = ns;
  }

  /** Number of samples recorded. */
  get count(): number {
    return this.#count;
  }

  /** Smallest sample in ms, or 0 when empty. */
  get min(): number {
    return this.#count === 0 ? 0 : this.#minNs / 1e6;
  }

  /** Largest sample in ms, or 0 when empty. */
  get max(): number {
    return this.#maxNs / 1e6;
  }

  /** Mean of the samples in ms, or 0 when empty. */
  get mean(): number {
    return this.#count === 0 ? 0 : this.#sumNs / this.#count / 1e6;
  }

  /**
   * The value in ms at or below which `p` percent of the samples fall (the
   * sample of rank ceil(p/100 * count)), to the histogram's resolution.
   * Returns 0 when empty.
   *
   * @throws {RangeError} Unless `p` is from 0 to 100.
   */
  percentile(p: number): number {
    if (!(p >= 0 && p <= 100)) {
      throw new RangeError(
        `Cannot take percentile "${p}": expected 0 to 100`,
      );
    }
    if (this.#count === 0) return 0;
    if (p === 0) return this.#minNs / 1e6;
    // As HdrHistogram: one ulp off before rounding up, so that 99.9% of
    // 1,000 is rank 999, not 1,000 (0.999 * 1000 is 999.0000000000001).
    const exact = (p / 100) * this.#count;
    const rank = Math.max(1, Math.ceil(exact * (1 - Number.EPSILON)));
    let seen = 0;
    const last = indexOf(this.#maxNs);
    for (let i = 0; i <= last; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) {
        return Math.max(
          this.#minNs,
          Math.min(highestIn(i), this.#maxNs),
        ) / 1e6;
      }
    }
    return this.#maxNs / 1e6;
  }

  /** Adds every sample of `other` to this histogram. */
  merge(other: LatencyHistogram): void {
    if (other.#count === 0) return;
    const last = indexOf(other.#maxNs);
    for (let i = 0; i <= last; i++) this.#counts[i]! += other.#counts[i]!;
    this.#count += other.#count;
    this.#sumNs += other.#sumNs;
    if (other.#minNs < this.#minNs) this.#minNs = other.#minNs;
    if (other.#maxNs > this.#maxNs) this.#maxNs = other.#maxNs;
  }

  /** Forgets every sample. */
  reset(): void {
    this.#counts.fill(0);
    this.#count = 0;
    this.#sumNs = 0;
    this.#minNs = Infinity;
    this.#maxNs = 0;
  }

  /**
   * HdrHistogram's standard form of this histogram: the V2 encoding,
   * deflate-compressed, in base64 (`HISTF...`), values in nanoseconds,
   * (1, 2^43 - 1, 3 digits); what Java's
   * `Histogram.decodeFromCompressedByteBuffer`, Go's `Decode`, Rust's
   * `Deserializer`, Python's `HdrHistogram.decode` and hdr-histogram-js's
   * `decodeFromCompressedBase64` read.
   */
  encode(): string {
    const length = this.#count === 0 ? 0 : indexOf(this.#maxNs) + 1;
    return encodeHdr(LAYOUT, this.#counts, length);
  }

  /**
   * Reads HdrHistogram's standard form (V2, compressed or not, base64;
   * values taken as nanoseconds) as written by
   * {@linkcode LatencyHistogram.encode} or any HdrHistogram implementation.
   * A histogram of another layout is merged bucket by bucket, as
   * HdrHistogram's `add` does. The exact sum, minimum and maximum are not in
   * the encoding: they come back to the histogram's resolution (the mean
   * from each bucket's middle, the maximum its bucket's top).
   *
   * @throws {TypeError} When `text` is not such a histogram, or holds values
   * beyond 2^43 ns.
   */
  static decode(text: string): LatencyHistogram {
    const brief = text.length > 24 ? `${text.slice(0, 24)}...` : text;
    let read;
    try {
      read = decodeHdr(text);
    } catch (error) {
      throw new TypeError(
        `Cannot decode histogram "${brief}": ${
          (error as Error).message
        }; expected HdrHistogram's V2 base64 form (HISTF...)`,
      );
    }
    const out = new LatencyHistogram();
    const same = read.layout.digits === LAYOUT.digits &&
      read.layout.unitMagnitude === LAYOUT.unitMagnitude;
    read.counts.forEach((count, i) => {
      if (count === 0) return;
      const ns = same ? lowestIn(i) : read.layout.valueAt(i);
      if (ns > MAX_VALUE) {
        throw new TypeError(
          `Cannot decode histogram "${brief}": it holds values beyond 2^43 ns`,
        );
      }
      const index = same ? i : indexOf(ns);
      out.#counts[index]! += count;
      out.#count += count;
      // HdrHistogram's mean takes each bucket's middle value.
      out.#sumNs += count * (lowestIn(index) + highestIn(index) + 1) / 2;
      out.#minNs = Math.min(out.#minNs, lowestIn(index));
      out.#maxNs = Math.max(out.#maxNs, highestIn(index));
    });
    return out;
  }
}
