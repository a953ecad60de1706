/**
 * Tests of `deno task bench`: a short matrix runs to completion and writes
 * its table and chart.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ROOT, runDeno } from "./_helpers.ts";

const OUT = "bench-results/test";

function task(args: string[]) {
  return runDeno(["task", "--quiet", "bench", ...args]);
}

Deno.test("deno task bench --quick runs a matrix and writes bench.md and bench.svg", async () => {
  // The C baseline and the loop (always run) keep this to a few seconds; the
  // full --quick matrix is the same code over more servers.
  const out = await task([
    "--quick",
    "--only",
    "c",
    "--duration",
    "0.2",
    "--out",
    OUT,
  ]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^loop +[\d,]+ \(1\.00x\)/m);
  const md = await Deno.readTextFile(`${ROOT}${OUT}/bench.md`);
  assert.match(md, /^\| server \| 1 conn msg\/s \| 50 conns msg\/s/m);
  assert.match(md, /^\| loop \| [\d,]+ \(1\.00x\) \|/m);
  // Every traffic cell of the loop row holds a figure, none failed.
  const loopRow = md.split("\n").find((l) => l.startsWith("| loop |"))!;
  assert.ok(!loopRow.includes("failed"), loopRow);
  assert.ok(!loopRow.includes("!"), loopRow);
  const svg = await Deno.readTextFile(`${ROOT}${OUT}/bench.svg`);
  assert.match(svg, /^<svg [^>]*>/);
  assert.match(svg, /<\/svg>\n$/);
  assert.ok(svg.length < 20_000, `${svg.length} bytes`);
});

Deno.test("deno task bench rejects an unknown server with exit 2", async () => {
  const out = await task(["--only", "apache"]);
  assert.equal(out.code, 2);
  assert.match(out.stderr, /^error: Cannot parse --only "apache"/);
});
