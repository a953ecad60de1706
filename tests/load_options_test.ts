/**
 * Tests of tools/load.ts's options from tcpkali (issue 14 item 4):
 * `--percentiles LIST`, `--message TEXT` and `--message-file FILE` (still
 * checked byte for byte), and capacity search with `--rate @P99MS`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Running, runScript, SOCKET_DIR } from "./_helpers.ts";
import {
  echoLoop,
  LOAD,
  load,
  overPrecise,
  testServer,
} from "./_load_helpers.ts";

Deno.test("load.ts --percentiles lists the percentiles asked for, in text and JSON", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  const { code, report } = await load([
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "0.5",
    "--percentiles",
    "99.99,50,75",
  ]);
  assert.equal(code, 0);
  assert.deepEqual(Object.keys(report.latency.percentiles), [
    "50",
    "75",
    "99.99",
  ]);
  assert.equal(report.latency.percentiles["50"], report.latency.p50);
  assert.ok(
    report.latency.percentiles["99.99"]! >= report.latency.percentiles["75"]!,
  );
  assert.deepEqual(Object.keys(report.connect.percentiles), [
    "50",
    "75",
    "99.99",
  ]);
  const text = await runScript(LOAD, [
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "0.3",
    "-q",
  ]);
  // The default is tcpkali's: 50, 90, 99, 99.9.
  assert.match(
    text.stdout,
    /^latency ms: p50 [\d.]+ {2}p90 [\d.]+ {2}p99 [\d.]+ {2}p99\.9 [\d.]+ {2}max /m,
  );
  const listed = await runScript(LOAD, [
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "0.3",
    "-q",
    "--percentiles",
    "50,99.99",
  ]);
  assert.match(
    listed.stdout,
    /^latency ms: p50 [\d.]+ {2}p99\.99 [\d.]+ {2}max /m,
  );
});

/** An echo that records every byte it gets, and may flip one. */
function recordingServer(flipAt = -1) {
  const got: number[] = [];
  const server = testServer((conn) =>
    echoLoop(conn, (buf, n, offset) => {
      for (let i = 0; i < n; i++) got.push(buf[i]!);
      if (flipAt >= offset && flipAt < offset + n) buf[flipAt - offset]! ^= 1;
    })
  );
  return { server, got };
}

Deno.test("load.ts --message sends that text (with escapes) and checks every byte back", async () => {
  const { server, got } = recordingServer();
  await using _ = server;
  const { code, report } = await load([
    "-p",
    String(server.port),
    "-c",
    "1",
    "-d",
    "0.3",
    "--message",
    "PING\\r\\n\\x00",
  ]);
  assert.equal(code, 0);
  assert.equal(report.size, 7);
  assert.ok(report.messages > 10);
  assert.equal(report.bytesEchoed, report.messages * 7);
  assert.deepEqual(
    got.slice(0, 14),
    [
      ..."PING\r\n\0PING\r\n\0",
    ].map((c) => c.charCodeAt(0)),
  );
  // A flipped byte in the third message is caught.
  const bad = recordingServer(16);
  await using _bad = bad.server;
  const flipped = await load([
    "-p",
    String(bad.server.port),
    "-c",
    "1",
    "-d",
    "0.3",
    "--message",
    "PING\\r\\n\\x00",
  ]);
  assert.equal(flipped.code, 1);
  assert.equal(flipped.report.mismatchedBytes, 1);
});

Deno.test("load.ts --message-file sends the file's bytes; without read permission, one line", async () => {
  await Deno.mkdir(SOCKET_DIR, { recursive: true });
  const path = `${SOCKET_DIR}/message.bin`;
  const bytes = new Uint8Array(1000).map((_, i) => (i * 37) & 0xff);
  await Deno.writeFile(path, bytes);
  try {
    const { server, got } = recordingServer();
    await using _ = server;
    const args = [
      "--json",
      "-q",
      "-p",
      String(server.port),
      "-c",
      "2",
      "-d",
      "0.3",
      "--mode",
      "stream",
      "--message-file",
      path,
    ];
    const out = await runScript(LOAD, args, {
      perms: ["--allow-net=127.0.0.1", `--allow-read=${path}`],
    });
    assert.equal(out.code, 0, out.stderr);
    const report = JSON.parse(out.stdout);
    assert.equal(report.size, 1000);
    assert.equal(report.mismatchedBytes, 0);
    assert.ok(report.messages > 0);
    assert.deepEqual(got.slice(0, 1000), [...bytes]);
    const denied = await runScript(LOAD, args, {
      perms: ["--allow-net=127.0.0.1"],
    });
    assert.equal(denied.code, 1);
    assert.equal(denied.stderr.trim().split("\n").length, 1, denied.stderr);
    assert.match(
      denied.stderr,
      new RegExp(`--message-file ${path}.*--allow-read=${path}`),
    );
  } finally {
    await Deno.remove(path);
  }
});

/**
 * An echo that serves at most `perSecond` messages of `size` bytes a second
 * over all its connections, queueing the rest: past that rate its queue, and
 * the round trip, grow without bound.
 */
function limitedServer(perSecond: number, size: number) {
  let free = 0;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const server = testServer(async (conn) => {
    const buf = new Uint8Array(16 * 1024);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) return;
      const now = performance.now();
      free = Math.max(free, now) + (n / size) * (1000 / perSecond);
      const copy = buf.slice(0, n);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          timers.delete(timer);
          resolve();
        }, free - now);
        timers.add(timer);
      });
      let done = 0;
      while (done < n) done += await conn.write(copy.subarray(done));
    }
  });
  return server;
}

Deno.test("load.ts --rate @P99MS finds the highest rate under the p99, printing each step", async () => {
  await using server = limitedServer(2_000, 64);
  const out = await runScript(LOAD, [
    "-p",
    String(server.port),
    "-c",
    "8",
    "-d",
    "1",
    "--rate",
    "@25",
    "--json",
    "-q",
  ]);
  const report = JSON.parse(out.stdout);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(report.targetP99, 25);
  assert.ok(report.steps.length >= 3 && report.steps.length <= 12);
  for (const s of report.steps) {
    for (
      const k of ["offered", "achieved", "p50", "p99", "errors", "cpu", "held"]
    ) {
      assert.ok(k in s, k);
    }
    assert.equal(
      s.held,
      s.p99 <= 25 && s.errors === 0 &&
        s.achieved >= 0.95 * s.offered,
    );
  }
  // The server takes 2,000 a second: the answer is below, and not far.
  assert.ok(
    report.answer >= 500 && report.answer <= 2_100,
    `answer ${report.answer}: ${JSON.stringify(report.steps)}`,
  );
  assert.ok(report.steps.some((s: { held: boolean }) => !s.held));
  assert.deepEqual(overPrecise(report, 3), []);
});

Deno.test("load.ts --rate @P99MS in text prints the probe, each step and the answer", async () => {
  await using server = limitedServer(2_000, 64);
  const out = await runScript(LOAD, [
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "0.3",
    "--rate",
    "@25",
    "-q",
  ]);
  assert.equal(out.code, 0, out.stderr);
  const lines = out.stdout.trim().split("\n");
  assert.match(lines[0]!, /^capacity search: .*p99 under 25 ms/);
  assert.match(lines[1]!, /^probe \(closed loop\): [\d,]+ msg\/s/);
  assert.match(
    lines[2]!,
    /^step +1: +[\d,]+ msg\/s offered, +[\d,]+ achieved, p50 [\d.]+ ms, p99 [\d.]+ ms, \d+ errors: (held|missed)/,
  );
  assert.match(out.stdout, /^answer: [\d,]+ msg\/s with p99 [\d.]+ ms/m);
  assert.match(lines.at(-1)!, /^result: ok$/);
});

Deno.test("load.ts --rate @P99MS --svg draws p99 against the offered rate", async () => {
  await using server = limitedServer(2_000, 64);
  await Deno.mkdir(SOCKET_DIR, { recursive: true });
  const path = `${SOCKET_DIR}/capacity.svg`;
  try {
    const out = await runScript(LOAD, [
      "-p",
      String(server.port),
      "-c",
      "2",
      "-d",
      "0.3",
      "--rate",
      "@25",
      "--json",
      "-q",
      "--svg",
      path,
    ], {
      perms: ["--allow-net=127.0.0.1", `--allow-write=${path}`],
    });
    assert.equal(out.code, 0, out.stderr);
    const report = JSON.parse(out.stdout);
    const svg = await Deno.readTextFile(path);
    assert.match(svg, /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(svg, /target p99/);
    assert.match(svg, /p99 under 25 ms/);
    // One dot per step.
    assert.equal(
      (svg.match(/<circle/g) ?? []).length >= report.steps.length,
      true,
      svg,
    );
    // Without write permission: one line, before any step runs.
    const denied = await runScript(LOAD, [
      "-p",
      String(server.port),
      "-c",
      "2",
      "-d",
      "0.3",
      "--rate",
      "@25",
      "-q",
      "--svg",
      path,
    ], { perms: ["--allow-net=127.0.0.1"] });
    assert.equal(denied.code, 1);
    assert.equal(denied.stdout, "");
    assert.match(
      denied.stderr.trim(),
      new RegExp(`^error: Cannot write --svg ${path}: .*--allow-write=${path}`),
    );
  } finally {
    await Deno.remove(path).catch(() => {});
  }
});

Deno.test("load.ts --rate @P99MS ends at Ctrl-C with the steps so far, marked interrupted, exit 130", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  await using proc = new Running(LOAD, [
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "3",
    "--rate",
    "@50",
    "--json-stream",
    "-q",
  ]);
  // The probe's line: the search is under way, its first step running.
  await proc.waitFor(/"event":"probe"/);
  const out = await proc.stop("SIGINT");
  assert.equal(out.code, 130, out.stderr);
  const events = out.stdout.split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l));
  const end = events.find((e) => e.event === "end");
  assert.ok(end !== undefined, JSON.stringify(events));
  assert.equal(end.data.interrupted, true);
  assert.match(end.data.reason, /^interrupted after \d+ steps/);
  assert.equal(end.data.ok, false);
});
