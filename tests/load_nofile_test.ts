/**
 * Tests of tools/load.ts and the open-files limit (issue 14 item 5): it
 * raises its own soft limit up to the hard one when `-c + --idle` need it
 * (given `--allow-run=prlimit`), and when that cannot be done says so in one
 * line with how to raise it, instead of failing with `connect EMFILE`. Each
 * run goes under `prlimit --nofile=SOFT:HARD`, so the limits are the test's.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Output, ROOT } from "./_helpers.ts";
import { echoLoop, LOAD, testServer } from "./_load_helpers.ts";

/** Runs load.ts under `prlimit --nofile=LIMITS` with `perms` and `args`. */
async function underLimit(
  limits: string,
  perms: string[],
  args: string[],
): Promise<Output> {
  const out = await new Deno.Command("prlimit", {
    args: [
      `--nofile=${limits}`,
      Deno.execPath(),
      "run",
      "--quiet",
      ...perms,
      LOAD,
      ...args,
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

const NET = "--allow-net=127.0.0.1";

Deno.test("load.ts runs past a low soft open-files limit up to the hard one (Deno raises it)", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  const out = await underLimit("64:4096", [NET], [
    "-p",
    String(server.port),
    "-c",
    "100",
    "--idle",
    "100",
    "-d",
    "0.3",
    "--json",
    "-q",
  ]);
  assert.equal(out.code, 0, out.stderr);
  const report = JSON.parse(out.stdout);
  assert.equal(report.connected, 200);
  assert.equal(report.ok, true);
});

/** The one line of a run the hard limit cannot hold. */
const SHORTAGE =
  /^error: -c 100 \+ --idle 100 need about 232 open files, above (the hard limit of 64|this process's limit \(Deno raises its soft limit to the hard one itself\)): raise the hard limit \(as root: ulimit -Hn 232;/;

Deno.test("load.ts says in one line how to raise a hard open-files limit that is too low", async () => {
  await using server = testServer((conn) => echoLoop(conn));
  // With the limits readable, before the run; without, at the first EMFILE.
  for (
    const [perms, engine] of [
      [[NET, "--allow-run=prlimit"], "deno"],
      [[NET], "deno"],
      [[NET], "net"],
    ] as const
  ) {
    const out = await underLimit("64:64", [...perms], [
      "-p",
      String(server.port),
      "-c",
      "100",
      "--idle",
      "100",
      "--engine",
      engine,
      "-d",
      "0.3",
      "-q",
    ]);
    assert.equal(out.code, 1, out.stdout);
    assert.equal(out.stdout, "");
    const lines = out.stderr.trim().split("\n");
    assert.equal(lines.length, 1, out.stderr);
    assert.match(lines[0]!, SHORTAGE);
    if (perms.length === 2) assert.match(lines[0]!, /hard limit of 64/);
    assert.doesNotMatch(lines[0]!, /EMFILE/);
  }
});

Deno.test("load.ts --udp: its flows past the hard open-files limit, one line; under it, they run", async () => {
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  const serving = (async () => {
    const buf = new Uint8Array(2048);
    try {
      while (true) {
        const [data, addr] = await socket.receive(buf);
        await socket.send(data, addr);
      }
    } catch {
      // closed
    }
  })();
  try {
    const args = [
      "--udp",
      "-p",
      String((socket.addr as Deno.NetAddr).port),
      "-c",
      "100",
      "--count",
      "5",
      "--json",
      "-q",
    ];
    const over = await underLimit("64:64", [NET], args);
    assert.equal(over.code, 1);
    assert.equal(over.stdout, "");
    assert.match(
      over.stderr.trim(),
      /^error: -c 100 flows need about 132 open files, above .*ulimit -Hn 132/,
    );
    const under = await underLimit("64:4096", [NET], args);
    assert.equal(under.code, 0, under.stderr);
    const report = JSON.parse(under.stdout);
    assert.equal(report.flows, 100);
    assert.equal(report.sent, 500);
    assert.ok(report.received > 0);
  } finally {
    socket.close();
    await serving;
  }
});
