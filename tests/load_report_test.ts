/**
 * Tests of what tools/load.ts reports and when it stops (issue 14 item 1):
 * progress per interval, the early end when every connection is gone,
 * Ctrl-C marked as interrupted, a JSON report when nothing connects, counts
 * that add up, no "extra" bytes after a short drain, a TTY line that fits,
 * rounded JSON numbers, `--interval` and `--json-stream`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ROOT, Running, runScript, SCRIPT_PERMISSIONS } from "./_helpers.ts";
import {
  echoLoop,
  jsonStream,
  LOAD,
  load,
  overPrecise,
  testServer,
} from "./_load_helpers.ts";

/** Progress lines of stderr that report a running interval. */
function runningLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.startsWith("running"));
}

/** An echo that answers until `stall` resolves, then reads and never writes. */
function stallingServer(stall: Promise<void>) {
  return testServer(async (conn) => {
    let stalled = false;
    stall.then(() => stalled = true);
    const buf = new Uint8Array(16 * 1024);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) return;
      if (stalled) continue;
      let done = 0;
      while (done < n) done += await conn.write(buf.subarray(done, n));
    }
  });
}

Deno.test("load.ts progress gives each interval's own rate, not a running average", async () => {
  let stall = () => {};
  const stalled = new Promise<void>((resolve) => stall = resolve);
  await using server = stallingServer(stalled);
  await using proc = new Running(LOAD, [
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "3.5",
    "--drain-timeout",
    "0.1",
  ]);
  // The first interval's line: traffic ran; then the server stops echoing.
  await proc.waitForStderr(/^running .*[1-9][\d,]* msg\/s/);
  stall();
  const out = await proc.wait();
  const lines = runningLines(out.stderr);
  // At least one whole interval after the stall: none came back in it.
  const last = lines.at(-1) ?? "";
  assert.match(last, /: 0 msg\/s/, out.stderr);
});

Deno.test("load.ts ends early with one clear line when every connection is gone", async () => {
  let n = 0;
  await using server = testServer(async (conn) => {
    // Echo a little, then close: every connection goes.
    const buf = new Uint8Array(1024);
    while (n < 40) {
      const got = await conn.read(buf);
      if (got === null) return;
      n++;
      await conn.write(buf.subarray(0, got));
    }
  });
  const started = performance.now();
  const { code, report, stderr } = await load([
    "-p",
    String(server.port),
    "-c",
    "3",
    "-d",
    "30",
  ]);
  assert.ok(performance.now() - started < 10_000, "ended early");
  assert.equal(code, 1);
  assert.ok(report.seconds < 10, `${report.seconds}`);
  assert.equal(report.ended, "disconnected");
  assert.equal(report.ok, false);
  assert.match(report.reason, /every connection is gone after/);
  // Text: the same line once.
  const text = await runScript(LOAD, [
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "30",
    "-q",
  ]);
  assert.equal(text.code, 1);
  assert.equal(
    text.stdout.split("\n").filter((l) => /every connection is gone/.test(l))
      .length,
    1,
    text.stdout,
  );
  assert.equal(stderr.includes("at "), false, "no stack trace");
});

Deno.test("load.ts on SIGINT reports `interrupted` (text and JSON) and exits 130", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  for (const json of [true, false]) {
    await using proc = new Running(LOAD, [
      "-p",
      String(server.port),
      "-c",
      "2",
      "-d",
      "60",
      ...(json ? ["--json"] : []),
    ]);
    await proc.waitForStderr(/^running/);
    const out = await proc.stop("SIGINT");
    assert.equal(out.code, 130, out.stderr);
    if (json) {
      const report = JSON.parse(out.stdout);
      assert.equal(report.interrupted, true);
      assert.equal(report.ended, "interrupted");
      assert.ok(report.seconds < 60, `${report.seconds}`);
      assert.ok(report.messages > 0);
      assert.equal(report.mismatchedBytes, 0);
    } else {
      assert.match(out.stdout, /^result: interrupted/m, out.stdout);
    }
  }
});

Deno.test("load.ts --json prints a report with ok false and the reason when nothing connects", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const { code, report } = await load(["-p", String(port), "-c", "2"]);
  assert.equal(code, 1);
  assert.equal(report.ok, false);
  assert.equal(report.connected, 0);
  assert.equal(report.connectFailures, 2);
  assert.equal(report.ended, "unconnected");
  assert.equal(
    report.reason,
    `cannot connect to 127.0.0.1:${port}: connection refused`,
  );
});

Deno.test("load.ts counts every message it timed: messages, samples and bytes agree", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  for (const c of ["1", "5"]) {
    const { report } = await load(["-p", String(server.port), "-c", c]);
    assert.equal(report.ok, true);
    assert.equal(report.messages, report.latency.samples);
    assert.equal(report.messages * report.size, report.bytesEchoed);
  }
});

Deno.test("load.ts --drain-timeout 0.001 in stream mode never calls a correct server's bytes extra", async () => {
  await using running = new Running("servers/select_echo.ts", [
    "--port",
    "0",
  ], { perms: ["--allow-net=127.0.0.1"] });
  const port = await running.port();
  for (const engine of ["deno", "net"]) {
    const { report } = await load([
      "-p",
      String(port),
      "--mode",
      "stream",
      "-s",
      "1024",
      "-d",
      "0.5",
      "--engine",
      engine,
      "--drain-timeout",
      "0.001",
    ]);
    assert.equal(report.extraBytes, 0, `${engine}: ${report.errors}`);
    assert.equal(report.mismatchedBytes, 0, engine);
  }
});

Deno.test("load.ts's live line fits a 50-column terminal and is cleared in place", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  // script(1) gives the run a terminal 50 columns wide.
  const perms = SCRIPT_PERMISSIONS[LOAD]!.join(" ");
  const command = `stty cols 50 rows 20; exec ${Deno.execPath()} run ` +
    `--quiet ${perms} ${LOAD} -p ${server.port} -c 200 --idle 50 -d 3.2 ` +
    `>/dev/null`;
  const out = await new Deno.Command("script", {
    args: ["-qfec", command, "/dev/null"],
    cwd: ROOT,
    env: { NO_COLOR: "1", TERM: "xterm" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, text);
  const updates = text.split("\r\x1b[K").slice(1);
  assert.ok(updates.length >= 3, JSON.stringify(text));
  for (const update of updates) {
    assert.ok(update.length < 50, JSON.stringify(update));
    assert.equal(update.includes("\n"), false, JSON.stringify(update));
  }
});

Deno.test("load.ts --json rounds its numbers: latencies to the µs", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  const { report } = await load([
    "-p",
    String(server.port),
    "-c",
    "3",
    "-d",
    "0.5",
    "--interval",
    "0.2",
  ]);
  assert.deepEqual(overPrecise(report, 3), []);
  assert.ok(report.latency.p50 > 0);
});

Deno.test("load.ts --interval prints each interval's figures, then the report; the run ends at --duration", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  const out = await runScript(LOAD, [
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "1.25",
    "--interval",
    "0.5",
  ]);
  assert.equal(out.code, 0, out.stderr);
  const lines = out.stdout.split("\n");
  const intervals = lines.filter((l) => /^\[ *[\d.]+- *[\d.]+ s\]/.test(l));
  assert.equal(intervals.length, 3, out.stdout);
  assert.match(intervals[0]!, /^\[ *0\.00- *0\.50 s\]/);
  assert.match(intervals[2]!, /^\[ *1\.00- *1\.25 s\]/);
  for (const l of intervals) {
    assert.match(
      l,
      /[\d,]+ msg\/s .* MB\/s .*p50 [\d.]+ .*p99 [\d.]+ .*2\/2 up.* 0 errors/,
    );
  }
  // The intervals come before the report.
  assert.ok(
    lines.indexOf(intervals[2]!) < lines.findIndex((l) => /^load:/.test(l)),
  );
});

Deno.test("load.ts --json-stream prints one JSON object a line per interval, then the report", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  const events = await jsonStream([
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "1.2",
    "--interval",
    "0.4",
  ], 3);
  let messages = 0;
  for (const e of events.slice(0, 3)) {
    assert.ok(e.data.messages > 0);
    assert.ok(e.data.latency.p99 >= e.data.latency.p50);
    assert.equal(e.data.connected, 2);
    assert.equal(e.data.errors, 0);
    messages += e.data.messages;
  }
  const report = events[3]!.data;
  assert.equal(report.ok, true);
  assert.equal(report.intervals.length, 3);
  assert.ok(Math.abs(report.seconds - 1.2) < 0.1, `${report.seconds}`);
  assert.equal(report.intervals[2].end, 1.2);
  // Messages of the intervals add up to the run's timed messages, at most
  // those in flight at the stop (one a connection) short of the total.
  assert.ok(
    report.messages - messages >= 0 && report.messages - messages <= 2,
    `${report.messages} vs ${messages}`,
  );
});
