/**
 * `tools/load.ts merge`: real runs against one echo server merged exactly
 * (counts summed, percentiles from the merged histogram), the interval log
 * of `--histogram-log` holding every sample of its run, and bad input.
 */

import assert from "node:assert/strict";
import * as hdr from "npm:hdr-histogram-js@3.0.1";
import { LatencyHistogram } from "../tools/_histogram.ts";
import { parseHistogramLog } from "../tools/_hdr_log.ts";
import type { LoadReport } from "../tools/load.ts";
import type { MergedReport } from "../tools/_merge.ts";
import { Running, runScript, SOCKET_DIR } from "./_helpers.ts";

const LOAD = "tools/load.ts";
const NET = "--allow-net=127.0.0.1";

/** A fresh file name under the test directory. */
async function scratch(name: string): Promise<string> {
  await Deno.mkdir(SOCKET_DIR, { recursive: true });
  const path = `${SOCKET_DIR}/merge-${name}`;
  await Deno.remove(path).catch(() => {});
  return path;
}

/** Runs a load against `port` with `--json` and `extra`; its report. */
async function run(
  port: number,
  extra: string[],
  perms: string[] = [NET],
): Promise<LoadReport> {
  const out = await runScript(
    LOAD,
    ["-p", String(port), "-d", "0.6", "--json", "--quiet", ...extra],
    { perms },
  );
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout);
}

/** `merge` with `args`, allowed to read the test directory. */
function merge(args: string[]) {
  return runScript(LOAD, ["merge", ...args], {
    perms: [`--allow-read=${SOCKET_DIR}`, `--allow-write=${SOCKET_DIR}`],
  });
}

Deno.test("load.ts merge of two runs sums their counts and takes percentiles of the merged histogram", async () => {
  await using server = new Running("servers/select_echo.ts", ["--port", "0"], {
    perms: [NET],
  });
  const port = await server.port();
  // Two "machines" at once against one server.
  const [a, b] = await Promise.all([
    run(port, ["-c", "3"]),
    run(port, ["-c", "5", "--rate", "400"]),
  ]);
  const fa = await scratch("a.json");
  const fb = await scratch("b.json");
  await Deno.writeTextFile(fa, JSON.stringify(a));
  // --json-stream output is read too: its last line is the report.
  await Deno.writeTextFile(
    fb,
    `{"event":"interval","data":{}}\n${
      JSON.stringify({ event: "end", data: b })
    }\n`,
  );
  const out = await merge(["--json", fa, fb]);
  assert.equal(out.code, 0, out.stderr);
  const m: MergedReport = JSON.parse(out.stdout);
  assert.equal(m.counts.messages, a.messages + b.messages);
  assert.equal(m.counts.bytesEchoed, a.bytesEchoed + b.bytesEchoed);
  assert.equal(m.counts.connections, 8);
  assert.equal(m.counts.connected, 8);
  assert.equal(
    m.rates.messagesPerSecond,
    a.messagesPerSecond + b.messagesPerSecond,
  );
  assert.equal(m.latency.samples, a.latency.samples + b.latency.samples);
  assert.deepEqual(m.targets, [`127.0.0.1:${port}`]);
  assert.equal(m.ok, true);
  // The percentiles are the merged histogram's, to the µs.
  const h = LatencyHistogram.decode(a.latency.histogram);
  h.merge(LatencyHistogram.decode(b.latency.histogram));
  const us = (ms: number) => Math.round(ms * 1000) / 1000;
  assert.equal(m.latency.p50, us(h.percentile(50)));
  assert.equal(m.latency.p99, us(h.percentile(99)));
  assert.equal(m.latency.p999, us(h.percentile(99.9)));
  assert.equal(LatencyHistogram.decode(m.latency.histogram).count, h.count);
  // A pingpong and a paced run differ: the merged median is the merged
  // histogram's, between theirs.
  assert.ok(
    m.latency.p50 >= Math.min(a.latency.p50, b.latency.p50) &&
      m.latency.p50 <= Math.max(a.latency.p50, b.latency.p50),
  );
  const svg = await scratch("merged.svg");
  const text = await merge(["--svg", svg, fa, fb]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^merged 2 reports: /);
  assert.match(text.stdout, /from the merged histogram/);
  // The picture: a line for each input and one for the whole.
  const picture = await Deno.readTextFile(svg);
  assert.equal([...picture.matchAll(/<polyline /g)].length, 3);
  assert.match(picture, />merged: p50 /);
});

Deno.test("load.ts --histogram-log logs every sample of the run, and merge reads it", async () => {
  await using server = new Running("servers/select_echo.ts", ["--port", "0"], {
    perms: [NET],
  });
  const port = await server.port();
  const log = await scratch("run.hlog");
  const svg = await scratch("run.svg");
  const report = await run(
    port,
    ["-c", "4", "--interval", "0.2", "--histogram-log", log, "--svg", svg],
    [NET, `--allow-write=${log},${svg}`],
  );
  const text = await Deno.readTextFile(log);
  assert.match(text, /^#\[Histogram log format version 1\.3\]$/m);
  assert.match(text, /^#\[StartTime: \d+\.\d{3} \(seconds since epoch\), /m);
  assert.match(
    text,
    /^"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"$/m,
  );
  const parsed = parseHistogramLog(text);
  // An interval line every 0.2 s of the 0.6 s, and one for the echoes
  // after the stop when there were any.
  assert.ok(parsed.intervals.length >= 3, `${parsed.intervals.length}`);
  let samples = 0;
  for (const i of parsed.intervals) samples += i.histogram.count;
  assert.equal(samples, report.latency.samples);
  // HdrHistogram's own reader (hdr-histogram-js's HistogramLogReader) reads
  // the same intervals and samples.
  const reader = new hdr.HistogramLogReader(text);
  let theirs = 0;
  let lines = 0;
  for (let h; (h = reader.nextIntervalHistogram()) !== null; lines++) {
    theirs += h.totalCount;
  }
  assert.equal(lines, parsed.intervals.length);
  assert.equal(theirs, report.latency.samples);
  const out = await merge(["--json", log]);
  assert.equal(out.code, 0, out.stderr);
  const m: MergedReport = JSON.parse(out.stdout);
  assert.equal(m.latency.samples, report.latency.samples);
  assert.equal(m.latency.p99, report.latency.p99);
  assert.equal(m.sources[0]!.kind, "log");
  const picture = await Deno.readTextFile(svg);
  assert.match(picture, /^<svg /);
  assert.match(picture, /99\.999%/);
});

Deno.test("load.ts merge says in one line what is wrong with its input", async () => {
  const notReport = await scratch("hello.txt");
  await Deno.writeTextFile(notReport, "hello\n");
  const noHistogram = await scratch("old.json");
  await Deno.writeTextFile(
    noHistogram,
    JSON.stringify({ seconds: 1, latency: { p50: 1 } }),
  );
  const missing = `${SOCKET_DIR}/merge-missing.json`;
  for (
    const [args, code, pattern] of [
      [[], 2, /^error: Cannot merge nothing/],
      [["--bogus", notReport], 2, /^error: /],
      [[missing], 1, /^error: Cannot read .*merge-missing\.json/],
      [[notReport], 1, /^error: Cannot merge .*hello\.txt: not a report/],
      [
        [noHistogram],
        1,
        /^error: Cannot merge .*old\.json: its latency carries no histogram/,
      ],
    ] as const
  ) {
    const out = await merge([...args]);
    assert.equal(out.code, code, `${args}: ${out.stderr}`);
    assert.match(out.stderr, pattern);
    assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
  }
  // Without --allow-read it says which to grant.
  const out = await runScript(LOAD, ["merge", notReport], { perms: [] });
  assert.equal(out.code, 1);
  assert.match(out.stderr, /grant --allow-read=/);
});
