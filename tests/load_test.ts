/**
 * Tests of tools/load.ts: it finds no fault in a correct echo server, and it
 * finds the faults of deliberately broken ones (a flipped byte, two
 * connections' data swapped, resets); its histogram's percentiles; its
 * command line.
 *
 * @module
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import net from "node:net";
import { ROOT, Running, runScript } from "./_helpers.ts";
import {
  echoLoop,
  LOAD,
  load,
  readExactly,
  REPORT_FIELDS,
  testServer,
} from "./_load_helpers.ts";

const SERVERS = [
  { script: "bench/_loop_echo.ts", args: ["--port", "0"] },
  { script: "servers/select_echo.ts", args: ["--port", "0"] },
  { script: "servers/completion_echo.ts", args: ["--port", "0"] },
].filter((s) => existsSync(`${ROOT}${s.script}`));

for (const server of SERVERS) {
  for (
    const [mode, engine, extra] of [
      ["pingpong", "deno", ["-c", "20"]],
      ["pingpong", "net", ["-c", "20"]],
      ["stream", "deno", ["-c", "4", "-s", "16384"]],
      ["stream", "net", ["-c", "4", "-s", "1000"]],
    ] as const
  ) {
    Deno.test(`load.ts finds every byte intact through ${server.script} (${mode}, ${engine})`, async () => {
      await using running = new Running(server.script, server.args, {
        perms: ["--allow-net=127.0.0.1"],
      });
      const port = await running.port();
      const { code, report } = await load([
        "-p",
        String(port),
        "--mode",
        mode,
        "--engine",
        engine,
        "-d",
        "0.5",
        ...extra,
      ]);
      assert.equal(report.mismatchedBytes, 0);
      assert.equal(report.missingBytes, 0);
      assert.equal(report.extraBytes, 0);
      assert.equal(report.resets, 0);
      assert.equal(report.engine, engine);
      assert.ok(report.messages > 0, "some messages were echoed");
      assert.equal(report.bytesEchoed, report.bytesSent);
      assert.equal(report.ok, true);
      assert.equal(code, 0);
    });
  }
}

Deno.test("load.ts reports a flipped byte and exits 1", async () => {
  for (const engine of ["deno", "net"]) {
    await using server = testServer((conn, n) =>
      echoLoop(conn, (buf, len, offset) => {
        // Flip byte 100 of the first connection's stream, once.
        if (n === 0 && offset <= 100 && offset + len > 100) {
          buf[100 - offset]! ^= 0x40;
        }
      })
    );
    const { code, report } = await load([
      "-p",
      String(server.port),
      "-c",
      "3",
      "-d",
      "0.3",
      "--engine",
      engine,
    ]);
    assert.equal(report.mismatchedBytes, 1, engine);
    assert.equal(report.ok, false);
    assert.equal(code, 1);
  }
});

Deno.test("load.ts reports two connections' data swapped", async () => {
  // The first two connections each get the other's first message back.
  const first: Uint8Array[] = [];
  let release!: () => void;
  const bothIn = new Promise<void>((resolve) => release = resolve);
  await using server = testServer(async (conn, n) => {
    if (n < 2) {
      first[n] = await readExactly(conn, 64);
      if (first.length === 2 && first[0] && first[1]) release();
      await bothIn;
      await conn.write(first[1 - n]!);
    }
    await echoLoop(conn);
  });
  const { code, report } = await load([
    "-p",
    String(server.port),
    "-c",
    "2",
    "-s",
    "64",
    "-d",
    "0.3",
  ]);
  // Each pattern byte matches by chance with probability 1/256.
  assert.ok(report.mismatchedBytes >= 100, `${report.mismatchedBytes}`);
  assert.equal(report.ok, false);
  assert.equal(code, 1);
  // --allow-errors reports the same and exits 0.
  const allowed = await load([
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "0.3",
    "--allow-errors",
  ]);
  assert.equal(allowed.code, 0);
});

Deno.test("load.ts counts connections the server resets", async () => {
  // Deno.Conn cannot send a reset (no SO_LINGER); node:net's
  // resetAndDestroy() can: each connection is reset at its first bytes.
  const server = net.createServer((socket) => {
    socket.once("data", () => socket.resetAndDestroy());
  });
  await new Promise<void>((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve())
  );
  await using _closer = {
    [Symbol.asyncDispose]: () =>
      new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const port = (server.address() as net.AddressInfo).port;
  for (const engine of ["deno", "net"]) {
    const { code, report } = await load([
      "-p",
      String(port),
      "-c",
      "4",
      "-d",
      "0.5",
      "--engine",
      engine,
    ]);
    assert.equal(
      report.resets + report.closedByServer,
      4,
      JSON.stringify(report),
    );
    assert.ok(report.resets > 0, `${engine}: ${JSON.stringify(report)}`);
    assert.ok(report.missingBytes > 0);
    assert.equal(report.ok, false);
    assert.equal(code, 1);
  }
});

Deno.test("load.ts notices a server that closes idle connections", async () => {
  await using server = testServer(async (conn, n) => {
    if (n >= 2) return; // close idle ones at once (the first two are active)
    await echoLoop(conn);
  });
  const { code, report } = await load([
    "-p",
    String(server.port),
    "-c",
    "2",
    "--idle",
    "3",
    "--ramp",
    "1",
    "-d",
    "0.3",
  ]);
  assert.equal(report.connected, 5);
  assert.equal(report.closedByServer, 3);
  assert.equal(code, 1);
});

Deno.test("load.ts --rate never sends ahead of its schedule", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  const { code, report } = await load([
    "-p",
    String(server.port),
    "-c",
    "2",
    "--rate",
    "50",
    "-d",
    "1",
  ]);
  assert.equal(code, 0);
  assert.equal(report.rate, 50);
  // 2 connections x 50/s x ~1 s, plus the one due at time 0 on each.
  assert.ok(report.messages > 0);
  assert.ok(
    report.messages <= Math.ceil(2 * 50 * report.seconds) + 2,
    `${report.messages} in ${report.seconds} s`,
  );
});

Deno.test("load.ts --connect-rate never connects ahead of its schedule, and times each connect", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  const { code, report } = await load([
    "-p",
    String(server.port),
    "-c",
    "2",
    "--idle",
    "3",
    "--connect-rate",
    "20",
    "-d",
    "0.2",
  ]);
  assert.equal(code, 0);
  assert.equal(report.connectRate, 20);
  // Connect i is due i/20 s after the first: the fifth at 200 ms at the
  // earliest, however fast the machine.
  assert.ok(report.connectMs >= 199, `connects took ${report.connectMs} ms`);
  assert.ok(report.connectsPerSecond <= 26, `${report.connectsPerSecond}/s`);
  assert.equal(report.connect.samples, 5);
  assert.ok(report.connect.max >= report.connect.p50);
});

Deno.test("load.ts --json prints one object with every field", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  const out = await runScript(LOAD, [
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "0.2",
    "--json",
  ]);
  assert.equal(out.code, 0);
  assert.equal(out.stdout.trim().split("\n").length, 1);
  const report = JSON.parse(out.stdout);
  assert.deepEqual(Object.keys(report).sort(), [...REPORT_FIELDS].sort());
  for (const f of ["min", "mean", "p50", "p90", "p99", "p999", "max"]) {
    assert.equal(typeof report.latency[f], "number", f);
    assert.equal(typeof report.connect[f], "number", `connect ${f}`);
  }
  // Each connection's connect phase is timed once.
  assert.equal(report.connect.samples, 2);
  assert.equal(report.transport, "tcp");
  assert.equal(typeof report.cpu.percent, "number");
  // Not a terminal: progress comes as plain lines (0.2 s may print none).
  assert.ok(!out.stderr.includes("\r"));
});

Deno.test("load.ts prints a readable report and nothing more with --quiet", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  const out = await runScript(LOAD, [
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "1.5",
    "--quiet",
  ]);
  assert.equal(out.code, 0);
  assert.equal(out.stderr, "");
  assert.match(out.stdout, /latency ms: p50 [\d.]+ +p90/);
  assert.match(out.stdout, /result: ok/);
  const noisy = await runScript(LOAD, [
    "-p",
    String(server.port),
    "-c",
    "2",
    "-d",
    "1.5",
  ]);
  assert.match(noisy.stderr, /^running 1\.0 s: [\d,]+ msg\/s/m);
});

Deno.test("load.ts --help exits 0; a bad option or value exits 2", async () => {
  const help = await runScript(LOAD, ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--connections N/);
  for (
    const args of [
      ["--bogus"],
      ["--mode", "burst"],
      ["-c", "many"],
      ["--rate", "0"],
      ["--engine", "epoll"],
      ["-c", "0"],
    ]
  ) {
    const out = await runScript(LOAD, args);
    assert.equal(out.code, 2, args.join(" "));
    assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
    assert.match(out.stderr, /^error: /);
  }
});

Deno.test("load.ts exits 1 with one line when nothing listens", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const out = await runScript(LOAD, ["-p", String(port), "-c", "2", "-q"]);
  assert.equal(out.code, 1);
  assert.equal(
    out.stderr.trim(),
    `error: cannot connect to 127.0.0.1:${port}: connection refused`,
  );
});

Deno.test("load.ts --rate counts latency from when each message was due", async () => {
  // The server stalls 300 ms once. Closed loop, one message waits through
  // it; open loop, every message due during the stall does, and shows it.
  let stalled = false;
  await using server = testServer((conn) =>
    echoLoop(conn, async () => {
      if (stalled) return;
      stalled = true;
      // The stall under test, not a wait for an event.
      await new Promise((resolve) => setTimeout(resolve, 300));
    })
  );
  const { code, report } = await load([
    "-p",
    String(server.port),
    "-c",
    "1",
    "--rate",
    "100",
    "-d",
    "1",
  ]);
  assert.equal(code, 0);
  assert.ok(report.latency.max >= 300, `max ${report.latency.max}`);
  // About 30 of about 100 messages were due during the stall.
  assert.ok(report.latency.p90 >= 100, `p90 ${report.latency.p90}`);
});
