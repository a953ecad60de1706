/**
 * The load generator's SVG pictures: well-formed and self-contained, text
 * escaped, the spectrum's axis where HdrHistogram puts it and each line
 * ending where its samples stop telling percentiles apart.
 */

import assert from "node:assert/strict";
import { LatencyHistogram } from "../tools/_histogram.ts";
import { capacitySvg, escapeXml, latencySvg } from "../tools/_plot.ts";

/** Asserts `svg` is well-formed XML as far as an SVG viewer cares. */
function assertWellFormed(svg: string): void {
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  const stack: string[] = [];
  for (
    const m of svg.matchAll(
      /<(\/?)([a-zA-Z]+)((?:\s+[a-zA-Z:-]+="[^"<]*")*)\s*(\/?)>/g,
    )
  ) {
    const [, close, name, , self] = m;
    if (self) continue;
    if (close) assert.equal(stack.pop(), name, `</${name}> closes its element`);
    else stack.push(name!);
  }
  assert.deepEqual(stack, [], "every element closed");
  // Nothing between tags but escaped text.
  for (const text of svg.split(/<[^>]*>/)) {
    assert.doesNotMatch(text, /[<>]|&(?!amp;|lt;|gt;|quot;|#39;)/, text);
  }
  // Self-contained: no script, link, external image, font or stylesheet.
  assert.doesNotMatch(
    svg,
    /<script|href=|url\(|@import|<image|<foreignObject/i,
  );
}

/** The points of every polyline, in order. */
function polylines(svg: string): [number, number][][] {
  return [...svg.matchAll(/<polyline points="([^"]*)"/g)].map((m) =>
    m[1]!.split(" ").map((p) => p.split(",").map(Number) as [number, number])
  );
}

/** x of the tick label `text`. */
function tickX(svg: string, text: string): number {
  const m = svg.match(
    new RegExp(`<text x="([0-9.]+)"[^>]*>${text.replace(/\./g, "\\.")}</text>`),
  );
  assert.ok(m, `tick ${text}`);
  return Number(m[1]);
}

Deno.test("latencySvg draws HdrHistogram's percentile spectrum", () => {
  const h = new LatencyHistogram();
  for (let i = 1; i <= 1000; i++) h.record(i / 100);
  const svg = latencySvg({
    title: 'echo <select> & "loop"',
    subtitle: "2 cores",
    series: [{ label: "a<b>", histogram: h }],
  });
  assertWellFormed(svg);
  assert.ok(svg.includes("echo &lt;select&gt; &amp; &quot;loop&quot;"));
  assert.ok(svg.includes("a&lt;b&gt;: p50"));
  const labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"];
  const xs = labels.map((l) => tickX(svg, l));
  // Each nine the same width: log10(1/(1-p)).
  const step = (xs[5]! - xs[0]!) / 5;
  xs.forEach((x, i) => assert.ok(Math.abs(x - (xs[0]! + i * step)) < 0.2));
  const [line] = polylines(svg);
  assert.ok(line && line.length > 100, "a point every 0.01 of a nine");
  for (let i = 1; i < line.length; i++) {
    assert.ok(line[i]![0] >= line[i - 1]![0], "x grows");
    assert.ok(line[i]![1] <= line[i - 1]![1], "latency never falls");
  }
  // 1,000 samples tell percentiles apart up to p99.9, where the line ends.
  assert.ok(Math.abs(line.at(-1)![0] - xs[3]!) < 0.2, `${line.at(-1)}`);
  // ... at the maximum, 10 ms, the highest tick a round 10.
  assert.ok(svg.includes(">10</text>"));
  assert.ok(line.at(-1)![1] < line[0]![1]);
});

Deno.test("latencySvg draws the interval series and empty runs", () => {
  const intervals = [0, 1, 2].map((i) => ({
    start: i,
    end: i + 1,
    messagesPerSecond: 1000 * (i + 1),
    latency: { p99: 0.5 },
  }));
  const svg = latencySvg({
    title: "t",
    series: [
      { label: "x", histogram: new LatencyHistogram() },
      { label: "y", histogram: new LatencyHistogram() },
    ],
    intervals: [{ label: "x", intervals }, { label: "y", intervals }],
  });
  assertWellFormed(svg);
  assert.ok(svg.includes("x (no samples)"));
  assert.ok(svg.includes(">no samples</text>"));
  assert.ok(svg.includes(">msg/s</text>") || svg.includes(">msg/s<"));
  assert.ok(svg.includes("p99 (ms)"));
  // Two runs: a msg/s step line and a p99 step line each.
  const lines = polylines(svg);
  assert.equal(lines.length, 4);
  // The time axis ends with the run (3 s), the value axes above the top.
  assert.ok(svg.includes(">3</text>") && !svg.includes(">3.5</text>"));
  assert.ok(svg.includes(">4k</text>"), "headroom over 3,000 msg/s");
  // A step per interval: two points each, the rate's rising.
  assert.equal(lines[0]!.length, 6);
  assert.ok(lines[0]![5]![1] < lines[0]![0]![1]);
});

Deno.test("capacitySvg marks the target, the answer and the steps that missed", () => {
  const svg = capacitySvg({
    title: "capacity of <x>",
    targetP99: 2,
    answer: 20_000,
    steps: [
      { offered: 10_000, achieved: 10_000, p50: 0.3, p99: 0.9 },
      { offered: 40_000, achieved: 31_000, p50: 9, p99: 40, errors: 3 },
      { offered: 20_000, achieved: 19_990, p50: 0.4, p99: 1.8 },
    ],
  });
  assertWellFormed(svg);
  assert.ok(svg.includes("target p99 2 ms"));
  assert.ok(svg.includes("answer 20,000 msg/s"));
  assert.ok(svg.includes("capacity of &lt;x&gt;"));
  const circles = [...svg.matchAll(/<circle [^>]*fill="([^"]*)"/g)].map((m) =>
    m[1]
  );
  assert.equal(circles.length, 3);
  assert.equal(circles.filter((f) => f === "#fff").length, 1, "one missed");
  // The 40 ms step is off the top (3x the target) and says so.
  assert.ok(svg.includes("↑40"));
  // Lines run by offered rate, whatever order the steps came in.
  const [, p99] = polylines(svg);
  assert.ok(p99![0]![0] < p99![1]![0] && p99![1]![0] < p99![2]![0]);
});

Deno.test("capacitySvg takes the search's own verdict of a step when given", () => {
  const svg = capacitySvg({
    title: "c",
    targetP99: 2,
    steps: [
      // Under the target but the rate not achieved: missed.
      { offered: 10_000, achieved: 5_000, p50: 0.3, p99: 0.9, held: false },
      { offered: 5_000, achieved: 5_000, p50: 0.3, p99: 0.8, held: true },
    ],
  });
  const fills = [...svg.matchAll(/<circle [^>]*fill="([^"]*)"/g)].map((m) =>
    m[1]
  );
  assert.deepEqual(fills.sort(), ["#4e79a7", "#fff"]);
  assert.ok(!svg.includes("answer "));
});

Deno.test("escapeXml escapes the five XML specials", () => {
  assert.equal(
    escapeXml(`<a href="x">&'`),
    "&lt;a href=&quot;x&quot;&gt;&amp;&#39;",
  );
});
