/**
 * Tests of the accept loop every server shares: a connection that is gone
 * before the server accepts it (reset in the listen backlog; Deno's accept
 * then fails with ENOTCONN) costs that connection only, never the listener.
 * Real sockets on 127.0.0.1: the resets come from `node:net`'s
 * `resetAndDestroy` (SO_LINGER 0).
 *
 * @module
 */

import assert from "node:assert/strict";
import { serveSelectEcho } from "../servers/select_echo.ts";
import { serveCompletionEcho } from "../servers/completion_echo.ts";
import { serveSequential } from "../servers/sequential.ts";
import type { EchoServer } from "../servers/_echo.ts";
import { runTestClient } from "../clients/client.ts";
import { readLine, resetBurst, ROOT, Running, writeAll } from "./_helpers.ts";

const RESETS = 20;

/**
 * Runs {@linkcode resetBurst} in a child process and blocks this process's
 * event loop until it is done: an in-process server cannot accept any of
 * them before they are reset, so every one fails at accept.
 */
function resetBurstBlocking(port: number, count: number): void {
  const out = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-net=127.0.0.1",
      "tests/_reset_burst.ts",
      String(port),
      String(count),
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).outputSync();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

/** Sends a line on a new connection and returns the echo and its time. */
async function echoOnce(port: number): Promise<{ line: string; ms: number }> {
  const start = performance.now();
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(conn, new TextEncoder().encode("after the burst\n"));
  const line = await readLine(conn);
  return { line: line ?? "(EOF)", ms: performance.now() - start };
}

for (
  const [name, serve] of [
    [
      "SelectEchoServer",
      (log: (l: string) => void) => serveSelectEcho({ port: 0, log }),
    ],
    [
      "CompletionEchoServer",
      (log: (l: string) => void) => serveCompletionEcho({ port: 0, log }),
    ],
  ] as const
) {
  Deno.test(`${name} goes on accepting at once after a burst of connections reset before accept`, async () => {
    const log: string[] = [];
    await using server: EchoServer = await serve((line) => log.push(line));
    resetBurstBlocking(server.addr.port, RESETS);
    const echo = await echoOnce(server.addr.port);
    assert.equal(echo.line, "after the burst");
    // With a back-off per reset connection (100 ms doubling to 5 s) this
    // took 21-26 s after 10 resets.
    assert.ok(echo.ms < 3_000, `echoed after ${echo.ms} ms`);
    const stats = server.stats();
    // Each connection was either accepted or lost at accept; never retried.
    assert.equal(stats.accepted + stats.acceptAborted, RESETS + 1);
    assert.ok(stats.acceptAborted >= 1, JSON.stringify(stats));
    assert.equal(stats.acceptErrors, 0, "no resource error, no back-off");
    // Logged once per burst: the first one, then a count at the next accept.
    const lines = log.filter((l) =>
      /before it was accepted|before they were accepted/.test(l)
    );
    assert.ok(lines.length >= 1 && lines.length <= 2, log.join("\n"));
    assert.ok(!log.some((l) => /retry in/.test(l)), log.join("\n"));
  });
}

Deno.test("completion_echo.ts --threads 2 goes on accepting at once after a burst of connections reset before accept", async () => {
  await using proc = new Running("servers/completion_echo.ts", [
    "--port",
    "0",
    "--threads",
    "2",
  ], { perms: ["--allow-net=127.0.0.1", "--allow-read"] });
  const port = await proc.port();
  await resetBurst(port, 100);
  const echo = await echoOnce(port);
  assert.equal(echo.line, "after the burst");
  assert.ok(echo.ms < 3_000, `echoed after ${echo.ms} ms`);
  const out = await proc.stop("SIGTERM");
  assert.equal(out.code, 0, out.stderr);
  assert.doesNotMatch(out.stderr, /retry in/);
});

Deno.test("Test Server survives a queued client that resets before it is accepted", async () => {
  const warnings: string[] = [];
  await using server = await serveSequential({
    port: 0,
    log: () => {},
    warn: (line) => warnings.push(line),
  });
  // Client A holds the one-at-a-time server while B connects and resets.
  using a = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  assert.equal(await readLine(a), "Test Server");
  await resetBurst(server.addr.port, 3);
  await writeAll(a, new TextEncoder().encode("one\ntwo\n"));
  assert.equal(await readLine(a), "Say Goodbye");
  assert.equal(await readLine(a), null);
  // The next client is served as if nothing happened.
  assert.deepEqual(
    await runTestClient({
      port: server.addr.port,
      timeout: 10_000,
      log: () => {},
    }),
    ["Test Server", "Say Goodbye"],
  );
  assert.ok(
    warnings.some((l) => /before it was accepted/.test(l)),
    warnings.join("\n"),
  );
});
