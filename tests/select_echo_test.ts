/**
 * Tests of servers/select_echo.ts: the Selector's batches and its armed
 * operation count under 1,000 idle connections, and the echo server's
 * integrity, backpressure, half-close, resets, limits, drain on SIGTERM and
 * command line, all on real sockets.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  AdaptiveSize,
  DEFAULT_MAX_BUFFER_SIZE,
  type SelectEchoOptions,
  type SelectionKey,
  Selector,
  serveSelectEcho,
  sizeTable,
} from "../servers/select_echo.ts";
import type { EchoServer, EchoStats } from "../servers/_echo.ts";
import {
  drainFailures,
  drainStreaming,
  echoInChunks,
  firstDifference,
  pseudoRandom,
  randomBytes,
  readAll,
  Running,
  runScript,
  waitForStats,
  waitUntil,
  writeAll,
} from "./_helpers.ts";

const SCRIPT = "servers/select_echo.ts";

/** A select echo server on a free port that records its log. */
async function server(
  options: SelectEchoOptions = {},
): Promise<{ server: EchoServer; log: string[]; stats: () => EchoStats }> {
  const log: string[] = [];
  const s = await serveSelectEcho({
    port: 0,
    log: (line) => log.push(line),
    ...options,
  });
  return { server: s, log, stats: () => s.stats() };
}

/** Sends one byte and checks that it comes back. */
async function ping(conn: Deno.Conn, byte: number): Promise<void> {
  await writeAll(conn, new Uint8Array([byte]));
  const one = new Uint8Array(1);
  assert.equal(await conn.read(one), 1);
  assert.equal(one[0], byte);
}

// ---------------------------------------------------------------------------
// Selector
// ---------------------------------------------------------------------------

/** `n` connected pairs on a listener of its own; closed on dispose. */
async function pairs(n: number): Promise<
  { clients: Deno.TcpConn[]; servers: Deno.TcpConn[] } & Disposable
> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const clients: Deno.TcpConn[] = [];
  const servers: Deno.TcpConn[] = [];
  try {
    // A few at a time: the accept order then matches the connect order.
    for (let i = 0; i < n; i += 50) {
      const batch = Math.min(50, n - i);
      const connecting = Array.from(
        { length: batch },
        () => Deno.connect({ port }),
      );
      const accepted: Deno.TcpConn[] = [];
      for (let j = 0; j < batch; j++) accepted.push(await listener.accept());
      const connected = await Promise.all(connecting);
      // Pair them by address, whatever the order.
      const byPort = new Map(
        accepted.map((c) => [(c.remoteAddr as Deno.NetAddr).port, c]),
      );
      for (const c of connected) {
        clients.push(c);
        servers.push(byPort.get((c.localAddr as Deno.NetAddr).port)!);
      }
    }
  } finally {
    listener.close();
  }
  return {
    clients,
    servers,
    [Symbol.dispose]() {
      for (const c of [...clients, ...servers]) {
        try {
          c.close();
        } catch {
          // closed by the test
        }
      }
    },
  };
}

Deno.test("Selector reports the connections whose read or write finished, each once per batch", async () => {
  using p = await pairs(3);
  using selector = new Selector<number>();
  const buffers = [0, 1, 2].map(() => new Uint8Array(64));
  const keys = p.servers.map((conn, i) => selector.register(conn, i));
  assert.equal(selector.registered, 3);
  for (const [i, key] of keys.entries()) {
    assert.equal(key.setRead(buffers[i]!), true);
    // FD_SET twice is one armed read.
    assert.equal(key.setRead(buffers[i]!), false);
    assert.equal(key.readArmed, true);
  }
  assert.equal(selector.armedReads, 3);
  assert.equal(selector.armedWrites, 0);

  await writeAll(p.clients[1]!, new Uint8Array([7, 8, 9]));
  let batch = await selector.select();
  assert.deepEqual(batch.map((k) => k.attachment), [1]);
  const one = batch[0]!;
  assert.equal(one.readable, true);
  assert.equal(one.writable, false);
  assert.equal(one.bytesRead, 3);
  assert.equal(one.readError, undefined);
  assert.equal(one.readArmed, false);
  assert.deepEqual([...buffers[1]!.subarray(0, 3)], [7, 8, 9]);
  assert.equal(selector.armedReads, 2);

  // Reads and a write that finish about together: each key once, with both
  // reports when both landed before the batch was taken.
  assert.equal(keys[1]!.setWrite(buffers[1]!.subarray(0, 3)), true);
  assert.equal(keys[1]!.setWrite(new Uint8Array([1])), false);
  await writeAll(p.clients[0]!, new Uint8Array([1]));
  await writeAll(p.clients[2]!, new Uint8Array([2, 2]));
  const seen = new Map<number, string[]>();
  while ([...seen.values()].flat().length < 3) {
    batch = await selector.select();
    const ids = batch.map((k) => k.attachment);
    assert.equal(new Set(ids).size, ids.length, `duplicates in ${ids}`);
    for (const key of batch) {
      const list = seen.get(key.attachment) ?? [];
      if (key.readable) list.push(`read ${key.bytesRead}`);
      if (key.writable) list.push(`wrote ${key.bytesWritten}`);
      seen.set(key.attachment, list);
    }
  }
  assert.deepEqual(seen.get(0), ["read 1"]);
  assert.deepEqual(seen.get(1), ["wrote 3"]);
  assert.deepEqual(seen.get(2), ["read 2"]);
  const echoed = new Uint8Array(3);
  assert.equal(await p.clients[1]!.read(echoed), 3);
  assert.deepEqual([...echoed], [7, 8, 9]);
  assert.equal(selector.armed, 0);

  // The peer's FIN reports as a read of null; a reset as a read error.
  keys[2]!.setRead(buffers[2]!);
  await p.clients[2]!.closeWrite();
  batch = await selector.select();
  assert.equal(batch.length, 1);
  assert.equal(batch[0]!.attachment, 2);
  assert.equal(batch[0]!.bytesRead, null);

  // A cancelled key is never reported again.
  keys[0]!.setRead(buffers[0]!);
  keys[0]!.cancel();
  assert.equal(selector.registered, 2);
  await writeAll(p.clients[0]!, new Uint8Array([5]));
  await waitUntil(() => selector.armedReads === 0, "the cancelled read");
  keys[1]!.setRead(buffers[1]!);
  await writeAll(p.clients[1]!, new Uint8Array([6]));
  batch = await selector.select();
  assert.deepEqual(batch.map((k) => k.attachment), [1]);
});

Deno.test("Selector: one select() at a time; wakeup and close end a wait with an empty batch", async () => {
  const selector = new Selector();
  const waiting = selector.select();
  await assert.rejects(() => selector.select(), TypeError);
  selector.wakeup();
  assert.deepEqual(await waiting, []);
  const again = selector.select();
  selector.close();
  assert.deepEqual(await again, []);
  assert.deepEqual(await selector.select(), []);
  using p = await pairs(1);
  assert.throws(() => selector.register(p.servers[0]!, undefined), TypeError);
  const other = new Selector();
  const key = other.register(p.servers[0]!, undefined);
  assert.throws(() => key.setRead(new Uint8Array(0)), RangeError);
  assert.throws(() => key.setWrite(new Uint8Array(0)), RangeError);
  other.close();
});

Deno.test("Selector with 1,000 idle connections: 10,000 events never arm more than one read and one write per connection, heap stays bounded", async () => {
  const IDLE = 1_000;
  const ACTIVE = 10;
  const EVENTS = 10_000;
  using idle = await pairs(IDLE);
  using active = await pairs(ACTIVE);
  using selector = new Selector<{ buffer: Uint8Array; active: boolean }>();
  const idleKeys: SelectionKey<{ buffer: Uint8Array; active: boolean }>[] = [];
  for (const conn of idle.servers) {
    const key = selector.register(conn, {
      buffer: new Uint8Array(16),
      active: false,
    });
    key.setRead(key.attachment.buffer);
    idleKeys.push(key);
  }
  const activeKeys: SelectionKey<{ buffer: Uint8Array; active: boolean }>[] =
    [];
  for (const conn of active.servers) {
    const key = selector.register(conn, {
      buffer: new Uint8Array(64),
      active: true,
    });
    key.setRead(key.attachment.buffer);
    activeKeys.push(key);
  }
  const registered = IDLE + ACTIVE;
  assert.equal(selector.registered, registered);
  assert.equal(selector.armedReads, registered);

  // Each active client sends 32 bytes and waits for their echo, until told
  // to stop; the loop below is the echo server.
  let stop = false;
  const message = new Uint8Array(32).fill(42);
  const clients = active.clients.map(async (conn) => {
    const back = new Uint8Array(32);
    while (!stop) {
      await writeAll(conn, message);
      let got = 0;
      while (got < 32) {
        const n = await conn.read(back.subarray(got));
        if (n === null) return;
        got += n;
      }
      assert.deepEqual(back, message);
    }
  });

  let events = 0;
  let maxReads = 0;
  let maxWrites = 0;
  let heapAtWarm = 0;
  while (events < EVENTS) {
    const batch = await selector.select();
    for (const key of batch) {
      assert.equal(key.attachment.active, true, "an idle key reported");
      const buf = key.attachment.buffer;
      if (key.readable) {
        events++;
        assert.equal(key.readError, undefined);
        const n = key.bytesRead!;
        assert.ok(n > 0);
        // Echo what came; read again once it has gone out.
        assert.equal(key.setWrite(buf.subarray(0, n)), true);
      }
      if (key.writable) {
        events++;
        assert.equal(key.writeError, undefined);
        assert.equal(key.bytesWritten > 0, true);
        assert.equal(key.setRead(buf), true);
      }
    }
    maxReads = Math.max(maxReads, selector.armedReads);
    maxWrites = Math.max(maxWrites, selector.armedWrites);
    // Asking again for an idle connection's read arms nothing more.
    const before = selector.armedReads;
    const idleKey = idleKeys[events % IDLE]!;
    assert.equal(idleKey.setRead(idleKey.attachment.buffer), false);
    assert.equal(selector.armedReads, before);
    if (heapAtWarm === 0 && events >= 1_000) {
      heapAtWarm = Deno.memoryUsage().heapUsed;
    }
  }
  const heapAtEnd = Deno.memoryUsage().heapUsed;
  stop = true;
  // Let each client's last message finish, then close them.
  while (true) {
    const pendingWrite = activeKeys.some((k) => k.writeArmed);
    if (!pendingWrite && selector.armedReads === registered) break;
    const batch = await selector.select();
    for (const key of batch) {
      if (key.readable && key.bytesRead) {
        key.setWrite(key.attachment.buffer.subarray(0, key.bytesRead));
      }
      if (key.writable) key.setRead(key.attachment.buffer);
    }
  }
  for (const c of active.clients) c.closeWrite();
  await Promise.all(clients);

  assert.ok(maxReads <= registered, `armed reads reached ${maxReads}`);
  assert.ok(maxWrites <= registered, `armed writes reached ${maxWrites}`);
  assert.ok(maxWrites <= ACTIVE, `idle keys never write: ${maxWrites}`);
  assert.ok(maxReads >= IDLE, `the idle reads stayed armed: ${maxReads}`);
  // Racing every pending read per event keeps a reaction per race on each
  // idle read: about 1,000 per event, hundreds of MiB over 9,000 events.
  // Without that leak the heap moves only by garbage not yet collected.
  const growth = heapAtEnd - heapAtWarm;
  assert.ok(
    growth < 32 * 1024 * 1024,
    `heap grew by ${(growth / 1048576).toFixed(1)} MiB over ${
      EVENTS - 1_000
    } events`,
  );
});

// ---------------------------------------------------------------------------
// The echo server
// ---------------------------------------------------------------------------

Deno.test("SelectEchoServer echoes random data sent in random chunks over 200 concurrent connections", async () => {
  const { server: s, stats } = await server();
  await using _ = s;
  const seed = 0x5e1ec7;
  const next = pseudoRandom(seed);
  const payloads = Array.from(
    { length: 200 },
    () => randomBytes(1 + (next() % 48_000), next),
  );
  const echoed = await Promise.all(
    payloads.map((data, i) =>
      echoInChunks(s.addr.port, data, pseudoRandom(seed + i + 1), 3000)
    ),
  );
  for (const [i, data] of payloads.entries()) {
    assert.equal(
      firstDifference(echoed[i]!, data),
      -1,
      `connection ${i} (seed ${seed})`,
    );
  }
  const total = payloads.reduce((sum, p) => sum + p.length, 0);
  await waitForStats(s, (t) => t.active === 0, "every connection closed");
  assert.equal(stats().bytesEchoed, total);
  assert.equal(stats().accepted, 200);
  assert.equal(stats().errors, 0);
  assert.equal(stats().bytesHeld, 0);
});

Deno.test("SelectEchoServer streams 10 MiB through a fixed 1024-byte buffer (--max-buffer 1024, as the notes)", async () => {
  const { server: s, stats } = await server({
    bufferSize: 1024,
    maxBufferSize: 1024,
  });
  await using _ = s;
  const data = randomBytes(10 * 1024 * 1024, pseudoRandom(10));
  using conn = await Deno.connect({ port: s.addr.port });
  const reading = readAll(conn);
  for (let at = 0; at < data.length; at += 65536) {
    await writeAll(conn, data.subarray(at, at + 65536));
  }
  await conn.closeWrite();
  const echoed = await reading;
  assert.equal(echoed.length, data.length);
  assert.equal(firstDifference(echoed, data), -1);
  await waitForStats(s, (t) => t.active === 0, "the close");
  assert.equal(stats().bytesEchoed, data.length);
  assert.ok(stats().peakHeld! <= 1024, `held ${stats().peakHeld}`);
  assert.equal(stats().peakHeld, 1024);
  assert.equal(stats().peakBuffer, 1024);
});

Deno.test("sizeTable: the smallest size, the powers of two between, the largest", () => {
  assert.deepEqual(sizeTable(1024, 65536), [
    1024,
    2048,
    4096,
    8192,
    16384,
    32768,
    65536,
  ]);
  assert.deepEqual(sizeTable(1000, 5000), [1000, 1024, 2048, 4096, 5000]);
  assert.deepEqual(sizeTable(5, 5), [5]);
  assert.throws(() => sizeTable(0, 5), RangeError);
  assert.throws(() => sizeTable(6, 5), RangeError);
});

Deno.test("AdaptiveSize: a read that fills its room grows 4 steps up to the cap; two small reads in a row shrink one step, down to the floor", () => {
  const policy = new AdaptiveSize(1024, 65536);
  let state = 0;
  let before = state;
  const size = () => policy.size(state);
  const record = (n: number, room: number) => {
    before = state;
    state = policy.record(state, n, room);
    return policy.size(state) !== policy.size(before);
  };
  assert.equal(size(), 1024);
  assert.equal(record(1024, 1024), true);
  assert.equal(size(), 16384);
  // Filling a smaller room (a ring's wrapped piece) counts as full too.
  record(100, 100);
  assert.equal(size(), 65536);
  record(65536, 65536);
  assert.equal(size(), 65536, "capped");
  // Neither full nor small: no change, however often.
  for (let i = 0; i < 5; i++) record(40000, 65536);
  assert.equal(size(), 65536);
  // One small read is not enough; the second shrinks one step.
  assert.equal(record(32768, 65536), false);
  assert.equal(size(), 65536);
  assert.equal(record(10, 65536), true);
  assert.equal(size(), 32768);
  // A full read in between starts the count over.
  record(10, 32768);
  record(32768, 32768);
  assert.equal(size(), 65536);
  record(10, 65536);
  assert.equal(size(), 65536);
  // Down to the floor in two small reads a step, never below it.
  for (let i = 0; i < 40; i++) record(1, 65536);
  assert.equal(size(), 1024);
  // A read of nothing (Deno never reports one but EOF) is not full.
  record(0, 0);
  assert.equal(size(), 1024);
});

/** Reads exactly `n` bytes from `conn` (fails at an early EOF). */
async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let at = 0;
  while (at < n) {
    const got = await conn.read(out.subarray(at));
    if (got === null) throw new Error(`EOF after ${at} of ${n} bytes`);
    at += got;
  }
  return out;
}

Deno.test("SelectEchoServer: random data in random write sizes comes back exact while the buffer grows in streams and shrinks back between them", async () => {
  const { server: s, stats } = await server();
  await using _ = s;
  using conn = await Deno.connect({ port: s.addr.port });
  const next = pseudoRandom(2024);
  for (let round = 0; round < 3; round++) {
    // A stream: writes of 1 byte to 192 KiB, read back concurrently.
    const data = randomBytes(3 * 1024 * 1024 + (next() % 4096), next);
    const reading = readExactly(conn, data.length);
    for (let at = 0; at < data.length;) {
      const size = 1 + (next() % (192 * 1024));
      await writeAll(conn, data.subarray(at, at + size));
      at += size;
    }
    assert.equal(firstDifference(await reading, data), -1, `round ${round}`);
    const peak = stats().peakBuffer!;
    assert.ok(peak > 1024 && peak <= DEFAULT_MAX_BUFFER_SIZE, `peak ${peak}`);
    // Then small messages, one at a time: the reads come back short, so the
    // connection goes back to waiting in the 1 KiB buffer.
    for (let i = 0; i < 20; i++) {
      const message = randomBytes(1 + (next() % 200), next);
      await writeAll(conn, message);
      const back = await readExactly(conn, message.length);
      assert.equal(firstDifference(back, message), -1, `message ${i}`);
    }
    await waitForStats(
      s,
      (t) => t.bufferBytes === 1024,
      "the buffer to shrink back to 1 KiB",
    );
  }
  await conn.closeWrite();
  assert.equal(await conn.read(new Uint8Array(1)), null);
  await waitForStats(s, (t) => t.active === 0, "the close");
  assert.equal(stats().bufferBytes, 0);
  assert.equal(stats().bytesHeld, 0);
  assert.equal(stats().bytesEchoed, stats().bytesRead);
});

Deno.test("SelectEchoServer with 2 threads: connections reach both, every byte echoes, the buffers adapt in each", async () => {
  const { server: s } = await server({ threads: 2 });
  const port = s.addr.port;
  const backs = await Promise.all(
    Array.from({ length: 40 }, async (_, i) => {
      const next = pseudoRandom(900 + i);
      // Some connections stream enough to grow their buffer.
      const data = randomBytes(i % 4 === 0 ? 1 << 20 : 3000, next);
      const back = await echoInChunks(port, data, next, 100_000);
      return firstDifference(back, data);
    }),
  );
  assert.deepEqual(backs.filter((d) => d !== -1), []);
  const final = await s.close();
  assert.equal(final.accepted, 40);
  assert.equal(final.perThread?.length, 2);
  assert.equal(final.errors, 0);
  assert.equal(final.bytesEchoed, final.bytesRead);
  assert.ok(
    final.perThread!.some((t) => (t.peakBuffer ?? 0) > 1024),
    JSON.stringify(final.perThread),
  );
  // The buffer counters add up over the threads; all given back.
  assert.equal(final.bufferBytes, 0);
  assert.equal(final.bytesHeld, 0);
  assert.ok(final.peakBuffer! > 1024, JSON.stringify(final));
});

Deno.test("SelectEchoServer echoes after the client half-closes, then closes", async () => {
  const { server: s, stats } = await server({ verbose: true });
  await using _ = s;
  using conn = await Deno.connect({ port: s.addr.port });
  // More than the buffer, all sent before the FIN: the server must write it
  // all back after it has seen the FIN.
  const data = randomBytes(5000, pseudoRandom(3));
  await writeAll(conn, data);
  await conn.closeWrite();
  const echoed = await readAll(conn);
  assert.equal(firstDifference(echoed, data), -1);
  // readAll stopped at EOF: the server closed after the echo.
  assert.equal(await conn.read(new Uint8Array(1)), null);
  await waitForStats(s, (t) => t.active === 0, "the close");
  assert.equal(stats().errors, 0);
});

for (
  const [what, options, size] of [
    ["--max-buffer (64 KiB by default)", {}, DEFAULT_MAX_BUFFER_SIZE],
    ["a fixed --buffer 1024", { bufferSize: 1024, maxBufferSize: 1024 }, 1024],
  ] as const
) {
  Deno.test(`SelectEchoServer holds at most ${what} for a client that does not read, and loses none`, async () => {
    await holdsAtMost(options, size);
  });
}

async function holdsAtMost(
  options: SelectEchoOptions,
  size: number,
): Promise<void> {
  const { server: s, stats } = await server(options);
  await using _ = s;
  using conn = await Deno.connect({ port: s.addr.port });
  const next = pseudoRandom(77);
  const sent: Uint8Array[] = [];
  let total = 0;
  let stop = false;
  const wroteMiB = Promise.withResolvers<void>();
  // Write 1 MiB at least, then on until the server's buffer for us is full
  // (loopback buffers took about 8 MiB here): from then on the server reads
  // nothing more until we read, and our writes stall.
  const writing = (async () => {
    while (!stop && total < 64 * 1024 * 1024) {
      const chunk = randomBytes(16384, next);
      sent.push(chunk);
      total += chunk.length;
      await writeAll(conn, chunk);
      assert.ok(stats().bytesHeld! <= size, `held ${stats().bytesHeld}`);
      if (total >= 1024 * 1024) wroteMiB.resolve();
    }
  })();
  await wroteMiB.promise;
  await waitForStats(
    s,
    (t) => t.bytesHeld === size,
    "the server's buffer to fill",
  );
  assert.ok(stats().peakHeld! <= size, `peak held ${stats().peakHeld}`);
  stop = true;
  // Now read: the writer finishes its last chunk, then we shut down.
  const reading = readAll(conn);
  await writing;
  await conn.closeWrite();
  const echoed = await reading;
  const all = new Uint8Array(total);
  let at = 0;
  for (const c of sent) {
    all.set(c, at);
    at += c.length;
  }
  assert.equal(echoed.length, total);
  assert.equal(firstDifference(echoed, all), -1);
  assert.equal(stats().peakHeld, size);
  assert.equal(stats().peakBuffer, size);
}

Deno.test("SelectEchoServer closes connections past --max-connections, warns once per burst, serves the others", async () => {
  const { server: s, log, stats } = await server({ maxConnections: 2 });
  await using _ = s;
  const port = s.addr.port;
  const a = await Deno.connect({ port });
  using b = await Deno.connect({ port });
  await ping(a, 1);
  await ping(b, 2);
  for (const _n of [1, 2]) {
    using extra = await Deno.connect({ port });
    // Closed at once: EOF, or a reset if our byte got there first.
    try {
      await extra.write(new Uint8Array([9]));
      assert.equal(await extra.read(new Uint8Array(1)), null);
    } catch (error) {
      assert.ok(
        error instanceof Deno.errors.ConnectionReset ||
          error instanceof Deno.errors.BrokenPipe,
        String(error),
      );
    }
  }
  assert.equal(stats().rejected, 2);
  assert.deepEqual(log.filter((l) => /cap/.test(l)), [
    "connection cap 2 reached: closing new connections",
  ]);
  await ping(a, 3);
  await ping(b, 4);
  a.close();
  await waitForStats(s, (t) => t.active === 1, "the server to see a's close");
  using c = await Deno.connect({ port });
  await ping(c, 5);
  assert.ok(log.includes("below the cap again after rejecting 2 connections"));
  assert.equal(stats().accepted, 3);
});

Deno.test("SelectEchoServer closes a connection idle past --idle-timeout", async () => {
  const { server: s, stats } = await server({ idleTimeout: 300 });
  await using _ = s;
  using conn = await Deno.connect({ port: s.addr.port });
  await writeAll(conn, new Uint8Array([1, 2, 3]));
  const back = new Uint8Array(3);
  let got = 0;
  while (got < 3) got += (await conn.read(back.subarray(got)))!;
  const since = performance.now();
  assert.equal(await conn.read(new Uint8Array(1)), null);
  // Never before the timeout (the server's clock started a little earlier).
  assert.ok(performance.now() - since >= 200);
  await waitForStats(s, (t) => t.active === 0, "the close");
  assert.equal(stats().idleClosed, 1);
  assert.equal(stats().errors, 0);
});

Deno.test("SelectEchoServer: a reset mid-stream closes that connection only, logged; the next client is served", async () => {
  const { server: s, log, stats } = await server();
  await using _ = s;
  using steady = await Deno.connect({ port: s.addr.port });
  await writeAll(steady, new Uint8Array([1]));
  assert.equal(await steady.read(new Uint8Array(1)), 1);
  {
    // A peer that sends and never reads, until the server holds a full
    // buffer for it (its writes back are stalled), then closes: with
    // unread bytes the kernel sends RST, not FIN.
    const rude = await Deno.connect({ port: s.addr.port });
    const flood = randomBytes(64 * 1024, pseudoRandom(9));
    let stop = false;
    const writing = (async () => {
      for (let i = 0; !stop && i < 1024; i++) await writeAll(rude, flood);
    })().catch(() => {});
    await waitForStats(
      s,
      (t) => t.bytesHeld === DEFAULT_MAX_BUFFER_SIZE,
      "a full buffer",
    );
    stop = true;
    rude.close();
    await writing;
  }
  await waitForStats(s, (t) => t.errors === 1, "the reset to be seen");
  assert.ok(
    log.some((l) => /^connection 2 from 127\.0\.0\.1:\d+: .*reset/i.test(l)),
    log.join("\n"),
  );
  assert.equal(stats().active, 1);
  // The steady client still echoes, and a new client is served.
  await writeAll(steady, new Uint8Array([2]));
  assert.equal(await steady.read(new Uint8Array(1)), 1);
  const data = randomBytes(20_000, pseudoRandom(11));
  const echoed = await echoInChunks(s.addr.port, data, pseudoRandom(12), 999);
  assert.equal(firstDifference(echoed, data), -1);
});

Deno.test("SelectEchoServer: a client that never reads is cut off when --grace ends", async () => {
  const { server: s, log } = await server({ grace: 300 });
  using conn = await Deno.connect({ port: s.addr.port });
  const flood = randomBytes(64 * 1024, pseudoRandom(5));
  let stop = false;
  const writing = (async () => {
    for (let i = 0; !stop && i < 1024; i++) await writeAll(conn, flood);
  })().catch(() => {});
  await waitForStats(
    s,
    (t) => t.bytesHeld === DEFAULT_MAX_BUFFER_SIZE,
    "a full buffer",
  );
  // The server owes this client bytes it will never take: close() must
  // still end, once the grace period is over.
  const final = await s.close();
  assert.ok(
    log.includes("grace period over: closing 1 connections"),
    log.join("\n"),
  );
  assert.equal(final.active, 0);
  assert.equal(final.bytesHeld, 0);
  // Cut with what it still held: at most its buffer (the kernel may have
  // taken the rest meanwhile).
  assert.equal(final.graceClosed, 1);
  assert.ok(
    final.bytesUnechoed >= 0 &&
      final.bytesUnechoed <= DEFAULT_MAX_BUFFER_SIZE,
    JSON.stringify(final),
  );
  stop = true;
  conn.close();
  await writing;
});

Deno.test("SelectEchoServer close() drains, resolves with the final stats; await using works", async () => {
  let stats: EchoStats;
  {
    await using s = await serveSelectEcho({ port: 0, log: () => {} });
    using conn = await Deno.connect({ port: s.addr.port });
    await writeAll(conn, new Uint8Array([1, 2]));
    const back = new Uint8Array(2);
    let got = 0;
    while (got < 2) got += (await conn.read(back.subarray(got)))!;
    const closing = s.close();
    // The drain owes this client nothing: it sends FIN at once, and closes
    // when the client does.
    assert.equal(await conn.read(new Uint8Array(1)), null);
    conn.close();
    stats = await closing;
    assert.deepEqual(await s.close(), stats);
  }
  assert.equal(stats.accepted, 1);
  assert.equal(stats.bytesEchoed, 2);
  assert.equal(stats.active, 0);
  await assert.rejects(serveSelectEcho({ bufferSize: 0 }), RangeError);
  await assert.rejects(serveSelectEcho({ bufferSize: 1.5 }), RangeError);
});

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

Deno.test("select_echo.ts on SIGTERM stops accepting, writes back what it read, prints stats, exits 0", async () => {
  await using proc = new Running(SCRIPT, ["--port", "0", "--grace", "30"]);
  const port = await proc.port();
  using conn = await Deno.connect({ port });
  const data = randomBytes(32 * 1024 * 1024, pseudoRandom(21));
  // Write without reading: loopback buffers fill, the server's buffer
  // fills, and our write stalls while the server holds bytes for us.
  const writing = writeAll(conn, data).catch(() => {});
  // The first echoed byte: the server is reading and echoing.
  const first = new Uint8Array(1);
  assert.equal(await conn.read(first), 1);
  proc.child.kill("SIGTERM");
  // The server says so once its listener is closed: no connect gets in.
  await proc.waitForStderr(/^stopped accepting: draining 1 connections /);
  await assert.rejects(
    Deno.connect({ port }),
    Deno.errors.ConnectionRefused,
  );
  // The server, draining, waits for us to take what it holds, then closes.
  const rest = await readAll(conn);
  conn.close();
  const echoed = new Uint8Array(1 + rest.length);
  echoed.set(first);
  echoed.set(rest, 1);
  await writing;
  const out = await proc.wait();
  assert.equal(out.code, 0, out.stderr);
  assert.ok(echoed.length > 0);
  assert.equal(firstDifference(echoed, data.subarray(0, echoed.length)), -1);
  const match = out.stdout.match(/^stats: .* (\d+) bytes echoed, 0 errors/m);
  assert.ok(match, out.stdout);
  assert.equal(Number(match[1]), echoed.length);
});

Deno.test("select_echo.ts on SIGTERM with 300 streaming connections: every byte read before the stop comes back before FIN, none cut by --grace", async () => {
  const report = await drainStreaming(SCRIPT, ["--grace", "20"], {
    connections: 300,
  });
  assert.deepEqual(drainFailures(report, 300), []);
});

Deno.test("select_echo.ts --help exits 0; a bad --buffer is one line, exit 2", async () => {
  const help = await runScript(SCRIPT, ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: servers\/select_echo\.ts /);
  assert.match(help.stdout, /--buffer BYTES/);
  for (const value of ["0", "big", "999999999999"]) {
    const out = await runScript(SCRIPT, ["--buffer", value]);
    assert.equal(out.code, 2);
    assert.match(
      out.stderr,
      new RegExp(`^error: Cannot parse --buffer "${value}": expected .+\\n$`),
    );
    assert.equal(out.stdout, "");
  }
});

Deno.test("select_echo.ts out of file descriptors backs off, keeps serving, and accepts again once some are freed", async () => {
  // A low descriptor limit for the server alone: accept() then fails with
  // EMFILE while the clients' connections wait in the listen backlog.
  await using proc = new Running(SCRIPT, ["--port", "0"], { nofile: 64 });
  const port = await proc.port();
  const conns: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 80; i++) conns.push(await Deno.connect({ port }));
    assert.match(
      await proc.waitForStderr(/./),
      /^accept failed: Too many open files; retry in 100 ms$/,
    );
    // The connections it holds still echo.
    await ping(conns[0]!, 1);
    await ping(conns[1]!, 2);
    // Free most descriptors: the waiting connections are accepted and echo.
    for (const c of conns.splice(0, 70)) c.close();
    for (const [i, c] of conns.entries()) await ping(c, 10 + i);
  } finally {
    for (const c of conns) c.close();
  }
  const out = await proc.stop("SIGTERM");
  assert.equal(out.code, 0, out.stderr);
  const match = out.stdout.match(
    /^stats: (\d+) connections served, .* (\d+) accept errors, /m,
  );
  assert.ok(match, out.stdout);
  assert.equal(Number(match[1]), 80);
  assert.ok(Number(match[2]) >= 1);
});
