/**
 * Tests of `deno task bench`: a short matrix runs to completion and writes
 * its table and chart.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ROOT, runDeno, SOCKET_DIR } from "./_helpers.ts";

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
  // A latency spectrum per load.ts case, a line per server, linked from
  // bench.md.
  const pp50 = await Deno.readTextFile(`${ROOT}${OUT}/latency-pp50.svg`);
  assert.match(pp50, /99\.999%<\/text>/);
  assert.match(pp50, />c: p50 [\d.]+, p99 /);
  assert.match(pp50, />loop: p50 [\d.]+, p99 /);
  assert.match(md, /\[50 conns\]\(latency-pp50\.svg\)/);
  assert.match(svg, /<\/svg>\n$/);
  assert.ok(svg.length < 20_000, `${svg.length} bytes`);
});

Deno.test("deno task bench rejects an unknown server with exit 2", async () => {
  const out = await task(["--only", "apache"]);
  assert.equal(out.code, 2);
  assert.match(out.stderr, /^error: Cannot parse --only "apache"/);
});

Deno.test("deno task bench --transports takes relay (the relays' cases), which --only cannot narrow, and names it when a transport is unknown", async () => {
  const alone = await task(["--transports", "relay", "--only", "c"]);
  assert.equal(alone.code, 2);
  assert.equal(
    alone.stderr.trim(),
    "error: Cannot use --only with --transports relay alone: the relays' cases run without --only",
  );
  const unknown = await task(["--transports", "tcp,sctp"]);
  assert.equal(unknown.code, 2);
  assert.equal(
    unknown.stderr.trim(),
    'error: Cannot parse --transports "sctp": expected some of tcp, tls, unix, udp, relay',
  );
});

Deno.test("deno task bench --out DIR writes to DIR, running again with write access to DIR alone", async () => {
  // Outside bench-results/, the one directory the task grants: issue 14's
  // "Requires write access" for any other --out.
  const dir = `${SOCKET_DIR}/bench-out-${Deno.pid}`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  try {
    const out = await task([
      ...["--only", "c", "--transports", "udp", "--duration", "0.2"],
      ...["--out", dir],
    ]);
    assert.equal(out.code, 0, out.stderr);
    assert.doesNotMatch(out.stderr, /Requires write access/);
    assert.match(
      out.stderr,
      new RegExp(
        `^note: --out ${dir}: running again with --allow-write=${dir}`,
        "m",
      ),
    );
    assert.match(out.stdout, new RegExp(`^wrote ${dir}/bench\\.md`, "m"));
    const md = await Deno.readTextFile(`${dir}/bench.md`);
    assert.match(md, /^\| server \| UDP 50 flows/m);
    assert.match(md, /^\| loop \| [\d,]+ \(1\.00x\)/m);
    const svg = await Deno.readTextFile(`${dir}/bench.svg`);
    assert.match(svg, /UDP, 50 flows/);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("bench.ts --out DIR without the right to run itself again says the exact command", async () => {
  const dir = `${SOCKET_DIR}/bench-denied-${Deno.pid}`;
  // --allow-run=gcc: no sh, so no way to start Deno again.
  const out = await runDeno([
    "run",
    "--quiet",
    "--allow-run=gcc",
    "--allow-read=.",
    "--allow-write=bench-results",
    "bench/bench.ts",
    ...["--out", dir, "--quick"],
  ]);
  assert.equal(out.code, 1, out.stderr);
  const lines = out.stderr.trim().split("\n");
  assert.equal(lines.length, 1, out.stderr);
  assert.equal(
    lines[0],
    `error: Cannot write to --out ${dir}: run deno run --allow-run=sh,gcc --allow-read=. --allow-write=${dir} bench/bench.ts --out ${dir} --quick`,
  );
});

Deno.test("deno task bench runs bench.ts with the flags it runs itself again with", async () => {
  const { BENCH_FLAGS } = await import("../bench/bench.ts");
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  assert.equal(
    config.tasks.bench,
    `deno run ${
      BENCH_FLAGS.join(" ")
    } --allow-write=bench-results bench/bench.ts`,
  );
});

Deno.test("the bench's chart keeps to a few ticks when a ratio runs into the thousands", async () => {
  const { svgChart } = await import("../bench/_chart.ts");
  const { TABLES, benchCases } = await import("../bench/_cases.ts");
  type Cell = import("../bench/_measure.ts").Cell;
  type LoadReport = import("../tools/load.ts").LoadReport;
  const cases = benchCases({ duration: "1", many: 200, held: 2000, udpRate: 1 })
    .filter((c) => c.key === "pp1");
  const cell = (messagesPerSecond: number): Cell => ({
    report: { mode: "pingpong", messagesPerSecond } as unknown as LoadReport,
  });
  // A stalled yardstick run: 5 msg/s against 9,760 (seen at --duration 0.2
  // on a busy machine), a ratio of 1,952.
  const results = new Map([
    ["c", new Map([["pp1", cell(9_760)]])],
    ["loop", new Map([["pp1", cell(5)]])],
  ]);
  const svg = svgChart(TABLES, ["c", "loop"], cases, results, "test");
  const ticks = svg.match(/text-anchor="middle"/g) ?? [];
  assert.ok(ticks.length >= 2 && ticks.length <= 9, `${ticks.length} ticks`);
  assert.ok(svg.length < 20_000, `${svg.length} bytes`);
  // The bar that ran off is drawn to the end of the axis.
  assert.match(svg, /<rect x="95" y="\d+" width="[3-4]\d\d\.\d"/);
});

Deno.test("the bench's chart draws the relays' cases as ratios to HAProxy", async () => {
  const { svgChart } = await import("../bench/_chart.ts");
  const { proxyPanel } = await import("../bench/_proxy_cases.ts");
  const panel = proxyPanel({
    figures: {
      haproxy: { pp50: 80_000, stream: 600 },
      "proxy (no toxics)": { pp50: 60_000, stream: 720 },
      socat: { pp50: 30_000 },
    },
    cpu: {},
    rows: [],
    notes: [],
  });
  assert.deepEqual(panel.rows, ["haproxy", "proxy (no toxics)", "socat"]);
  assert.deepEqual(panel.ratios, [[1, 1], [0.75, 1.2], [0.375, 0]]);
  const svg = svgChart([], [], [], new Map(), "test", [panel]);
  assert.match(
    svg,
    /Relays in front of the C echo server: ratio to HAProxy \(1\.0\)/,
  );
  assert.match(svg, />proxy \(no toxics\)</);
  // A bar per figure that ran (five); socat's stream did not: no bar.
  assert.equal(svg.match(/<rect x="\d+" y="\d+" width=/g)?.length, 5 + 2);
  // The bars start right of the longest name, so none is cut at the left.
  const left = Number(svg.match(/<rect x="(\d+)"/)![1]);
  assert.ok(left >= "proxy (no toxics)".length * 6, `bars at x=${left}`);
  // Without HAProxy there is nothing to be a ratio to: no panel.
  const none = proxyPanel({
    figures: { socat: { pp50: 1 } },
    cpu: {},
    rows: [],
    notes: [],
  });
  assert.equal(
    svgChart([], [], [], new Map(), "t", [none]).includes("Relays"),
    false,
  );
});
