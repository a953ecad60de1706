/**
 * A latency histogram in the style of HdrHistogram: log-spaced buckets, each
 * split into linear sub-buckets, so any percentile comes out within 0.8% of
 * the true sample without keeping an array of every sample. Recording is a
 * few arithmetic operations and one array increment: no allocation, which
 * matters on the load generator's per-message path.
 *
 * Private to this package: `tools/load.ts` re-exports it.
 *
 * @module
 */

/** Sub-bucket bits: 256 sub-buckets in the first octave, 128 in each after. */
const SUB_BITS = 8;
const SUB_COUNT = 1 << SUB_BITS;
const HALF_COUNT = SUB_COUNT >> 1;
/** Largest exponent tracked: 2^43 ns is about 2.4 hours. */
const MAX_BITS = 43;
const BUCKETS = SUB_COUNT + (MAX_BITS - SUB_BITS + 1) * HALF_COUNT;
const MAX_VALUE = 2 ** MAX_BITS - 1;
const TWO_32 = 2 ** 32;

/** Index of the highest set bit of a whole number below 2^53. */
function highestBit(value: number): number {
  if (value < TWO_32) return 31 - Math.clz32(value);
  return 63 - Math.clz32(Math.floor(value / TWO_32));
}

/** Bucket index of a whole number of nanoseconds. */
function indexOf(ns: number): number {
  if (ns < SUB_COUNT) return ns;
  const shift = highestBit(ns) - SUB_BITS + 1;
  return SUB_COUNT + (shift - 1) * HALF_COUNT +
    (Math.floor(ns / 2 ** shift) - HALF_COUNT);
}

/** Highest value (ns) that falls into bucket `index`. */
function highestIn(index: number): number {
  if (index < SUB_COUNT) return index;
  const shift = Math.floor((index - SUB_COUNT) / HALF_COUNT) + 1;
  const sub = (index - SUB_COUNT) % HALF_COUNT + HALF_COUNT;
  return (sub + 1) * 2 ** shift - 1;
}

/**
 * Latencies in milliseconds, kept as counts in log-spaced buckets with a
 * resolution of 1 ns below 256 ns and at most 1/128 of the value above
 * (percentiles report a bucket's highest value, capped at the true maximum).
 *
 * @example
 * ```ts
 * import { LatencyHistogram } from "./_histogram.ts";
 * const h = new LatencyHistogram();
 * for (let ms = 1; ms <= 100; ms++) h.record(ms);
 * console.log(h.percentile(50)); // about 50
 * ```
 */
export class LatencyHistogram {
  #counts = new Float64Array(BUCKETS);
  #count = 0;
  #sumNs = 0;
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
    const rank = Math.max(1, Math.ceil((p / 100) * this.#count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
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
    for (let i = 0; i < BUCKETS; i++) this.#counts[i]! += other.#counts[i]!;
    this.#count += other.#count;
    this.#sumNs += other.#sumNs;
    if (other.#minNs < this.#minNs) this.#minNs = other.#minNs;
    if (other.#maxNs > this.#maxNs) this.#maxNs = other.#maxNs;
  }
}
