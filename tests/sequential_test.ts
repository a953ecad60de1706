import assert from "node:assert/strict";
import { serveSequential } from "../servers/sequential.ts";
import { runTestClient } from "../clients/client.ts";
import { readLine, Running, runScript, writeAll } from "./_helpers.ts";

const encoder = new TextEncoder();

/** A Test Server on a free port that records its transcript and warnings. */
async function recordingServer(
  options: { timeout?: number; deadline?: number } = {},
) {
  const transcript: string[] = [];
  const warnings: string[] = [];
  const waiters: { pattern: RegExp; resolve: () => void }[] = [];
  const note = (list: string[]) => (line: string) => {
    list.push(line);
    for (const w of [...waiters]) {
      if (w.pattern.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  const server = await serveSequential({
    port: 0,
    log: note(transcript),
    warn: note(warnings),
    ...options,
  });
  /** Resolves when a transcript or warning line matches `pattern`. */
  function seen(pattern: RegExp): Promise<void> {
    if ([...transcript, ...warnings].some((l) => pattern.test(l))) {
      return Promise.resolve();
    }
    return new Promise((resolve) => waiters.push({ pattern, resolve }));
  }
  return { server, transcript, warnings, seen };
}

Deno.test("Test Server and Test Client hold the notes' conversation", async () => {
  const { server, transcript, seen } = await recordingServer();
  await using _ = server;
  const clientLines: string[] = [];
  const got = await runTestClient({
    port: server.addr.port,
    log: (l) => clientLines.push(l),
  });
  assert.deepEqual(got, ["Test Server", "Say Goodbye"]);
  assert.deepEqual(clientLines, [
    "Client connecting to: 127.0.0.1",
    "got 'Test Server'",
    "got 'Say Goodbye'",
  ]);
  await seen(/got 'Goodbye'/);
  assert.match(transcript[1]!, /^accepted connection from 127\.0\.0\.1:\d+$/);
  assert.deepEqual(transcript.slice(2, 4), [
    "got 'Test Client'",
    "got 'Goodbye'",
  ]);
});

Deno.test("Test Server and Test Client talk as subprocesses, server --once exits 0", async () => {
  await using server = new Running("servers/sequential.ts", [
    "--port",
    "0",
    "--once",
  ]);
  const port = await server.port();
  const client = await runScript("clients/client.ts", ["--port", String(port)]);
  assert.equal(client.code, 0, client.stderr);
  assert.equal(
    client.stdout,
    "Client connecting to: 127.0.0.1\ngot 'Test Server'\ngot 'Say Goodbye'\n",
  );
  const done = await server.wait();
  assert.equal(done.code, 0, done.stderr);
  const lines = done.stdout.split("\n");
  assert.match(lines[0]!, /^listening on 127\.0\.0\.1:\d+$/);
  assert.match(lines[2]!, /^accepted connection from 127\.0\.0\.1:\d+$/);
  assert.deepEqual(lines.slice(3), ["got 'Test Client'", "got 'Goodbye'"]);
});

Deno.test("Test Server reads a line sent in 1-byte writes", async () => {
  const { server, transcript, seen } = await recordingServer();
  await using _ = server;
  using conn = await Deno.connect({ port: server.addr.port });
  assert.equal(await readLine(conn), "Test Server");
  for (const byte of encoder.encode("Test Client\n")) {
    await writeAll(conn, new Uint8Array([byte]));
  }
  assert.equal(await readLine(conn), "Say Goodbye");
  for (const byte of encoder.encode("Goodbye\n")) {
    await writeAll(conn, new Uint8Array([byte]));
  }
  assert.equal(await readLine(conn), null);
  await seen(/got 'Goodbye'/);
  assert.deepEqual(transcript.filter((l) => l.startsWith("got")), [
    "got 'Test Client'",
    "got 'Goodbye'",
  ]);
});

Deno.test("Test Server keeps the second line when both arrive in one write", async () => {
  const { server, transcript, seen } = await recordingServer();
  await using _ = server;
  using conn = await Deno.connect({ port: server.addr.port });
  assert.equal(await readLine(conn), "Test Server");
  await writeAll(conn, encoder.encode("Test Client\nGoodbye\n"));
  assert.equal(await readLine(conn), "Say Goodbye");
  assert.equal(await readLine(conn), null);
  await seen(/got 'Goodbye'/);
  assert.deepEqual(transcript.filter((l) => l.startsWith("got")), [
    "got 'Test Client'",
    "got 'Goodbye'",
  ]);
});

Deno.test("Test Server closes a connection whose line exceeds 1000 bytes and goes on", async () => {
  const { server, warnings, seen } = await recordingServer();
  await using _ = server;
  {
    using conn = await Deno.connect({ port: server.addr.port });
    assert.equal(await readLine(conn), "Test Server");
    await writeAll(conn, encoder.encode("x".repeat(1001)));
    // The server closes without a reply; our unread data may turn that into
    // a reset, which is fine: either way no second line comes.
    const next = await readLine(conn).catch(() => null);
    assert.equal(next, null);
  }
  await seen(/longer than 1000 bytes/);
  assert.match(warnings[0]!, /^error: 127\.0\.0\.1:\d+ sent a line longer/);
  const got = await runTestClient({ port: server.addr.port, log: () => {} });
  assert.deepEqual(got, ["Test Server", "Say Goodbye"]);
});

Deno.test("Test Server accepts a line of exactly 1000 bytes with its newline", async () => {
  const { server, transcript, seen } = await recordingServer();
  await using _ = server;
  using conn = await Deno.connect({ port: server.addr.port });
  assert.equal(await readLine(conn), "Test Server");
  await writeAll(conn, encoder.encode("y".repeat(999) + "\n"));
  assert.equal(await readLine(conn), "Say Goodbye");
  await writeAll(conn, encoder.encode("Goodbye\n"));
  await seen(/got 'Goodbye'/);
  assert.equal(
    transcript.filter((l) => l.startsWith("got"))[0],
    `got '${"y".repeat(999)}'`,
  );
});

Deno.test("Test Server times out a silent client and serves the next one", async () => {
  const { server, warnings, seen } = await recordingServer({ timeout: 300 });
  await using _ = server;
  using silent = await Deno.connect({ port: server.addr.port });
  assert.equal(await readLine(silent), "Test Server");
  // The next client queues behind the silent one and is served after it.
  const next = runTestClient({
    port: server.addr.port,
    timeout: 10_000,
    log: () => {},
  });
  await seen(/^timeout: /);
  assert.match(
    warnings[0]!,
    /^timeout: 127\.0\.0\.1:\d+: Timed out after 0\.3 s/,
  );
  assert.deepEqual(await next, ["Test Server", "Say Goodbye"]);
  assert.equal(await readLine(silent), null);
});

Deno.test("Test Server stops with exit 0 on SIGTERM and on SIGINT", async () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    await using server = new Running("servers/sequential.ts", ["--port", "0"]);
    await server.port();
    await server.waitFor(/^waiting for connection$/);
    const done = await server.stop(signal);
    assert.equal(done.code, 0, `${signal}: ${done.stderr}`);
    assert.equal(done.stderr, "");
  }
});

Deno.test("Test Server prints an IPv6 address in brackets", async (t) => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
  } catch {
    return void t.step({ name: "::1 unavailable", ignore: true, fn() {} });
  }
  await using server = new Running("servers/sequential.ts", [
    "--hostname",
    "::1",
    "--port",
    "0",
  ]);
  const port = await server.port();
  assert.equal(server.lines[0], `listening on [::1]:${port}`);
  const got = await runScript("clients/client.ts", [
    "--host",
    "::1",
    "--port",
    String(port),
  ]);
  assert.equal(got.code, 0, got.stderr);
  assert.match(got.stdout, /got 'Say Goodbye'/);
});

Deno.test("Test Server that cannot bind says where in one line, exit 1", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const out = await runScript("servers/sequential.ts", [
    "--port",
    String(taken.addr.port),
  ]);
  assert.equal(out.code, 1);
  assert.equal(
    out.stderr,
    `error: Cannot listen on 127.0.0.1:${taken.addr.port}: address already in use\n`,
  );
  assert.equal(out.stdout, "");
});

Deno.test("Test Client against a closed port: one line naming HOST:PORT, exit 1", async () => {
  const free = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = free.addr.port;
  free.close();
  const out = await runScript("clients/client.ts", ["--port", String(port)]);
  assert.equal(out.code, 1);
  assert.equal(
    out.stderr,
    `error: Cannot connect to 127.0.0.1:${port}: connection refused\n`,
  );
});

Deno.test("Test Client with a name that does not resolve: exit 1", async () => {
  const out = await runScript("clients/client.ts", [
    "--host",
    "no-such-host.invalid",
  ]);
  assert.equal(out.code, 1);
  assert.match(
    out.stderr,
    /^error: Cannot resolve address \[no-such-host\.invalid\]: .+\n$/,
  );
  assert.equal(out.stdout, "");
});

Deno.test("Test Client resolves a name through the system resolver", async () => {
  const { server, seen } = await recordingServer();
  await using _ = server;
  const lines: string[] = [];
  await runTestClient({
    host: "localhost",
    port: server.addr.port,
    log: (l) => lines.push(l),
  });
  assert.equal(lines[0], "Client connecting to: localhost");
  await seen(/got 'Goodbye'/);
});

Deno.test("Test Client reports a server that closes before its greeting", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = listener.accept().then((c) => c.close());
  const out = runScript("clients/client.ts", [
    "--port",
    String(listener.addr.port),
  ]);
  await accepting;
  const { code, stderr } = await out;
  assert.equal(code, 1);
  assert.equal(
    stderr,
    `error: 127.0.0.1:${listener.addr.port} closed the connection before a line\n`,
  );
});

Deno.test("Test Server cuts a trickling client at --deadline and serves the next one", async () => {
  // A byte every 100 ms keeps each 300 ms read timeout from expiring; only
  // the bound on the whole conversation ends it.
  const { server, warnings, seen } = await recordingServer({
    timeout: 300,
    deadline: 1_000,
  });
  await using _ = server;
  using trickler = await Deno.connect({ port: server.addr.port });
  assert.equal(await readLine(trickler), "Test Server");
  const trickling = (async () => {
    try {
      for (let i = 0; i < 200; i++) {
        await writeAll(trickler, encoder.encode("x"));
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return "sent everything";
    } catch {
      return "cut";
    }
  })();
  const next = runTestClient({
    port: server.addr.port,
    timeout: 10_000,
    log: () => {},
  });
  assert.deepEqual(await next, ["Test Server", "Say Goodbye"]);
  await seen(/conversation not over/);
  assert.match(
    warnings[0]!,
    /^timeout: 127\.0\.0\.1:\d+: conversation not over after 1 s \(--deadline\); cut$/,
  );
  assert.equal(await trickling, "cut");
});

Deno.test("Test Server logs a client's line with control characters escaped", async () => {
  const { server, transcript, seen } = await recordingServer();
  await using _ = server;
  using conn = await Deno.connect({ port: server.addr.port });
  assert.equal(await readLine(conn), "Test Server");
  await writeAll(
    conn,
    encoder.encode("\x1b]0;owned\x07\x1b[2J\0back\\slash\r\n"),
  );
  assert.equal(await readLine(conn), "Say Goodbye");
  await writeAll(conn, encoder.encode("\u009b31m\u202eevil\n"));
  assert.equal(await readLine(conn), null);
  await seen(/^got '.*evil'$/);
  const got = transcript.filter((l) => l.startsWith("got "));
  assert.deepEqual(got, [
    "got '\\x1b]0;owned\\x07\\x1b[2J\\0back\\\\slash'",
    "got '\\x9b31m\\u{202e}evil'",
  ]);
  // Nothing a terminal would act on reaches the log.
  for (const line of transcript) {
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(line, /[\x00-\x1f\x7f-\x9f\u202e]/);
  }
});

Deno.test("sequential.ts --deadline is parsed as a duration: a bad one is one line, exit 2", async () => {
  const out = await runScript("servers/sequential.ts", ["--deadline", "soon"]);
  assert.equal(out.code, 2);
  assert.match(out.stderr, /^error: Cannot parse --deadline "soon": .+\n$/);
  const help = await runScript("servers/sequential.ts", ["--help"]);
  assert.match(help.stdout, /--deadline SECONDS/);
});

Deno.test("Test Client logs a server's lines with control characters escaped", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    using conn = await listener.accept();
    await writeAll(conn, encoder.encode("\x1b[31mTest Server\n"));
    await readLine(conn);
    await writeAll(conn, encoder.encode("Say\x07 Goodbye\n"));
    await readLine(conn);
  })();
  const log: string[] = [];
  await runTestClient({
    port: listener.addr.port,
    timeout: 10_000,
    log: (line) => log.push(line),
  });
  await serving;
  const got = log.filter((l) => l.startsWith("got "));
  assert.deepEqual(got, [
    "got '\\x1b[31mTest Server'",
    "got 'Say\\x07 Goodbye'",
  ]);
});
