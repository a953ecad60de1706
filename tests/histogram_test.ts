/**
 * The load generator's histogram in HdrHistogram's standard form: what it
 * writes is read by hdr-histogram-js and by an independent reading of the
 * V2 format here (zlib, ZigZag LEB128), and it reads what hdr-histogram-js,
 * HdrHistogram_c and Java write.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { inflateSync } from "node:zlib";
import * as hdr from "npm:hdr-histogram-js@3.0.1";
import { LatencyHistogram } from "../tools/_histogram.ts";
import { decodeHdr, encodeHdr, HdrLayout } from "../tools/_hdr_codec.ts";
import { pseudoRandom } from "./_helpers.ts";

/** Latencies in ms of a plausible run: a body near 0.3 ms, a tail to 40. */
function samples(n: number, seed: number): number[] {
  const next = pseudoRandom(seed);
  return Array.from({ length: n }, () => {
    const r = next() / 2 ** 32;
    return 0.2 + r * 0.2 + (r > 0.995 ? (next() / 2 ** 32) * 40 : 0);
  });
}

/**
 * HdrHistogram's V2 compressed encoding read by hand: the outer cookie and
 * length, zlib, the inner header, the ZigZag LEB128 counts with negative
 * runs of zeros. Returns the header fields and the counts by index.
 */
function readV2(base64: string) {
  const bytes = Buffer.from(base64, "base64");
  const outer = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const cookie = outer.getInt32(0);
  const compressedLength = outer.getInt32(4);
  const inner = inflateSync(bytes.subarray(8, 8 + compressedLength));
  const v = new DataView(inner.buffer, inner.byteOffset, inner.length);
  const header = {
    cookie,
    compressedLength,
    rest: bytes.length - 8 - compressedLength,
    innerCookie: v.getInt32(0),
    payloadLength: v.getInt32(4),
    digits: v.getInt32(12),
    lowest: Number(v.getBigInt64(16)),
    highest: Number(v.getBigInt64(24)),
  };
  const counts: number[] = [];
  let at = 40;
  const end = 40 + header.payloadLength;
  while (at < end) {
    let value = 0;
    let scale = 1;
    for (let i = 0;; i++) {
      const b = inner[at++]!;
      value += (i === 8 ? b : b & 0x7f) * scale;
      scale *= 128;
      if (i === 8 || (b & 0x80) === 0) break;
    }
    // ZigZag: even is n / 2, odd is -(n + 1) / 2.
    const n = value % 2 === 0 ? value / 2 : -(value + 1) / 2;
    if (n < 0) { for (let z = 0; z < -n; z++) counts.push(0); }
    else counts.push(n);
  }
  assert.equal(at, end, "the payload ends where its length says");
  return { header, counts };
}

Deno.test("LatencyHistogram percentiles are right on known samples", () => {
  const h = new LatencyHistogram();
  for (let ms = 1; ms <= 1000; ms++) h.record(ms);
  assert.equal(h.count, 1000);
  assert.equal(h.min, 1);
  assert.equal(h.max, 1000);
  assert.equal(h.mean, 500.5);
  for (
    const [p, want] of [[50, 500], [90, 900], [99, 990], [99.9, 999]] as const
  ) {
    const got = h.percentile(p);
    // 3 significant digits: the bucket's top is at most 1/1024 above.
    assert.ok(got >= want && got <= want * (1 + 1 / 1024), `p${p} = ${got}`);
  }
  assert.equal(h.percentile(100), 1000);
  assert.equal(h.percentile(0), 1);
  // Below 2,048 ns every nanosecond has its own bucket: exact.
  const small = new LatencyHistogram();
  for (const ns of [10, 20, 30, 2000]) small.record(ns / 1e6);
  assert.equal(small.percentile(50), 20 / 1e6);
  assert.equal(small.percentile(100), 2000 / 1e6);
  // One slow sample among many fast ones shows at p99.9, not at p99.
  const tail = new LatencyHistogram();
  for (let i = 0; i < 999; i++) tail.record(0.1);
  tail.record(250);
  assert.ok(tail.percentile(99) < 0.11);
  assert.equal(tail.percentile(100), 250);
  assert.throws(() => h.percentile(101), RangeError);
  h.reset();
  assert.equal(h.count, 0);
  assert.equal(h.percentile(99), 0);
});

Deno.test("LatencyHistogram.encode writes HdrHistogram's V2 compressed form", () => {
  const values = samples(50_000, 1);
  const h = new LatencyHistogram();
  for (const ms of values) h.record(ms);
  const text = h.encode();
  const { header, counts } = readV2(text);
  assert.equal(header.cookie, 0x1c849314, "compressed V2 cookie");
  assert.equal(header.innerCookie, 0x1c849313, "V2 cookie");
  assert.equal(header.rest, 0, "nothing after the compressed payload");
  assert.equal(header.digits, 3);
  assert.equal(header.lowest, 1);
  // The counts add up to the samples, and their values (HdrHistogram's
  // index layout for 3 digits: 2048 sub-buckets, halves after the first)
  // hold each sample in ns.
  assert.equal(counts.reduce((a, b) => a + b, 0), values.length);
  const valueAt = (index: number) => {
    const bucket = Math.max(0, (index >> 10) - 1);
    const sub = index < 2048 ? index : (index & 1023) + 1024;
    return sub * 2 ** bucket;
  };
  const byValue = new Map<number, number>();
  for (const ms of values) {
    const ns = Math.round(ms * 1e6);
    const bucket = Math.max(0, Math.floor(Math.log2(ns)) - 10);
    const low = Math.floor(ns / 2 ** bucket) * 2 ** bucket;
    byValue.set(low, (byValue.get(low) ?? 0) + 1);
  }
  counts.forEach((c, i) => {
    if (c > 0) assert.equal(c, byValue.get(valueAt(i)), `index ${i}`);
  });
});

Deno.test("hdr-histogram-js reads what LatencyHistogram writes, and back", () => {
  const values = samples(20_000, 2);
  const ours = new LatencyHistogram();
  const theirs = hdr.build({ numberOfSignificantValueDigits: 3 });
  for (const ms of values) {
    ours.record(ms);
    theirs.recordValue(Math.round(ms * 1e6));
  }
  const read = hdr.decodeFromCompressedBase64(ours.encode());
  assert.equal(read.totalCount, values.length);
  const back = LatencyHistogram.decode(
    hdr.encodeIntoCompressedBase64(theirs),
  );
  assert.equal(back.count, values.length);
  for (const p of [0, 1, 25, 50, 90, 99, 99.9, 99.99, 100]) {
    const want = theirs.getValueAtPercentile(p);
    assert.equal(read.getValueAtPercentile(p), want, `theirs p${p}`);
    // Ours caps at the true extremes; within one bucket (0.1%) of theirs.
    const got = ours.percentile(p) * 1e6;
    assert.ok(Math.abs(got - want) <= want / 1000 + 1, `p${p} ${got} ${want}`);
    const decoded = back.percentile(p) * 1e6;
    assert.ok(
      Math.abs(decoded - want) <= want / 1000 + 1,
      `decoded p${p} ${decoded} ${want}`,
    );
  }
  read.destroy();
  theirs.destroy();
});

Deno.test("LatencyHistogram.decode reads HdrHistogram_c's and Java's encodings", () => {
  // HdrHistogram_c's standard test histogram (as hdrhistogram-py's tests
  // carry it): (1, 3,600,000,000, 3), 10,000 samples of 1,000 and one of
  // 100,000,000.
  const c = LatencyHistogram.decode(
    "HISTFAAAACl4nJNpmSzMwMBgyAABzFCaEURcm7yEwf4DROA8/4I5jNM7mJgAlWkH9g==",
  );
  assert.equal(c.count, 10_001);
  assert.equal(c.percentile(50) * 1e6, 1000);
  assert.equal(c.percentile(99.99) * 1e6, 1000);
  const max = c.percentile(100) * 1e6;
  assert.ok(max >= 1e8 && max <= 1e8 * 1.001, `max ${max}`);
  // Java's and C's (1, 2048, 3) histogram with one 2,048 (the same bytes
  // from both, as hdrhistogram-go's tests carry it).
  const java = LatencyHistogram.decode(
    "HISTFAAAACB4nJNpmSzMwMDAzAABMJoRQnEw2H+AsP7LMwEARZgDpQ==",
  );
  assert.equal(java.count, 1);
  const v = java.percentile(50) * 1e6;
  assert.ok(v >= 2048 && v <= 2049, `value ${v}`);
});

Deno.test("LatencyHistogram merges decoded histograms exactly", () => {
  const a = samples(10_000, 3);
  const b = samples(30_000, 4);
  const all = new LatencyHistogram();
  const ha = new LatencyHistogram();
  const hb = new LatencyHistogram();
  for (const ms of a) all.record(ms), ha.record(ms);
  for (const ms of b) all.record(ms), hb.record(ms);
  const merged = LatencyHistogram.decode(ha.encode());
  merged.merge(LatencyHistogram.decode(hb.encode()));
  assert.equal(merged.count, a.length + b.length);
  // Same counts in the same buckets: the same encoding.
  assert.deepEqual(readV2(merged.encode()).counts, readV2(all.encode()).counts);
  for (const p of [50, 90, 99, 99.9]) {
    assert.equal(merged.percentile(p), all.percentile(p), `p${p}`);
  }
});

Deno.test("encodeHdr writes counts past 32 bits and long runs of zeros as hdr-histogram-js reads them", () => {
  const layout = new HdrLayout(1, 2 ** 43 - 1, 3);
  const counts = new Array(5000).fill(0);
  counts[0] = 1;
  counts[7] = 2 ** 35 + 7; // 6 bytes as a varint
  counts[2047] = 2 ** 52 + 1; // 8 bytes
  counts[4999] = 3;
  const text = encodeHdr(layout, counts, counts.length);
  const theirs = hdr.decodeFromCompressedBase64(text, 64);
  assert.equal(theirs.totalCount, 1 + (2 ** 35 + 7) + (2 ** 52 + 1) + 3);
  // Index 4999 is 15,416 to 15,423 (a step of 8): its top is the maximum.
  assert.equal(layout.valueAt(4999), 15_416);
  assert.equal(theirs.maxValue, 15_423);
  const back = decodeHdr(text);
  assert.deepEqual(back.counts, counts);
  assert.equal(back.layout.digits, 3);
  // And a count hdr-histogram-js writes comes back as it was.
  const h = hdr.build({ bitBucketSize: 64, numberOfSignificantValueDigits: 2 });
  h.recordValueWithCount(123_456, 2 ** 33);
  const read = LatencyHistogram.decode(hdr.encodeIntoCompressedBase64(h));
  assert.equal(read.count, 2 ** 33);
  // 2 digits: 123,456 is in the bucket of 122,880 to 123,903.
  const v = read.percentile(50) * 1e6;
  assert.ok(v >= 122_880 && v <= 123_904, `${v}`);
});

Deno.test("LatencyHistogram.decode refuses what is not a histogram", () => {
  for (
    const text of [
      "",
      "garbage",
      "HISTFAAAAAAA",
      Buffer.from("not a histogram at all").toString("base64"),
    ]
  ) {
    assert.throws(
      () => LatencyHistogram.decode(text),
      (e: Error) =>
        e instanceof TypeError && /^Cannot decode histogram/.test(e.message),
      JSON.stringify(text),
    );
  }
});
