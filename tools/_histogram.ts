/**
 * The load generator's latency histogram: an HdrHistogram (the maintained
 * `hdr-histogram-js`, values in nanoseconds, 3 significant digits), so a
 * report's histogram can be read and merged by any HdrHistogram
 * implementation (Java, Go, Rust, Python, C, JS) and several machines'
 * runs merge exactly. Recording is a few arithmetic operations and one
 * array increment with no allocation (the counts array grows only while
 * the range first widens), which matters on the per-message path.
 *
 * Private to this package: `tools/load.ts` re-exports it.
 *
 * @module
 */

import {
  build,
  decodeFromCompressedBase64,
  encodeIntoCompressedBase64,
  type Histogram,
} from "npm:hdr-histogram-js@3.0.1";

/**
 * Largest value recorded, in ns (about 2.4 hours): a longer sample is
 * recorded as this, so a clock jump cannot grow the counts without bound.
 */
const MAX_NS = 2 ** 43 - 1;
/** Significant digits kept: every value within 0.1% (HdrHistogram's usual). */
const DIGITS = 3;

/** A fresh HdrHistogram of 64-bit counts that widens its range as needed. */
function fresh(): Histogram {
  // 64-bit counts (a Float64Array): 32-bit ones overflow after 2^31
  // samples in one bucket, hours of a fast run.
  return build({
    bitBucketSize: 64,
    autoResize: true,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 2,
    numberOfSignificantValueDigits: DIGITS,
    useWebAssembly: false,
  });
}

/**
 * Latencies in milliseconds, kept as an HdrHistogram of nanoseconds: a
 * resolution of 1 ns below 2,048 ns and at most 1/1,024 of the value above
 * (percentiles report a bucket's highest value, capped at the true
 * maximum). {@linkcode LatencyHistogram.encode} gives HdrHistogram's
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
  /** The counts, in ns. */
  #h: Histogram = fresh();
  /** Sum of the samples in ns, exact for those recorded here. */
  #sumNs = 0;
  /** Smallest and largest sample in ns, exact for those recorded here. */
  #minNs = Infinity;
  #maxNs = 0;

  /** Adds one sample of `ms` milliseconds (negative counts as 0). */
  record(ms: number): void {
    let ns = Math.round(ms * 1e6);
    if (!(ns > 0)) ns = 0;
    if (ns > MAX_NS) ns = MAX_NS;
    this.#h.recordValue(ns);
    this.#sumNs += ns;
    if (ns < this.#minNs) this.#minNs = ns;
    if (ns > this.#maxNs) this.#maxNs = ns;
  }

  /** Number of samples recorded. */
  get count(): number {
    return this.#h.totalCount;
  }

  /** Smallest sample in ms, or 0 when empty. */
  get min(): number {
    return this.count === 0 ? 0 : this.#minNs / 1e6;
  }

  /** Largest sample in ms, or 0 when empty. */
  get max(): number {
    return this.#maxNs / 1e6;
  }

  /** Mean of the samples in ms, or 0 when empty. */
  get mean(): number {
    return this.count === 0 ? 0 : this.#sumNs / this.count / 1e6;
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
    if (this.count === 0) return 0;
    if (p === 0) return this.#minNs / 1e6;
    const ns = this.#h.getValueAtPercentile(p);
    return Math.max(this.#minNs, Math.min(ns, this.#maxNs)) / 1e6;
  }

  /** Adds every sample of `other` to this histogram. */
  merge(other: LatencyHistogram): void {
    if (other.count === 0) return;
    this.#h.add(other.#h);
    this.#sumNs += other.#sumNs;
    if (other.#minNs < this.#minNs) this.#minNs = other.#minNs;
    if (other.#maxNs > this.#maxNs) this.#maxNs = other.#maxNs;
  }

  /** Forgets every sample. */
  reset(): void {
    this.#h.reset();
    this.#sumNs = 0;
    this.#minNs = Infinity;
    this.#maxNs = 0;
  }

  /**
   * HdrHistogram's standard form of this histogram: the V2 encoding,
   * deflate-compressed, in base64 (`HISTF...`), values in nanoseconds; what
   * Java's `Histogram.decodeFromCompressedByteBuffer`, Go's `Decode`, Rust's
   * `Deserializer`, Python's `HdrHistogram.decode` and hdr-histogram-js's
   * `decodeFromCompressedBase64` read.
   */
  encode(): string {
    return encodeIntoCompressedBase64(this.#h);
  }

  /**
   * Reads HdrHistogram's standard form (V2 compressed, base64; values in
   * nanoseconds) as written by {@linkcode LatencyHistogram.encode} or any
   * HdrHistogram implementation. The exact sum, minimum and maximum are not
   * in the encoding: they come back to the histogram's resolution.
   *
   * @throws {TypeError} When `text` is not such a histogram.
   * @throws {RangeError} When it holds values far beyond any latency's.
   */
  static decode(text: string): LatencyHistogram {
    let h: Histogram;
    try {
      // Base64 of the compressed cookie 0x1c849314 starts "HISTF": anything
      // else would reach the decoder's less helpful errors.
      if (!/^HISTF[A-Za-z0-9+/]+=*$/.test(text.trim())) throw new Error();
      h = decodeFromCompressedBase64(text.trim(), 64, false);
    } catch {
      throw new TypeError(
        `Cannot decode histogram "${
          text.length > 24 ? `${text.slice(0, 24)}...` : text
        }": expected HdrHistogram's compressed base64 form (HISTF...)`,
      );
    }
    const out = new LatencyHistogram();
    if (h.totalCount === 0) return out;
    out.#h.add(h);
    if (out.#h.totalCount !== h.totalCount) {
      // hdr-histogram-js drops counts it cannot place (values far beyond
      // the hours a latency takes): say so rather than merge short.
      throw new RangeError(
        `Cannot decode histogram: ${
          h.totalCount - out.#h.totalCount
        } of its ${h.totalCount} values are out of range`,
      );
    }
    out.#sumNs = h.mean * h.totalCount;
    out.#minNs = h.getValueAtPercentile(0);
    out.#maxNs = h.maxValue;
    return out;
  }
}
