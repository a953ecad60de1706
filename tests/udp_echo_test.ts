/**
 * The UDP echo server (servers/udp_echo.ts) over real sockets: datagrams of
 * every size come back whole, an oversize one fails at the client and costs
 * the server nothing, `--rate-limit` and `--allow`/`--deny` drop and count,
 * an echo to a closed port does not stop it, IPv6, SIGTERM, a Unix datagram
 * socket, and socat as a client nobody here wrote.
 *
 * No test sleeps to synchronise. A datagram the server drops has no event
 * of its own, so each test sends a last datagram from a second peer the
 * server admits: its echo coming back says the server has handled every
 * datagram sent before it (one socket, one loop, in order).
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  firstDifference,
  pseudoRandom,
  randomBytes,
  Running,
  runScript,
  SOCKET_DIR,
  unixSocket,
} from "./_helpers.ts";
import {
  formatUdpStats,
  MAX_UDP_PAYLOAD,
  serveUdpEcho,
} from "../servers/udp_echo.ts";
import { AccessList } from "../_access.ts";
import { PEER_IDLE_MS, PeerTable, SWEEP_MS } from "../servers/_udp_peers.ts";

/** A buffer for every receive: larger than any datagram. */
const RECEIVE_SIZE = 65_536;

/** A UDP socket bound to `hostname` on a free port, as a client. */
function client(hostname = "127.0.0.1"): Deno.DatagramConn {
  return Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
}

/** Sends `payload` to `to` from `conn` and returns the datagram that comes back. */
async function roundTrip(
  conn: Deno.DatagramConn,
  to: Deno.Addr,
  payload: Uint8Array,
): Promise<Uint8Array> {
  await conn.send(payload, to);
  const [echo, from] = await conn.receive(new Uint8Array(RECEIVE_SIZE));
  assert.deepEqual(
    { ...from as Deno.NetAddr },
    { ...to as Deno.NetAddr },
    "the echo comes from the server's address",
  );
  return echo;
}

/** Whether `hostname` can be bound for UDP here. */
function canBind(hostname: string): boolean {
  try {
    Deno.listenDatagram({ transport: "udp", hostname, port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

/** Whether `command` runs here. */
function have(command: string): boolean {
  try {
    new Deno.Command(command, { args: ["-V"], stdout: "null", stderr: "null" })
      .outputSync();
    return true;
  } catch {
    return false;
  }
}

const HAVE_IPV6 = canBind("::1");
const HAVE_SOCAT = have("socat");

/** Payloads of random sizes from 0 to `max`, the two ends included. */
function payloads(count: number, max: number, seed: number): Uint8Array[] {
  const next = pseudoRandom(seed);
  const sizes = [0, 1, max, max - 1];
  while (sizes.length < count) sizes.push(next() % (max + 1));
  return sizes.map((size) => randomBytes(size, next));
}

/** Checks that each of `sent` comes back intact, one in flight per client. */
async function echoesIntact(
  clients: Deno.DatagramConn[],
  to: Deno.Addr,
  sent: Uint8Array[],
): Promise<void> {
  await Promise.all(clients.map(async (conn, c) => {
    for (let i = c; i < sent.length; i += clients.length) {
      const payload = sent[i]!;
      const echo = await roundTrip(conn, to, payload);
      const at = firstDifference(echo, payload);
      assert.equal(
        at,
        -1,
        `datagram ${i} (${payload.length} bytes) came back as ${echo.length} bytes, first difference at ${at}`,
      );
    }
  }));
}

Deno.test("UdpEchoServer sends back datagrams of random sizes from 0 to 65,507 bytes intact", async () => {
  await using server = await serveUdpEcho({ port: 0, log: () => {} });
  const clients = [client(), client(), client(), client()];
  try {
    const sent = payloads(64, MAX_UDP_PAYLOAD, 0x5eed);
    await echoesIntact(clients, server.addr, sent);
    const bytes = sent.reduce((sum, p) => sum + p.length, 0);
    const stats = server.stats();
    assert.equal(stats.datagramsIn, sent.length);
    assert.equal(stats.datagramsOut, sent.length);
    assert.equal(stats.bytesIn, bytes);
    assert.equal(stats.bytesOut, bytes);
    assert.equal(stats.peers, clients.length);
    assert.equal(stats.sendErrors, 0);
  } finally {
    for (const conn of clients) conn.close();
  }
});

Deno.test("UdpEchoServer: a datagram over 65,507 bytes fails at the client (EMSGSIZE) and the server serves on", async () => {
  await using server = await serveUdpEcho({ port: 0, log: () => {} });
  const conn = client();
  try {
    await assert.rejects(
      conn.send(new Uint8Array(MAX_UDP_PAYLOAD + 1), server.addr),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, "EMSGSIZE", String(error));
        assert.match(error.message, /Message too long/);
        return true;
      },
    );
    const payload = randomBytes(MAX_UDP_PAYLOAD, pseudoRandom(7));
    const echo = await roundTrip(conn, server.addr, payload);
    assert.equal(firstDifference(echo, payload), -1);
    const stats = server.stats();
    assert.equal(stats.datagramsIn, 1, "nothing of the oversize one arrived");
    assert.equal(stats.receiveErrors, 0);
  } finally {
    conn.close();
  }
});

Deno.test("UdpEchoServer --rate-limit echoes N datagrams a peer at once, drops and counts the rest, per peer", async () => {
  const limit = 5;
  const burst = 20;
  await using server = await serveUdpEcho({
    port: 0,
    rateLimit: limit,
    log: () => {},
  });
  const flooder = client();
  const other = client();
  try {
    for (let i = 0; i < burst; i++) {
      await flooder.send(new Uint8Array([i]), server.addr);
    }
    // A peer of its own has its own bucket; its echo says the burst is done.
    const marker = await roundTrip(other, server.addr, new Uint8Array([99]));
    assert.deepEqual([...marker], [99]);
    const stats = server.stats();
    assert.equal(stats.datagramsIn, burst + 1);
    const echoed = stats.datagramsOut - 1;
    // The bucket holds 5; it refills 5 a second while the burst is sent.
    assert.ok(
      echoed >= limit && echoed <= limit + 1,
      `${echoed} of ${burst} echoed`,
    );
    assert.equal(stats.rateLimited, burst - echoed);
    // The echoes that went out are the first ones, in order.
    const buffer = new Uint8Array(RECEIVE_SIZE);
    for (let i = 0; i < echoed; i++) {
      const [echo] = await flooder.receive(buffer);
      assert.deepEqual([...echo], [i]);
    }
  } finally {
    flooder.close();
    other.close();
  }
});

Deno.test("UdpEchoServer: past maxPeers new peers go untracked and share one --rate-limit bucket", async () => {
  await using server = await serveUdpEcho({
    port: 0,
    maxPeers: 1,
    rateLimit: 2,
    log: () => {},
  });
  const tracked = client();
  const others = [client(), client()];
  try {
    const first = await roundTrip(tracked, server.addr, new Uint8Array([1]));
    assert.deepEqual([...first], [1]);
    // Two each from two peers the full table cannot take: the bucket they
    // share holds 2, so the first peer's two go back and the second's not.
    for (const conn of others) {
      for (let i = 0; i < 2; i++) {
        await conn.send(new Uint8Array([10 + i]), server.addr);
      }
    }
    // The tracked peer has a token left; its echo says the four are done.
    const marker = await roundTrip(tracked, server.addr, new Uint8Array([2]));
    assert.deepEqual([...marker], [2]);
    const stats = server.stats();
    assert.equal(stats.peers, 1);
    assert.equal(stats.untracked, 4);
    assert.equal(stats.rateLimited, 2);
    assert.equal(stats.datagramsOut, 4);
    const buffer = new Uint8Array(RECEIVE_SIZE);
    for (const expected of [10, 11]) {
      const [echo] = await others[0]!.receive(buffer);
      assert.deepEqual([...echo], [expected]);
    }
  } finally {
    tracked.close();
    for (const conn of others) conn.close();
  }
});

Deno.test("UdpEchoServer --allow/--deny drop a refused sender's datagrams, count them and log once per burst", async (t) => {
  for (
    const [name, access] of [
      ["--deny 127.0.0.0/8", { deny: "127.0.0.0/8" }],
      ["--allow ::1", { allow: "::1" }],
    ] as const
  ) {
    await t.step(`${name} refuses 127.0.0.1`, async () => {
      const lines: string[] = [];
      let logged!: () => void;
      const denied = new Promise<void>((resolve) => logged = resolve);
      await using server = await serveUdpEcho({
        port: 0,
        ...access,
        log: (line) => {
          lines.push(line);
          logged();
        },
      });
      const conn = client();
      try {
        await conn.send(new Uint8Array([1]), server.addr);
        await denied;
        const stats = await server.close();
        assert.equal(stats.denied, 1);
        assert.equal(stats.datagramsIn, 1);
        assert.equal(stats.datagramsOut, 0);
        assert.equal(stats.peers, 1, "a refused sender is a peer too");
        assert.equal(lines.length, 1, lines.join("\n"));
        assert.match(
          lines[0]!,
          /^access: denied 127\.0\.0\.1:\d+ \(--allow\/--deny\)/,
        );
      } finally {
        conn.close();
      }
    });
  }
  await t.step(
    "--allow 127.0.0.1 --deny 10.0.0.0/8 admits 127.0.0.1",
    async () => {
      await using server = await serveUdpEcho({
        port: 0,
        allow: "127.0.0.1",
        deny: "10.0.0.0/8",
        log: () => {},
      });
      const conn = client();
      try {
        const echo = await roundTrip(conn, server.addr, new Uint8Array([42]));
        assert.deepEqual([...echo], [42]);
        assert.equal(server.stats().denied, 0);
      } finally {
        conn.close();
      }
    },
  );
});

Deno.test("PeerTable: peers that share a port behind different addresses each keep their own entry, admission and count (the port cache)", () => {
  const access = {
    allow: undefined,
    deny: AccessList.parse("10.0.0.2", "--deny"),
  };
  const table = new PeerTable(100, 5, access);
  const counts = { peers: 0 };
  const a = table.get("10.0.0.1", 4000, counts)!;
  const b = table.get("10.0.0.2", 4000, counts)!;
  assert.notEqual(a, b);
  assert.equal(counts.peers, 2);
  // Each turn takes the port's cache slot from the other: the answer is the
  // same entry every time, and nothing counts twice.
  for (let i = 0; i < 10; i++) {
    assert.equal(table.get("10.0.0.1", 4000, counts), a);
    assert.equal(table.get("10.0.0.2", 4000, counts), b);
  }
  assert.equal(counts.peers, 2);
  assert.equal(a.admitted, true);
  assert.equal(b.admitted, false, "10.0.0.2 is denied, 10.0.0.1 beside it not");
  // A bucket each: spending b's tokens leaves a's alone.
  b.tokens = 0;
  assert.equal(table.get("10.0.0.1", 4000, counts)!.tokens, 5);
  // The same address on another port is another peer.
  assert.notEqual(table.get("10.0.0.1", 4001, counts), a);
  assert.equal(counts.peers, 3);
});

Deno.test("PeerTable counts distinct peers exactly, as a set of the peers heard from within PEER_IDLE_MS would, over a random mix of lookups and sweeps", () => {
  const next = pseudoRandom(0x5eed);
  const hosts = ["127.0.0.1", "127.0.0.2", "::1", "/tmp/a.sock"];
  const idleTicks = PEER_IDLE_MS / SWEEP_MS;
  for (const max of [1_000, 7]) {
    const table = new PeerTable(max, 1, undefined);
    const counts = { peers: 0 };
    // The model: every peer tracked, with the tick it was last heard from.
    const seen = new Map<string, number>();
    let tick = 0;
    let untracked = 0;
    let expected = 0;
    for (let step = 0; step < 20_000; step++) {
      if (next() % 200 === 0) {
        // Sweeps, sometimes many in a row (peers go idle and are forgotten).
        const sweeps = next() % 3 === 0 ? idleTicks : 1;
        for (let i = 0; i < sweeps; i++) {
          table.sweep();
          tick++;
          for (const [key, at] of seen) {
            if (at <= tick - idleTicks) seen.delete(key);
          }
        }
        continue;
      }
      // Few ports and several addresses: the port cache is shared and lost.
      const host = hosts[next() % hosts.length]!;
      const port = 5000 + next() % 6;
      const key = `${host} ${port}`;
      const peer = table.get(host, port, counts);
      if (seen.has(key)) {
        seen.set(key, tick);
        assert.ok(peer, `${key} is tracked`);
      } else if (seen.size < max) {
        seen.set(key, tick);
        expected++;
        assert.ok(peer, `${key} is new and fits`);
      } else {
        untracked++;
        assert.equal(peer, undefined, `${key}: the table is full`);
      }
      if (peer) assert.deepEqual([peer.host, peer.port], [host, port]);
      assert.equal(counts.peers, expected, `step ${step}`);
    }
    assert.ok(
      expected > 24,
      `peers returned after being forgotten (${expected})`,
    );
    if (max === 7) assert.ok(untracked > 0, "the small table filled up");
  }
});

Deno.test("UdpEchoServer: an echo to a port closed since does not stop the server", async () => {
  const lines: string[] = [];
  await using server = await serveUdpEcho({
    port: 0,
    log: (line) => lines.push(line),
  });
  const gone = client();
  await gone.send(new Uint8Array(100), server.addr);
  // Closed before the server's loop has its turn: the echo meets a closed
  // port. Linux reports the ICMP unreachable only to a connected socket,
  // so it is lost; where it comes back as ECONNREFUSED it is counted.
  gone.close();
  const conn = client();
  try {
    const echo = await roundTrip(conn, server.addr, new Uint8Array([7, 8]));
    assert.deepEqual([...echo], [7, 8]);
    const stats = server.stats();
    assert.equal(stats.datagramsIn, 2);
    assert.equal(stats.datagramsOut + stats.sendErrors, 2);
    assert.equal(stats.receiveErrors, 0);
    // A second round after it: the server goes on serving.
    const again = await roundTrip(conn, server.addr, new Uint8Array([9]));
    assert.deepEqual([...again], [9]);
  } finally {
    conn.close();
  }
});

Deno.test({
  name:
    "UdpEchoServer over IPv6 (::1) sends back datagrams up to 65,527 bytes intact",
  ignore: !HAVE_IPV6,
  async fn() {
    await using server = await serveUdpEcho({
      hostname: "::1",
      port: 0,
      log: () => {},
    });
    assert.equal(server.addr.hostname, "::1");
    const clients = [client("::1"), client("::1")];
    try {
      // 65,527: the most a UDP length field allows, which IPv6 carries.
      await echoesIntact(clients, server.addr, payloads(16, 65_527, 0x6666));
      assert.equal(server.stats().peers, 2);
    } finally {
      for (const conn of clients) conn.close();
    }
  },
});

Deno.test("servers/udp_echo.ts: listening on, echoes, SIGTERM prints the stats and exits 0", async () => {
  await using proc = new Running("servers/udp_echo.ts", ["--port", "0"]);
  const port = await proc.port();
  const conn = client();
  try {
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
    for (const size of [0, 10, 1000]) {
      const echo = await roundTrip(conn, to, new Uint8Array(size).fill(3));
      assert.equal(echo.length, size);
    }
  } finally {
    conn.close();
  }
  const out = await proc.stop("SIGTERM");
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stderr, "");
  assert.equal(
    out.stdout,
    `listening on 127.0.0.1:${port}\n` + formatUdpStats({
      datagramsIn: 3,
      bytesIn: 1010,
      datagramsOut: 3,
      bytesOut: 1010,
      peers: 1,
      sendErrors: 0,
      receiveErrors: 0,
      denied: 0,
      rateLimited: 0,
      untracked: 0,
    }),
  );
});

Deno.test("servers/udp_echo.ts: SIGHUP stops it as SIGTERM does, stats and exit 0", async () => {
  await using proc = new Running("servers/udp_echo.ts", ["--port", "0"]);
  await proc.port();
  const out = await proc.stop("SIGHUP");
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /\nstats: 0 datagrams in \(0 bytes\), 0 out /);
});

Deno.test("servers/udp_echo.ts warns on a non-loopback address without --rate-limit, not with one", async () => {
  const perms = ["--allow-net=0.0.0.0"];
  {
    await using proc = new Running(
      "servers/udp_echo.ts",
      ["--hostname", "0.0.0.0", "--port", "0"],
      { perms },
    );
    await proc.port();
    const line = await proc.waitForStderr(/^warning: /);
    assert.match(line, /0\.0\.0\.0:\d+ with no --rate-limit: .*reflection/);
    assert.equal((await proc.stop()).code, 0);
  }
  await using proc = new Running(
    "servers/udp_echo.ts",
    ["--hostname", "0.0.0.0", "--port", "0", "--rate-limit", "50"],
    { perms },
  );
  await proc.port();
  const out = await proc.stop();
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stderr, "");
});

Deno.test({
  name:
    "servers/udp_echo.ts --deny: socat from 127.0.0.2 is refused (logged once for the burst), 127.0.0.1 served",
  ignore: !HAVE_SOCAT,
  async fn() {
    await using proc = new Running("servers/udp_echo.ts", [
      "--port",
      "0",
      "--deny",
      "127.0.0.2",
    ]);
    const port = await proc.port();
    // socat binds an address this test may not (its --allow-net), and with
    // -u it sends its stdin and exits at its end.
    for (let i = 0; i < 3; i++) {
      const child = new Deno.Command("socat", {
        args: ["-u", "-", `UDP:127.0.0.1:${port},bind=127.0.0.2`],
        stdin: "piped",
        stderr: "piped",
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new Uint8Array([i]));
      await writer.close();
      const out = await child.output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    }
    // Its echo says the three before it were handled.
    const conn = client();
    try {
      const echo = await roundTrip(conn, {
        transport: "udp",
        hostname: "127.0.0.1",
        port,
      }, new Uint8Array([5]));
      assert.deepEqual([...echo], [5]);
    } finally {
      conn.close();
    }
    const out = await proc.stop();
    assert.equal(out.code, 0, out.stderr);
    assert.match(
      out.stdout,
      /stats: 4 datagrams in \(4 bytes\), 1 out \(1 bytes\), 4 distinct peers, .* 3 denied,/,
    );
    assert.match(
      out.stderr,
      /^access: denied 127\.0\.0\.2:\d+ \(--allow\/--deny\); the rest of this burst is counted\naccess: 3 datagrams in all denied\n$/,
    );
  },
});

Deno.test({
  name:
    "servers/udp_echo.ts: two peers on one port, 127.0.0.1 and 127.0.0.2 (socat), keep their own --deny verdict and --rate-limit bucket",
  ignore: !HAVE_SOCAT,
  async fn(t) {
    /** Sends one datagram [`byte`] from 127.0.0.2:`port` with socat. */
    const fromSecond = async (to: number, port: number, byte: number) => {
      const child = new Deno.Command("socat", {
        args: ["-u", "-", `UDP:127.0.0.1:${to},bind=127.0.0.2:${port}`],
        stdin: "piped",
        stderr: "piped",
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new Uint8Array([byte]));
      await writer.close();
      const out = await child.output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    };
    for (
      const [name, args, perms, second] of [
        ["--deny 127.0.0.2", ["--deny", "127.0.0.2"], undefined, {
          echoed: 0,
          denied: 3,
          limited: 0,
        }],
        // Its echoes go to 127.0.0.2 (nobody reads them): the server may
        // send there. A bucket of 3 shared with the first peer would drop
        // at least two of the six.
        ["--rate-limit 3", ["--rate-limit", "3"], [
          "--allow-net=127.0.0.1,127.0.0.2",
        ], { echoed: 3, denied: 0, limited: 0 }],
      ] as const
    ) {
      await t.step(name, async () => {
        await using proc = new Running(
          "servers/udp_echo.ts",
          ["--port", "0", ...args],
          { perms: perms ? [...perms] : undefined },
        );
        const to = {
          transport: "udp" as const,
          hostname: "127.0.0.1",
          port: await proc.port(),
        };
        const first = client();
        const marker = client();
        const port = (first.addr as Deno.NetAddr).port;
        try {
          // In turn, so that each takes the port's place from the other.
          for (let i = 0; i < 3; i++) {
            await first.send(new Uint8Array([i]), to);
            await fromSecond(to.port, port, 10 + i);
          }
          // A third peer's echo says the six before it were handled.
          const last = await roundTrip(marker, to, new Uint8Array([99]));
          assert.deepEqual([...last], [99]);
          // The counts first: a wrong verdict or a shared bucket fails here
          // rather than leaving a receive below waiting.
          const out = await proc.stop();
          assert.equal(out.code, 0, out.stderr);
          assert.match(
            out.stdout,
            new RegExp(
              `stats: 7 datagrams in \\(7 bytes\\), ${
                4 + second.echoed
              } out \\(${
                4 + second.echoed
              } bytes\\), 3 distinct peers, 0 send errors, 0 receive errors, ${second.denied} denied, ${second.limited} rate-limited, 0 untracked$`,
            ),
          );
          // The first peer's three echoes wait in its socket, in order.
          const buffer = new Uint8Array(RECEIVE_SIZE);
          for (let i = 0; i < 3; i++) {
            const [echo] = await first.receive(buffer);
            assert.deepEqual([...echo], [i]);
          }
        } finally {
          first.close();
          marker.close();
        }
      });
    }
  },
});

Deno.test({
  name: "servers/udp_echo.ts echoes to socat - UDP:127.0.0.1:PORT",
  ignore: !HAVE_SOCAT,
  async fn() {
    await using proc = new Running("servers/udp_echo.ts", ["--port", "0"]);
    const port = await proc.port();
    const text = "hello from socat\n";
    // socat sends its stdin as one datagram, and after the end of stdin
    // waits -t seconds for what comes back, then exits (a UDP peer never
    // ends its side): its timer, not ours, and the echo takes a millisecond.
    const child = new Deno.Command("socat", {
      args: ["-t", "1", "-", `UDP:127.0.0.1:${port}`],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(text));
    await writer.close();
    const out = await child.output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(new TextDecoder().decode(out.stdout), text);
    const stopped = await proc.stop();
    assert.match(
      stopped.stdout,
      /stats: 1 datagrams in \(17 bytes\), 1 out \(17 bytes\), 1 distinct peers, 0 send errors/,
    );
  },
});

Deno.test({
  name:
    "servers/udp_echo.ts --unix echoes to socat UNIX-SENDTO with a bound path, counts an unbound sender as a send error, replaces a stale socket, removes its file",
  ignore: !HAVE_SOCAT,
  async fn() {
    const { path } = unixSocket("udp-echo");
    const clientPath = `${SOCKET_DIR}/udp-echo-client.sock`;
    // Deno checks each send: the server needs net and write access to the
    // client's path as well as its own.
    const perms = [
      `--allow-net=unix:${path},unix:${clientPath}`,
      `--allow-read=${path}`,
      `--allow-write=${path},${clientPath}`,
    ];
    try {
      // A socket file nobody receives on: Deno leaves the file of a closed
      // Unix datagram socket behind.
      const stale = await new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          "--unstable-net",
          `Deno.listenDatagram({ transport: "unixpacket", path: ${
            JSON.stringify(path)
          } }).close();`,
        ],
      }).output();
      assert.ok(stale.success && Deno.lstatSync(path).isSocket);
      await using proc = new Running(
        "servers/udp_echo.ts",
        ["--unix", path],
        { perms },
      );
      assert.equal(await proc.nextLine(), `listening on ${path}`);
      const socat = async (target: string) => {
        const child = new Deno.Command("socat", {
          args: ["-t", "1", "-", target],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const writer = child.stdin.getWriter();
        await writer.write(new TextEncoder().encode("unix\n"));
        await writer.close();
        return await child.output();
      };
      // No address to answer: the server's send fails, it goes on.
      const unbound = await socat(`UNIX-SENDTO:${path}`);
      assert.equal(new TextDecoder().decode(unbound.stdout), "");
      await proc.waitForStderr(/^send to an unbound Unix socket failed: /);
      const bound = await socat(`UNIX-SENDTO:${path},bind=${clientPath}`);
      assert.equal(
        new TextDecoder().decode(bound.stdout),
        "unix\n",
        new TextDecoder().decode(bound.stderr),
      );
      // A live socket is refused, one line, exit 1. Its probe (an empty
      // datagram from an unbound socket) is a datagram to the server, which
      // cannot answer it: 3 datagrams in, 2 send errors.
      const second = await runScript(
        "servers/udp_echo.ts",
        ["--unix", path],
        { perms },
      );
      assert.equal(second.code, 1, second.stderr);
      assert.equal(
        second.stderr,
        `error: Cannot listen on ${path}: address already in use (a server is receiving there)\n`,
      );
      const out = await proc.stop();
      assert.equal(out.code, 0, out.stderr);
      assert.match(
        out.stdout,
        // Unbound senders have no address: they count as one peer.
        /stats: 3 datagrams in \(10 bytes\), 1 out \(5 bytes\), 2 distinct peers, 2 send errors/,
      );
      assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound);
    } finally {
      for (const p of [path, clientPath]) {
        try {
          Deno.removeSync(p);
        } catch {
          // Not there.
        }
      }
    }
  },
});
