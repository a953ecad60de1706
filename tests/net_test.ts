/**
 * Tests of the network layer (_net.ts, _access.ts): endpoints over TCP, TLS
 * and Unix sockets with real sockets, the certificate failures each in one
 * line, the `listening on` line both ways, and access lists.
 *
 * @module
 */

import assert from "node:assert/strict";
import { AccessList, admits } from "../_access.ts";
import { UsageError } from "../_cli.ts";
import { Acceptor } from "../_accept.ts";
import {
  connect,
  ConnectError,
  listen,
  listeningLine,
  parseListeningLine,
} from "../_net.ts";
import { parseClientEndpoint, parseServerEndpoint } from "../_net_options.ts";
import { leaveStaleSocket, ROOT, unixSocket } from "./_helpers.ts";

const TLS_DIR = `${ROOT}tests/fixtures/tls/`;
const pem = (name: string) => Deno.readTextFileSync(TLS_DIR + name);

Deno.test("AccessList matches addresses and CIDR prefixes, IPv4-mapped IPv6 as IPv4", () => {
  const list = AccessList.parse(
    "10.0.0.0/8, 192.0.2.7,2001:db8::/32,::1",
    "--allow",
  );
  for (
    const yes of [
      "10.1.2.3",
      "::ffff:10.9.9.9",
      "192.0.2.7",
      "2001:db8:1::5",
      "::1",
      "[::1]",
      "0:0:0:0:0:0:0:1",
    ]
  ) {
    assert.ok(list.has(yes), yes);
  }
  for (
    const no of [
      "11.0.0.1",
      "192.0.2.8",
      "2001:db9::1",
      "::2",
      "::ffff:192.0.2.8",
      "fe80::1%eth0",
    ]
  ) {
    assert.ok(!list.has(no), no);
  }
  // A mapped entry matches the plain IPv4 peer too.
  assert.ok(
    AccessList.parse("::ffff:127.0.0.0/104", "--allow").has("127.0.0.1"),
  );
  assert.ok(AccessList.parse("0.0.0.0/0", "--allow").has("203.0.113.9"));
  assert.ok(!AccessList.parse("0.0.0.0/0", "--allow").has("2001:db8::1"));
  assert.ok(AccessList.parse("::/0", "--allow").has("2001:db8::1"));
});

Deno.test("AccessList refuses a bad entry, quoting it", () => {
  for (
    const bad of [
      "10.0.0.0/33",
      "::1/129",
      "10.0.0",
      "example.com",
      "1.2.3.4/8/9",
      "",
      "10.0.0.256",
      "1::2::3",
      "::1/x",
    ]
  ) {
    assert.throws(
      () => AccessList.parse(`127.0.0.1,${bad}`, "--deny"),
      (error: unknown) =>
        error instanceof UsageError &&
        error.message.startsWith(`Cannot parse --deny entry "${bad}"`),
      bad,
    );
  }
});

Deno.test("admits: --allow admits only its entries, --deny refuses its own, both together", () => {
  const allow = AccessList.parse("127.0.0.0/8", "--allow");
  const deny = AccessList.parse("127.0.0.2", "--deny");
  assert.ok(admits({}, "192.0.2.1"));
  assert.ok(admits({ allow }, "127.0.0.1"));
  assert.ok(!admits({ allow }, "192.0.2.1"));
  assert.ok(!admits({ deny }, "127.0.0.2"));
  assert.ok(admits({ allow, deny }, "127.0.0.1"));
  assert.ok(!admits({ allow, deny }, "127.0.0.2"));
});

Deno.test("listeningLine and parseListeningLine agree for IPv4, IPv6 and Unix sockets", () => {
  for (
    const addr of [
      { transport: "tcp", hostname: "127.0.0.1", port: 7 },
      { transport: "tcp", hostname: "::1", port: 65535 },
      { transport: "unix", path: "/tmp/echo.sock" },
      { transport: "unix", path: "./rel:80.sock" },
    ] as Deno.Addr[]
  ) {
    const line = listeningLine(addr as Deno.NetAddr);
    const back = parseListeningLine(line);
    if ("path" in addr) assert.deepEqual(back, { path: addr.path }, line);
    else {
      const net = addr as Deno.NetAddr;
      assert.deepEqual(back, { hostname: net.hostname, port: net.port }, line);
    }
  }
  assert.equal(
    listeningLine({ transport: "tcp", hostname: "::1", port: 7 }),
    "listening on [::1]:7",
  );
  assert.equal(parseListeningLine("stats: 1"), undefined);
});

Deno.test("connect over TLS verifies the server: each certificate failure is one line naming its cause", async () => {
  const cases: [string, string, Record<string, unknown>, RegExp][] = [
    ["server", "server", { caCerts: [pem("ca.pem")] }, /^ok$/],
    [
      "expired",
      "expired",
      { caCerts: [pem("ca.pem")] },
      /: certificate expired \(not valid after 2020-01-02T00:00:00Z\)$/,
    ],
    [
      "other",
      "other",
      { caCerts: [pem("ca.pem")] },
      /: certificate is not valid for "127\.0\.0\.1" \(it is for other\.example\)/,
    ],
    [
      "rogue",
      "rogue",
      { caCerts: [pem("ca.pem")] },
      /: certificate signed by an unknown CA \(trust its CA with --ca FILE\)$/,
    ],
    ["server", "server", {}, /: certificate signed by an unknown CA/],
    ["other", "other", {
      caCerts: [pem("ca.pem")],
      serverName: "other.example",
    }, /^ok$/],
    ["server", "server", {
      caCerts: [pem("ca.pem")],
      cert: pem("client.pem"),
      key: pem("client.key"),
    }, /^ok$/],
    ["server", "server", {
      caCerts: [pem("ca.pem")],
      cert: pem("client.pem"),
      key: pem("other.key"),
    }, /: the key does not match the certificate$/],
  ];
  for (const [cert, key, tls, expected] of cases) {
    using listener = await listen({
      transport: "tls",
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: pem(`${cert}.pem`), key: pem(`${key}.key`) },
    });
    const serving = listener.accept().then(async (conn) => {
      try {
        await (conn as Deno.TlsConn).handshake();
      } catch {
        // The client refused us: what this test is about.
      }
      conn.close();
    });
    const { port } = listener.addr as Deno.NetAddr;
    let result: string;
    try {
      const conn = await connect({
        transport: "tls",
        hostname: "127.0.0.1",
        port,
        tls,
      }, { timeout: 10_000 });
      conn.close();
      result = "ok";
    } catch (error) {
      assert.ok(error instanceof ConnectError, String(error));
      assert.ok(!error.message.includes("\n"));
      result = error.message;
    }
    await serving;
    assert.match(result, expected, `${cert}: ${result}`);
  }
});

Deno.test("listen over TLS with a key that does not match its certificate: one line", async () => {
  await assert.rejects(
    listen({
      transport: "tls",
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: pem("server.pem"), key: pem("other.key") },
    }),
    /^CliError: Cannot listen on 127\.0\.0\.1:0: the key does not match the certificate$/,
  );
});

Deno.test("connect times out in one line, and a refused port says so", async () => {
  // Nothing listens on a port just freed.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  await assert.rejects(
    connect({ transport: "tcp", hostname: "127.0.0.1", port }, {
      timeout: 5_000,
    }),
    new RegExp(
      `^ConnectError: Cannot connect to 127\\.0\\.0\\.1:${port}: connection refused$`,
    ),
  );
  // A TLS server that never answers the handshake: the timeout covers it.
  using silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held = silent.accept();
  await assert.rejects(
    connect({
      transport: "tls",
      hostname: "127.0.0.1",
      port: silent.addr.port,
      tls: { caCerts: [pem("ca.pem")] },
    }, { timeout: 200 }),
    /: timed out after 0\.2 s$/,
  );
  (await held).close();
});

Deno.test("a Unix socket: a stale file is replaced, a live one is in use, the file goes on close", async () => {
  // The test task grants this one path (--allow-net=unix:PATH).
  const { path } = unixSocket("net");
  try {
    // A stale socket file: a process that bound it and exited without
    // closing its listener (Deno removes the file on close).
    await leaveStaleSocket(path);
    assert.ok(Deno.lstatSync(path).isSocket);
    const listener = await listen({ transport: "unix", path });
    await assert.rejects(
      listen({ transport: "unix", path }),
      new RegExp(`^CliError: Cannot listen on ${path}: address already in use`),
    );
    // The second listen's probe connected and closed: the live server sees
    // it as an empty connection.
    using probe = await listener.accept();
    assert.equal(await probe.read(new Uint8Array(1)), null);
    const accepted = listener.accept();
    using conn = await connect({ transport: "unix", path });
    using server = await accepted;
    await conn.write(new Uint8Array([42]));
    const buf = new Uint8Array(1);
    assert.equal(await server.read(buf), 1);
    assert.equal(buf[0], 42);
    listener.close();
    assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound);
    Deno.writeTextFileSync(path, "not a socket");
    await assert.rejects(
      listen({ transport: "unix", path }),
      /a file that is not a socket is in the way/,
    );
  } finally {
    await Deno.remove(path).catch(() => {});
  }
});

Deno.test("Acceptor closes a denied peer at accept, counts it, logs once per burst", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const stop = new AbortController();
  const log: string[] = [];
  const acceptor = new Acceptor(listener, {
    signal: stop.signal,
    log: (line) => log.push(line),
    access: { deny: AccessList.parse("127.0.0.0/8", "--deny") },
  });
  const accepting = acceptor.accept();
  const clients: Deno.Conn[] = [];
  for (let i = 0; i < 3; i++) {
    clients.push(await Deno.connect({ port: listener.addr.port }));
  }
  // Each is closed without a byte: its read sees the end of the stream.
  for (const c of clients) {
    assert.equal(await c.read(new Uint8Array(1)), null);
    c.close();
  }
  stop.abort();
  listener.close();
  assert.equal(await accepting, undefined);
  assert.equal(acceptor.counters.denied, 3);
  assert.equal(log.filter((l) => l.startsWith("access: denied")).length, 1);
});

Deno.test("endpoint options: TLS options need --tls, --cert needs --key, unreadable files are one line", async () => {
  const usage: [Record<string, unknown>, RegExp][] = [
    [
      { hostname: "127.0.0.1", port: "0", cert: "x.pem" },
      /^--cert needs --tls$/,
    ],
    [
      { hostname: "127.0.0.1", port: "0", tls: true },
      /^--tls needs --cert FILE and --key FILE$/,
    ],
    [
      { hostname: "127.0.0.1", port: "0", tls: true, cert: "x.pem" },
      /^--cert needs --key$/,
    ],
    [{
      hostname: "127.0.0.1",
      port: "0",
      unix: "/tmp/x",
      tls: true,
      cert: "a",
      key: "b",
    }, /do not combine/],
    [
      { hostname: "127.0.0.1", port: "0", allow: ["10.0.0.0/99"] },
      /^Cannot parse --allow entry "10\.0\.0\.0\/99"/,
    ],
    [
      { hostname: "127.0.0.1", port: "0", unix: "/tmp/x", deny: ["::1"] },
      /do not apply to --unix/,
    ],
  ];
  for (const [values, expected] of usage) {
    await assert.rejects(
      parseServerEndpoint(values),
      (e: unknown) => e instanceof UsageError && expected.test(e.message),
    );
  }
  await assert.rejects(
    parseClientEndpoint({ host: "127.0.0.1", port: "1", "server-name": "x" }),
    /--server-name needs --tls/,
  );
  await assert.rejects(
    parseClientEndpoint({
      host: "localhost",
      port: "1",
      tls: true,
      "server-name": "x",
      cert: `${TLS_DIR}client.pem`,
      key: `${TLS_DIR}client.key`,
    }),
    /do not combine/,
  );
  await assert.rejects(
    parseServerEndpoint({
      hostname: "127.0.0.1",
      port: "0",
      tls: true,
      cert: `${TLS_DIR}missing.pem`,
      key: `${TLS_DIR}server.key`,
    }),
    /^CliError: Cannot read --cert .*missing\.pem: .+$/,
  );
  await assert.rejects(
    parseServerEndpoint({
      hostname: "127.0.0.1",
      port: "0",
      tls: true,
      cert: `${TLS_DIR}server.key`,
      key: `${TLS_DIR}server.key`,
    }),
    /^CliError: Cannot use --cert .*server\.key: it holds no PEM certificate$/,
  );
  const parsed = await parseServerEndpoint({
    hostname: "::1",
    port: "0",
    tls: true,
    cert: `${TLS_DIR}server.pem`,
    key: `${TLS_DIR}server.key`,
    alpn: "h2,echo",
  });
  assert.equal(parsed.hostname, "::1");
  assert.deepEqual(parsed.tls?.alpn, ["h2", "echo"]);
  assert.match(parsed.tls?.cert ?? "", /BEGIN CERTIFICATE/);
});
