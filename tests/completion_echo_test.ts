/**
 * Tests of servers/completion_echo.ts: the CompletionPort (first in first
 * out, waiters served in order, the concurrency limit, close, abort, the
 * overlapped recv/send), and the echo server on it (integrity over 200
 * connections, 10 MiB, half-close during a write, resets, the cap, the idle
 * timeout, drain on SIGTERM, --threads 2, the command line), all on real
 * sockets.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type Completion,
  type CompletionEchoOptions,
  CompletionEngine,
  CompletionPort,
  PORT_CLOSED,
  serveCompletionEcho,
  THREAD_ENTRY,
} from "../servers/completion_echo.ts";
import { THREAD_ENTRY as SELECT_THREAD_ENTRY } from "../servers/select_echo.ts";
import {
  ECHO_RUNTIME_ENV,
  ECHO_V8_FLAGS,
  EchoCore,
  type EchoServer,
  type Session,
} from "../servers/_echo.ts";
import {
  drainFailures,
  drainStreaming,
  echoInChunks,
  firstDifference,
  pseudoRandom,
  randomBytes,
  readAll,
  ROOT,
  Running,
  runScript,
  SCRIPT_PERMISSIONS,
  waitForStats,
  writeAll,
} from "./_helpers.ts";

const SCRIPT = "servers/completion_echo.ts";

type Op = Completion<string>;

function op(key: string, bytes = 0): Op {
  return { key, operation: "IO_Read_Request", bytes };
}

/** Resolves after the event loop has run pending callbacks once. */
function turn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A completion echo server on a free port that records its log. */
async function server(
  options: CompletionEchoOptions = {},
): Promise<{ server: EchoServer; log: string[] }> {
  const log: string[] = [];
  const s = await serveCompletionEcho({
    port: 0,
    log: (line) => log.push(line),
    ...options,
  });
  return { server: s, log };
}

// ---------------------------------------------------------------------------
// CompletionPort
// ---------------------------------------------------------------------------

Deno.test("CompletionPort hands out completions first in, first out", async () => {
  const port = new CompletionPort<string>(1);
  for (const key of ["a", "b", "c", "d"]) port.post(op(key));
  const seen: string[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await port.get();
    assert.notEqual(c, PORT_CLOSED);
    seen.push((c as Op).key);
    port.done();
  }
  assert.deepEqual(seen, ["a", "b", "c", "d"]);
  assert.equal(port.queued, 0);
  port.close();
});

Deno.test("CompletionPort wakes N waiting workers once each, in the order they asked", async () => {
  const port = new CompletionPort<string>(3);
  const woken: string[] = [];
  const workers = [0, 1, 2].map((i) => {
    const worker = port.worker();
    return worker.get().then((c) => {
      woken.push(`${i}:${(c as Op).key}`);
      return worker;
    });
  });
  await turn();
  assert.equal(port.waiting, 3);
  assert.deepEqual(woken, [], "nobody wakes before a post");
  port.post(op("x"));
  port.post(op("y"));
  port.post(op("z"));
  const handles = await Promise.all(workers);
  assert.deepEqual(woken, ["0:x", "1:y", "2:z"]);
  assert.equal(port.waiting, 0);
  assert.equal(port.running, 3);
  for (const w of handles) w.done();
  assert.equal(port.running, 0);
  port.close();
});

Deno.test("CompletionPort keeps at most `concurrency` completions in progress", async () => {
  const port = new CompletionPort<string>(2);
  for (const key of ["a", "b", "c", "d", "e"]) port.post(op(key));
  const w = [0, 1, 2, 3].map(() => port.worker());
  const got: (string | null)[] = [null, null, null, null];
  const pending = w.map((worker, i) =>
    worker.get().then((c) => got[i] = (c as Op).key)
  );
  await turn();
  assert.deepEqual(got, ["a", "b", null, null], "only two in progress");
  assert.equal(port.running, 2);
  // Worker 0 asks again: its completion is done, and the oldest waiter
  // (worker 2) is served before it.
  const again = w[0]!.get().then((c) => (c as Op).key);
  await turn();
  assert.deepEqual(got, ["a", "b", "c", null]);
  assert.equal(port.running, 2);
  w[1]!.done();
  await Promise.all(pending);
  assert.deepEqual(got, ["a", "b", "c", "d"]);
  w[2]!.done();
  assert.equal(await again, "e");
  assert.equal(port.running, 2);
  assert.equal(port.tryGet(), undefined, "the queue is empty");
  w[0]!.done();
  w[3]!.done();
  assert.equal(port.running, 0);
  assert.throws(() => port.done(), RangeError);
  port.close();
});

Deno.test("CompletionPort.close wakes every waiting worker with PORT_CLOSED", async () => {
  const port = new CompletionPort<string>(4);
  const waiting = [port.get(), port.get(), port.worker().get()];
  await turn();
  assert.equal(port.waiting, 3);
  port.close();
  assert.deepEqual(await Promise.all(waiting), [
    PORT_CLOSED,
    PORT_CLOSED,
    PORT_CLOSED,
  ]);
  assert.equal(await port.get(), PORT_CLOSED, "later calls see it too");
  assert.equal(port.tryGet(), PORT_CLOSED);
  assert.equal(port.post(op("late")), false, "a post after close is dropped");
  assert.equal(port.closed, true);
});

Deno.test("CompletionPort.get rejects on abort and gives up its place", async () => {
  const port = new CompletionPort<string>(1);
  const controller = new AbortController();
  const aborted = port.get(controller.signal);
  const next = port.get();
  await turn();
  assert.equal(port.waiting, 2);
  controller.abort(new Error("stop waiting"));
  await assert.rejects(aborted, /stop waiting/);
  assert.equal(port.waiting, 1);
  port.post(op("kept"));
  assert.equal(((await next) as Op).key, "kept", "the aborted caller got none");
  port.done();
  await assert.rejects(
    port.get(AbortSignal.abort(new Error("early"))),
    /early/,
  );
  assert.equal(port.waiting, 0);
  port.close();
});

Deno.test("CompletionPort checks its arguments", () => {
  assert.throws(() => new CompletionPort(0), RangeError);
  assert.throws(() => new CompletionPort(1.5), RangeError);
  const port = new CompletionPort<string>();
  port.close();
});

Deno.test("PortSocket recv/send post IO_Read_Completed and IO_Write_Completed with the byte counts", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const connecting = Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  using accepted = await listener.accept();
  using client = await connecting;
  const port = new CompletionPort<string>(1);
  const socket = port.associate(accepted, "conn");
  assert.throws(() => port.associate(accepted, "again"), TypeError);
  assert.equal(socket.key, "conn");
  assert.throws(
    () => socket.recv(op("someone else"), new Uint8Array(1)),
    TypeError,
    "a completion of another key",
  );

  const write: Op = { key: "conn", operation: "IO_Write_Completed", bytes: 0 };
  const data = randomBytes(300_000, pseudoRandom(7));
  socket.send(write, data, 200_000);
  const reading = (async () => {
    const got = new Uint8Array(200_000);
    let n = 0;
    while (n < got.length) n += (await client.read(got.subarray(n)))!;
    return got;
  })();
  const sent = await port.get();
  port.done();
  assert.equal(sent, write);
  assert.equal(write.bytes, 200_000, "a partial write is continued");
  assert.equal(write.error, undefined);
  assert.equal(firstDifference(await reading, data.subarray(0, 200_000)), -1);

  const read: Op = { key: "conn", operation: "IO_Read_Completed", bytes: 0 };
  const buffer = new Uint8Array(16);
  socket.recv(read, buffer);
  await writeAll(client, new Uint8Array([1, 2, 3]));
  assert.equal(await port.get(), read);
  port.done();
  assert.equal(read.bytes, 3);
  assert.deepEqual([...buffer.subarray(0, 3)], [1, 2, 3]);

  socket.recv(read, buffer);
  await client.closeWrite();
  assert.equal(await port.get(), read);
  port.done();
  assert.equal(read.bytes, 0, "0 bytes read: the client shut down");
  assert.equal(socket.dissociate(), accepted);
  assert.throws(() => socket.recv(read, buffer), TypeError, "dissociated");
  port.close();
  assert.throws(() => port.associate(accepted, "late"), TypeError, "closed");
});

// ---------------------------------------------------------------------------
// The echo server
// ---------------------------------------------------------------------------

Deno.test("CompletionEchoServer echoes random data sent in random chunks over 200 concurrent connections, 4 workers", async () => {
  const { server: s } = await server({ workers: 4 });
  const port = s.addr.port;
  const results = await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      const next = pseudoRandom(1000 + i);
      const data = randomBytes(1 + (next() % 40_000), next);
      const back = await echoInChunks(port, data, next, 3000);
      return firstDifference(back, data);
    }),
  );
  assert.deepEqual(results.filter((d) => d !== -1), []);
  const stats = await s.close();
  assert.equal(stats.accepted, 200);
  assert.equal(stats.errors, 0);
  assert.equal(stats.active, 0);
});

Deno.test("CompletionEchoServer reuses the probes of closed connections, never one probe for two: churn beside steady clients, every echo intact", async () => {
  // Probes are views of shared slabs, handed to later connections. A probe
  // given to two open connections at once would put one client's bytes into
  // another's echo. Churn: waves of connections that close politely, close
  // without reading their echo, or reset with input unread, while steady
  // clients opened after the first wave (so on reused probes) pingpong
  // messages shorter than a probe and check each echo.
  const { server: s } = await server();
  const port = s.addr.port;
  const churn = async (wave: number) => {
    await Promise.all(Array.from({ length: 30 }, async (_, i) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const message = randomBytes(50, pseudoRandom(wave * 100 + i));
      await writeAll(conn, message);
      if (i % 3 === 0) {
        // Polite: read the echo, then close.
        const back = new Uint8Array(50);
        let got = 0;
        while (got < 50) {
          const n = await conn.read(back.subarray(got));
          if (n === null) break;
          got += n;
        }
        assert.equal(firstDifference(back, message), -1);
      } else if (i % 3 === 1) {
        // More input, unread echo: closing now resets the connection.
        await writeAll(conn, randomBytes(4096, pseudoRandom(i)));
      }
      conn.close();
    }));
  };
  await churn(0);
  await waitForStats(s, (t) => t.active === 0, "the first wave to end");

  let churning = true;
  const steady = Array.from({ length: 20 }, async (_, i) => {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const next = pseudoRandom(7000 + i);
    let rounds = 0;
    for (; churning || rounds < 20; rounds++) {
      const message = randomBytes(1 + (next() % 100), next);
      await writeAll(conn, message);
      const back = new Uint8Array(message.length);
      let got = 0;
      while (got < back.length) {
        const n = await conn.read(back.subarray(got));
        assert.notEqual(n, null, `client ${i}: the server closed`);
        got += n!;
      }
      assert.equal(firstDifference(back, message), -1, `client ${i}`);
    }
    return rounds;
  });
  for (let wave = 1; wave <= 6; wave++) await churn(wave);
  churning = false;
  const rounds = await Promise.all(steady);
  assert.ok(rounds.every((r) => r >= 20), String(rounds));
  const stats = await s.close();
  assert.equal(stats.accepted, 7 * 30 + 20);
  assert.equal(stats.active, 0);
});

Deno.test("CompletionEchoServer streams 10 MiB on one connection", async () => {
  await using s = (await server()).server;
  const data = randomBytes(10 * 1024 * 1024, pseudoRandom(99));
  const back = await echoInChunks(s.addr.port, data, pseudoRandom(5), 65536);
  assert.equal(back.length, data.length);
  assert.equal(firstDifference(back, data), -1);
});

Deno.test("CompletionEchoServer: clients that shut down while their echo is still being written get every byte, then the close", async () => {
  const { server: s } = await server();
  const port = s.addr.port;
  // Each client sends 2 MiB and its FIN at full speed but reads slowly (16
  // KiB a millisecond), so the FIN reaches the server while it still has
  // echo to send. Whether a send is in progress at the moment the FIN is
  // read is up to the kernel's window updates; the CompletionEngine test of
  // a FIN read beside a send makes that case happen every time.
  const results = await Promise.all(
    Array.from({ length: 12 }, async (_, i) => {
      using conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const data = randomBytes(2 * 1024 * 1024, pseudoRandom(99 + i));
      const writing = (async () => {
        await writeAll(conn, data);
        await conn.closeWrite();
      })();
      const back = new Uint8Array(data.length + 1);
      let got = 0;
      for (;;) {
        const n = await conn.read(back.subarray(got, got + 16384));
        if (n === null) break;
        got += n;
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      await writing;
      return got === data.length
        ? firstDifference(back.subarray(0, got), data)
        : -2;
    }),
  );
  assert.deepEqual(results.filter((d) => d !== -1), []);
  const stats = await s.close();
  assert.equal(stats.errors, 0);
  assert.equal(stats.bytesEchoed, 12 * 2 * 1024 * 1024);
});

Deno.test("CompletionEchoServer: a reset mid-stream closes that connection only, logged; the others are served", async () => {
  const { server: s, log } = await server();
  const port = s.addr.port;
  using steady = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(steady, new Uint8Array([1, 2, 3]));
  const three = new Uint8Array(3);
  let got = 0;
  while (got < 3) got += (await steady.read(three.subarray(got)))!;
  assert.deepEqual([...three], [1, 2, 3]);

  // Closing with unread echo in the receive buffer makes the kernel send a
  // reset instead of a FIN.
  const rude = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(rude, randomBytes(1024 * 1024, pseudoRandom(11)));
  rude.close();
  await waitForStats(s, (t) => t.active === 1, "the reset connection to end");

  const data = randomBytes(100_000, pseudoRandom(12));
  const back = await echoInChunks(port, data, pseudoRandom(13), 5000);
  assert.equal(firstDifference(back, data), -1);
  await writeAll(steady, new Uint8Array([4]));
  assert.equal(await steady.read(three), 1);
  assert.equal(three[0], 4);
  steady.close();
  const stats = await s.close();
  assert.equal(stats.accepted, 3);
  assert.equal(stats.errors, 1);
  assert.equal(
    log.filter((l) => /connection 2 from .*(reset|broken pipe)/i.test(l))
      .length,
    1,
  );
});

Deno.test("CompletionEchoServer closes connections past --max-connections, warns once per burst, serves the others", async () => {
  const { server: s, log } = await server({ maxConnections: 2 });
  const port = s.addr.port;
  const one = await Deno.connect({ hostname: "127.0.0.1", port });
  using two = await Deno.connect({ hostname: "127.0.0.1", port });
  for (const c of [one, two]) {
    await writeAll(c, new Uint8Array([9]));
    assert.equal(await c.read(new Uint8Array(1)), 1);
  }
  for (let i = 0; i < 3; i++) {
    using extra = await Deno.connect({ hostname: "127.0.0.1", port });
    const n = await extra.read(new Uint8Array(1)).catch(() => null);
    assert.equal(n, null, "a connection over the cap is closed");
  }
  assert.equal(s.stats().rejected, 3);
  assert.equal(log.filter((l) => l.includes("cap 2 reached")).length, 1);
  one.close();
  await waitForStats(s, (t) => t.active === 1, "a place under the cap");
  using three = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(three, new Uint8Array([7]));
  const b = new Uint8Array(1);
  assert.equal(await three.read(b), 1);
  assert.equal(b[0], 7);
  two.close();
  three.close();
  const stats = await s.close();
  assert.equal(stats.accepted, 3);
  assert.equal(stats.rejected, 3);
});

Deno.test("CompletionEchoServer closes a connection idle past --idle-timeout", async () => {
  const { server: s } = await server({ idleTimeout: 200 });
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: s.addr.port,
  });
  await writeAll(conn, new Uint8Array([5]));
  const b = new Uint8Array(8);
  assert.equal(await conn.read(b), 1);
  const started = performance.now();
  assert.equal(
    await conn.read(b),
    null,
    "the server closed the idle connection",
  );
  assert.ok(performance.now() - started >= 100, "not before the timeout");
  const stats = await s.close();
  assert.equal(stats.idleClosed, 1);
});

Deno.test("CompletionEchoServer: a client that never reads is cut when --grace ends; what it was owed is counted unechoed", async () => {
  const { server: s, log } = await server({ grace: 300 });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: s.addr.port });
  const flood = randomBytes(64 * 1024, pseudoRandom(6));
  let stop = false;
  const writing = (async () => {
    for (let i = 0; !stop && i < 1024; i++) await writeAll(conn, flood);
  })().catch(() => {});
  // The first byte of echo back: the server is serving us. From here on
  // we read nothing, so its writes stall.
  assert.equal(await conn.read(new Uint8Array(1)), 1);
  const final = await s.close();
  assert.ok(
    log.includes("grace period over: closing 1 connections"),
    log.join("\n"),
  );
  // It never reads our FIN, so it is cut whether or not its echo got out
  // (the kernel's buffers may hold all of it); the bytes counted unechoed
  // cover whatever it was owed.
  assert.equal(final.graceClosed, 1);
  assert.ok(
    final.bytesUnechoed >= final.bytesRead - final.bytesEchoed,
    JSON.stringify(final),
  );
  stop = true;
  conn.close();
  await writing;
});

Deno.test("CompletionEchoServer with 2 threads: connections reach both, every byte echoes", async () => {
  const { server: s } = await server({ threads: 2, workers: 2 });
  const port = s.addr.port;
  const results = await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      const next = pseudoRandom(5000 + i);
      const data = randomBytes(1 + (next() % 20_000), next);
      const back = await echoInChunks(port, data, next, 2000);
      return firstDifference(back, data);
    }),
  );
  assert.deepEqual(results.filter((d) => d !== -1), []);
  const stats = await s.close();
  assert.equal(stats.accepted, 200);
  assert.equal(stats.errors, 0);
  assert.equal(stats.perThread?.length, 2);
  const [a, b] = stats.perThread!;
  assert.ok(
    a!.accepted > 0 && b!.accepted > 0,
    `per thread ${a!.accepted}, ${b!.accepted}`,
  );
  assert.equal(a!.accepted + b!.accepted, 200);
  assert.equal(a!.bytesEchoed + b!.bytesEchoed, stats.bytesEchoed);
});

Deno.test("CompletionEchoServer with 2 threads counts --max-connections over both threads", async () => {
  const { server: s } = await server({ threads: 2, maxConnections: 3 });
  const port = s.addr.port;
  const held: Deno.TcpConn[] = [];
  try {
    // Served ones first: each echoes a byte, so it holds its place.
    for (let i = 0; i < 3; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      held.push(c);
      await writeAll(c, new Uint8Array([i]));
      assert.equal(await c.read(new Uint8Array(1)), 1);
    }
    // Whichever thread the kernel hands them to, the rest are over the cap.
    for (let i = 0; i < 4; i++) {
      using extra = await Deno.connect({ hostname: "127.0.0.1", port });
      const n = await extra.read(new Uint8Array(1)).catch(() => null);
      assert.equal(n, null, "a connection over the cap is closed");
    }
  } finally {
    for (const c of held) c.close();
  }
  const stats = await s.close();
  assert.equal(stats.accepted, 3);
  assert.equal(stats.rejected, 4);
});

// ---------------------------------------------------------------------------
// The drain, step by step: drain() at moments no client can time
// ---------------------------------------------------------------------------

/**
 * A {@linkcode CompletionEngine} serving one accepted connection, with its
 * client. The server side's `read` and `write` go through `hooks`, which
 * see each operation's promise and may hand the engine another in its
 * place: so a test can act between a read landing (its promise settling,
 * which posts IO_Read_Completed) and a worker handling it, or choose the
 * order in which completions reach the port.
 */
async function engineSession(hooks: {
  read?: (
    buffer: Uint8Array,
    landed: Promise<number | null>,
  ) => Promise<number | null> | void;
  write?: (written: Promise<number>) => Promise<number> | void;
  /** Sees each log line; with it the core is verbose. */
  log?: (line: string) => void;
}) {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  const conn = await listener.accept();
  const read = conn.read.bind(conn);
  const write = conn.write.bind(conn);
  conn.read = (buffer) => {
    const landed = read(buffer);
    return hooks.read?.(buffer, landed) ?? landed;
  };
  conn.write = (bytes) => {
    const written = write(bytes);
    return hooks.write?.(written) ?? written;
  };
  const log: string[] = [];
  const core = new EchoCore((line) => {
    log.push(line);
    hooks.log?.(line);
  }, hooks.log !== undefined);
  const engine = new CompletionEngine(core, 2);
  const session: Session = {
    id: 1,
    conn,
    remote: "client",
    active: false,
    lastSeen: 0,
  };
  core.sessions.add(session);
  core.stats.active++;
  engine.open(session);
  /** Closes what is left, whatever the test got to. */
  async function finish(): Promise<void> {
    try {
      client.close();
    } catch {
      // Closed by the test.
    }
    for (const open of [...core.sessions]) engine.close(open);
    await engine.stop();
  }
  return { client, core, engine, session, log, finish };
}

/** Reads exactly `n` bytes from `conn`. */
async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(n);
  for (let got = 0; got < n;) {
    const r = await conn.read(bytes.subarray(got));
    assert.notEqual(r, null, `EOF after ${got} of ${n} bytes`);
    got += r!;
  }
  return bytes;
}

Deno.test("CompletionEngine.drain() after a read has landed, before a worker handles it: those 16 KiB are echoed, then FIN", async () => {
  let trapped = false;
  const s = await engineSession({
    read(buffer, landed) {
      // The first pooled read: once it lands, the port's reaction posts its
      // IO_Read_Completed and wakes a worker; drain() runs in between.
      if (buffer.length <= 128 || trapped) return;
      trapped = true;
      landed.then(() => queueMicrotask(() => s.engine.drain()));
    },
  });
  try {
    // A full probe: the next read goes into a pooled 16 KiB buffer.
    const probe = randomBytes(128, pseudoRandom(31));
    await writeAll(s.client, probe);
    assert.deepEqual(await readExactly(s.client, 128), probe);
    await turn();
    const data = randomBytes(16 * 1024, pseudoRandom(32));
    await writeAll(s.client, data);
    const back = await readAll(s.client);
    assert.ok(trapped, "the drain ran between the read and its handling");
    assert.equal(
      back.length,
      data.length,
      `${data.length - back.length} bytes read and never echoed before FIN`,
    );
    assert.equal(firstDifference(back, data), -1);
    s.client.close();
    await s.core.whenEmpty();
    assert.equal(s.core.stats.bytesRead, 128 + data.length);
    assert.equal(s.core.stats.bytesEchoed, 128 + data.length);
    assert.equal(s.core.stats.errors, 0, s.log.join("\n"));
  } finally {
    await s.finish();
  }
});

Deno.test("CompletionEngine: a read that lands while the drain's last echo is written is echoed too, even when the write's completion is handled first; then FIN", async () => {
  // Held back, so that both completions reach the port in one turn, the
  // write's first: its handler is where the drain sends FIN.
  let hold = false;
  let releaseWrite!: () => void;
  let releaseRead!: () => void;
  const heldWrite = Promise.withResolvers<number>();
  const heldRead = Promise.withResolvers<number | null>();
  const read = Promise.withResolvers<number>(); // the held read's count
  let written: Promise<number> | undefined;
  let reading: Promise<number | null> | undefined;
  const bothHeld = Promise.withResolvers<void>(); // written and reading set
  const s = await engineSession({
    // The first write and the first read issued once `hold` is set: an
    // echo, and the read the engine issues beside it.
    write(real) {
      if (!hold || written !== undefined) return;
      written = real;
      releaseWrite = () => real.then(heldWrite.resolve, heldWrite.reject);
      if (reading !== undefined) bothHeld.resolve();
      return heldWrite.promise;
    },
    read(_buffer, landed) {
      if (!hold || reading !== undefined) return;
      reading = landed;
      landed.then((n) => read.resolve(n ?? 0));
      releaseRead = () => landed.then(heldRead.resolve, heldRead.reject);
      if (written !== undefined) bothHeld.resolve();
      return heldRead.promise;
    },
  });
  try {
    const probe = randomBytes(128, pseudoRandom(41));
    await writeAll(s.client, probe);
    assert.deepEqual(await readExactly(s.client, 128), probe);
    await turn();
    hold = true;
    // Its echo is written (and held) while the next read waits.
    const stream = randomBytes(32 * 1024, pseudoRandom(42));
    await writeAll(s.client, stream.subarray(0, 16 * 1024));
    await bothHeld.promise; // the write and the read beside it
    s.engine.drain();
    // Cut now, it would leave that write's bytes unechoed.
    const owed = s.engine.held(s.session);
    assert.ok(owed > 0);
    await writeAll(s.client, stream.subarray(16 * 1024));
    await written;
    const landed = await read.promise;
    assert.ok(landed > 0);
    releaseWrite();
    releaseRead();
    const back = await readAll(s.client);
    const expected = stream.subarray(0, owed + landed);
    assert.equal(
      back.length,
      expected.length,
      `${expected.length - back.length} bytes read and never echoed before FIN`,
    );
    assert.equal(firstDifference(back, expected), -1);
    s.client.close();
    await s.core.whenEmpty();
    // What landed after the stop is echoed but not counted as owed.
    assert.equal(s.core.stats.bytesRead, 128 + owed);
    assert.equal(s.core.stats.bytesEchoed, 128 + expected.length);
    assert.equal(s.core.stats.errors, 0, s.log.join("\n"));
  } finally {
    await s.finish();
  }
});

Deno.test("CompletionEngine: a FIN read while the echo's send is in progress shuts the receive side only; the send completes, every byte comes back, then the close", async () => {
  // The race of the shutdown rule, decided: after a read of a probe or
  // more the engine sends the echo and reads on beside it, so the client's
  // FIN can be read while that send is in progress. Whether it is depends
  // on which of the two completes first; here the send's completion waits
  // until the FIN's read has been handled, so it always is.
  let hold = false;
  const handled = Promise.withResolvers<void>(); // the FIN's read handled
  let openAtRule: number | undefined;
  const s = await engineSession({
    write(real) {
      if (!hold) return;
      return handled.promise.then(() => real);
    },
    read(_buffer, landed) {
      if (!hold) return;
      // Data here means the write came in two reads: the second is held
      // behind the send, so no FIN read can run beside it. Let it go; the
      // assertions below say what happened.
      landed.then((n) => n !== null && handled.resolve(), () => {});
    },
    log(line) {
      if (!/shut down during a send/.test(line)) return;
      openAtRule = s.core.sessions.size;
      handled.resolve();
    },
  });
  try {
    // A full probe: the next read goes into a pooled 16 KiB buffer.
    const probe = randomBytes(128, pseudoRandom(51));
    await writeAll(s.client, probe);
    assert.deepEqual(await readExactly(s.client, 128), probe);
    await turn();
    hold = true;
    // One write, less than the pooled buffer: on loopback it lands whole in
    // one read, and the FIN after it is the next read's, beside the send.
    const data = randomBytes(4096, pseudoRandom(52));
    await writeAll(s.client, data);
    await s.client.closeWrite();
    const back = await readAll(s.client);
    assert.equal(openAtRule, 1, `the rule's line, while open: ${s.log}`);
    assert.equal(back.length, data.length);
    assert.equal(firstDifference(back, data), -1);
    await s.core.whenEmpty();
    assert.equal(s.core.stats.bytesEchoed, 128 + data.length);
    assert.equal(s.core.stats.errors, 0, s.log.join("\n"));
  } finally {
    await s.finish();
  }
});

Deno.test("completion_echo.ts on SIGTERM stops accepting, writes back what it read, prints stats, exits 0", async () => {
  await using proc = new Running(SCRIPT, ["--port", "0", "--workers", "3"]);
  const port = await proc.port();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const data = randomBytes(2 * 1024 * 1024, pseudoRandom(21));
  const writing = writeAll(conn, data).catch(() => {});
  // Once the first echo is back the server is busy with this connection.
  const first = new Uint8Array(1);
  assert.equal(await conn.read(first), 1);
  proc.child.kill("SIGTERM");
  const rest = await readAll(conn);
  await writing;
  const back = new Uint8Array(1 + rest.length);
  back.set(first);
  back.set(rest, 1);
  assert.ok(back.length >= 1 && back.length <= data.length);
  assert.equal(
    firstDifference(back, data.subarray(0, back.length)),
    -1,
    "what came back is a prefix of what was sent",
  );
  // The server waits for this close (a lingering close) before its own.
  conn.close();
  const out = await proc.wait();
  assert.equal(out.code, 0, out.stderr);
  assert.match(
    out.stdout,
    new RegExp(`stats: 1 connections served.* ${back.length} bytes echoed`),
  );
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }),
    Deno.errors.ConnectionRefused,
  );
});

Deno.test("completion_echo.ts on SIGTERM with 300 streaming connections: every byte read before the stop comes back before FIN, none cut by --grace", async () => {
  // Reads whose completions wait in the port at the stop are the case
  // that lost 16 KiB each; input after the stop must drain fast.
  const report = await drainStreaming(SCRIPT, ["--grace", "20"], {
    connections: 300,
  });
  assert.deepEqual(drainFailures(report, 300), []);
});

Deno.test("completion_echo.ts --threads 2 serves from both threads; SIGTERM stops both and prints per-thread stats", async () => {
  await using proc = new Running(SCRIPT, ["--port", "0", "--threads", "2"], {
    perms: ["--allow-net=127.0.0.1", "--allow-read=."],
  });
  const port = await proc.port();
  const backs = await Promise.all(
    Array.from({ length: 40 }, async (_, i) => {
      const data = randomBytes(5000, pseudoRandom(700 + i));
      const back = await echoInChunks(port, data, pseudoRandom(i + 1), 700);
      return firstDifference(back, data);
    }),
  );
  assert.deepEqual(backs.filter((d) => d !== -1), []);
  const out = await proc.stop("SIGTERM");
  assert.equal(out.code, 0, out.stderr);
  const match = out.stdout.match(
    /stats: 40 connections served.*; per thread: (\d+), (\d+) connections/,
  );
  assert.ok(match, out.stdout);
  assert.equal(Number(match[1]) + Number(match[2]), 40);
});

for (
  const [task, script, entry] of [
    ["completion-echo", SCRIPT, THREAD_ENTRY],
    ["select-echo", "servers/select_echo.ts", SELECT_THREAD_ENTRY],
  ] as const
) {
  Deno.test(`deno task ${task}'s --allow-read names exactly the modules a --threads Worker loads (deno info), and --threads 2 serves under it`, async () => {
    const info = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", script],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(info.success, new TextDecoder().decode(info.stderr));
    const graph = JSON.parse(new TextDecoder().decode(info.stdout)) as {
      modules: { specifier: string }[];
    };
    const root = new URL(`file://${ROOT}`);
    const loaded = graph.modules.map((m) => m.specifier)
      .filter((s) => s.startsWith(root.href))
      .map((s) => s.slice(root.href.length)).sort();
    const listed = entry.modules
      .map((m) => new URL(m, entry.url).href.slice(root.href.length))
      .sort();
    assert.deepEqual(listed, loaded);
    const line: string = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`))
      .tasks[task];
    const read = line.match(/ --allow-read=(\S+) /);
    assert.ok(read, line);
    assert.deepEqual(read[1]!.split(",").sort(), loaded);
    // The task's own permissions, and --threads 2 on top.
    const perms = line.split(" ").filter((a) => a.startsWith("--allow-"));
    await using proc = new Running(script, ["--port", "0", "--threads", "2"], {
      perms,
      env: ECHO_RUNTIME_ENV,
    });
    const port = await proc.port();
    const backs = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const data = randomBytes(20_000, pseudoRandom(31 + i));
        const back = await echoInChunks(port, data, pseudoRandom(60 + i), 999);
        return firstDifference(back, data);
      }),
    );
    assert.deepEqual(backs.filter((d) => d !== -1), []);
    const out = await proc.stop("SIGTERM");
    assert.equal(out.code, 0, out.stderr);
    const match = out.stdout.match(
      /stats: 20 connections served.*; per thread: (\d+), (\d+) connections/,
    );
    assert.ok(match, out.stdout);
  });
}

Deno.test("completion_echo.ts --threads 2 without read access is one line, exit 1", async () => {
  const out = await runScript(SCRIPT, ["--port", "0", "--threads", "2"]);
  assert.equal(out.code, 1);
  assert.match(out.stderr, /^error: --threads 2 .*--allow-read=/);
  assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
});

Deno.test("completion_echo.ts runs as its help says to for many connections: 200 connections echo, stats on SIGTERM", async () => {
  const help = await runScript(SCRIPT, ["--help"]);
  const line = help.stdout.split("\n").find((l) => l.includes("deno run --v8"));
  assert.ok(line, help.stdout);
  assert.ok(line.includes(`${ECHO_V8_FLAGS} --allow-net ${SCRIPT}`), line);
  for (const [name, value] of Object.entries(ECHO_RUNTIME_ENV)) {
    assert.ok(line.includes(`${name}=${value} deno run`), line);
  }
  await using proc = new Running(
    SCRIPT,
    ["--port", "0"],
    {
      perms: [ECHO_V8_FLAGS, ...SCRIPT_PERMISSIONS[SCRIPT]!],
      env: ECHO_RUNTIME_ENV,
    },
  );
  const port = await proc.port();
  const results = await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      const next = pseudoRandom(500 + i);
      const data = randomBytes(1 + (next() % 5000), next);
      const back = await echoInChunks(port, data, next, 700);
      return firstDifference(back, data);
    }),
  );
  assert.deepEqual(results.filter((d) => d !== -1), []);
  const out = await proc.stop("SIGTERM");
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /stats: 200 connections served/);
});

Deno.test("completion_echo.ts --help exits 0; a bad option is one line, exit 2", async () => {
  const help = await runScript(SCRIPT, ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--workers N/);
  assert.match(help.stdout, /--threads T/);
  for (
    const args of [["--workers", "0"], ["--threads", "x"], ["--nope"]]
  ) {
    const bad = await runScript(SCRIPT, args);
    assert.equal(bad.code, 2, args.join(" "));
    assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
    assert.match(bad.stderr, /^error: /);
  }
});

Deno.test("deno task select-echo and completion-echo run the servers with the runtime settings the help and the bench use", () => {
  const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  for (
    const [task, script] of [
      ["select-echo", "servers/select_echo.ts"],
      ["completion-echo", "servers/completion_echo.ts"],
    ] as const
  ) {
    const line: string = config.tasks[task];
    assert.ok(line, task);
    for (const [name, value] of Object.entries(ECHO_RUNTIME_ENV)) {
      assert.ok(line.startsWith(`${name}=${value} deno run `), line);
    }
    assert.ok(line.includes(` ${ECHO_V8_FLAGS} `), line);
    assert.ok(line.includes(" --allow-net=127.0.0.1,[::1] "), line);
    assert.ok(line.endsWith(` ${script}`), line);
  }
});
