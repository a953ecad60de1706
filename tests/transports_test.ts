/**
 * The servers over every transport of the network layer, driven by real
 * peers nobody here wrote: TLS (socat `OPENSSL:`, `ncat --ssl`, `openssl
 * s_client`, and our Test Client), Unix sockets (socat `UNIX-CONNECT:`, `nc
 * -U`), and `--allow`/`--deny` at accept, IPv6 and IPv4-mapped peers
 * included. A peer that is not installed skips its step, saying so.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  firstDifference,
  leaveStaleSocket,
  pseudoRandom,
  randomBytes,
  readLine,
  Running,
  runScript,
  unixSocket,
} from "./_helpers.ts";

const TLS = "tests/fixtures/tls";
const SERVER_TLS = [
  "--tls",
  "--cert",
  `${TLS}/server.pem`,
  "--key",
  `${TLS}/server.key`,
];

/** Whether `command` is on PATH. */
function have(command: string): boolean {
  return new Deno.Command("sh", {
    args: ["-c", `command -v ${command}`],
    stdout: "null",
    stderr: "null",
  }).outputSync().success;
}

/** Runs a peer with `input` on its stdin; returns its exit code and output. */
async function peer(
  command: string,
  args: string[],
  input: Uint8Array,
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const child = new Deno.Command(command, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Read while writing: a peer that echoes fills its stdout pipe, and
  // writing all first would wait on it forever.
  const stdout = new Response(child.stdout).arrayBuffer();
  const stderr = new Response(child.stderr).text();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const writer = child.stdin.getWriter();
  await writer.write(input);
  await writer.close();
  const status = await child.status;
  clearTimeout(timer);
  return {
    code: status.code,
    stdout: new Uint8Array(await stdout),
    stderr: await stderr,
  };
}

/**
 * Runs `openssl s_client` against 127.0.0.1:`port`, sends `line`, and waits
 * until the line `until` (default `line`, its echo) comes back (s_client
 * ignores the end of its input while a connection is open); returns
 * everything it printed.
 */
async function opensslEcho(
  port: number,
  line: string,
  until = line,
): Promise<string> {
  const child = new Deno.Command("openssl", {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-servername",
      "localhost",
      "-CAfile",
      `${TLS}/ca.pem`,
      "-verify_return_error",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(`${line}\n`));
  let text = "";
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  try {
    while (!text.includes(`\n${until}\n`)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
  } finally {
    clearTimeout(timer);
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await reader.cancel();
    await writer.close().catch(() => {});
    await child.status;
  }
  return text;
}

/** The echo servers, as tests start them; `--threads 2` reads its modules. */
const ECHO_SERVERS: { name: string; args: string[]; perms?: string[] }[] = [
  { name: "servers/select_echo.ts", args: [] },
  { name: "servers/completion_echo.ts", args: [] },
  {
    name: "servers/completion_echo.ts",
    args: ["--threads", "2"],
    perms: ["--allow-net=127.0.0.1", "--allow-read"],
  },
];

for (const server of ECHO_SERVERS) {
  const label = [server.name, ...server.args].join(" ");
  Deno.test(`${label} --tls echoes to socat, ncat and openssl s_client, verified by the test CA`, async (t) => {
    await using proc = new Running(
      server.name,
      ["--port", "0", ...server.args, ...SERVER_TLS],
      { perms: server.perms },
    );
    const port = await proc.port();
    await t.step({
      name: "socat OPENSSL: 256 KiB of random bytes",
      ignore: !have("socat"),
      async fn() {
        const data = randomBytes(256 * 1024, pseudoRandom(port));
        const out = await peer("socat", [
          "-t",
          "10",
          "-",
          `OPENSSL:127.0.0.1:${port},cafile=${TLS}/ca.pem,commonname=localhost`,
        ], data);
        assert.equal(out.code, 0, out.stderr);
        assert.equal(firstDifference(out.stdout, data), -1);
      },
    });
    await t.step({
      name: "ncat --ssl --ssl-verify",
      ignore: !have("ncat"),
      async fn() {
        const out = await peer("ncat", [
          "--ssl",
          "--ssl-verify",
          "--ssl-trustfile",
          `${TLS}/ca.pem`,
          "--ssl-servername",
          "localhost",
          "127.0.0.1",
          String(port),
        ], new TextEncoder().encode("hello from ncat\n"));
        assert.equal(out.code, 0, out.stderr);
        assert.equal(new TextDecoder().decode(out.stdout), "hello from ncat\n");
      },
    });
    await t.step({
      name: "openssl s_client -verify_return_error",
      ignore: !have("openssl"),
      async fn() {
        const text = await opensslEcho(port, "hello from openssl");
        assert.match(text, /Verify return code: 0 \(ok\)/);
        assert.match(text, /\nhello from openssl\n/);
      },
    });
    const out = await proc.stop("SIGTERM");
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^stats: \d+ connections served/m);
  });
}

Deno.test("Test Server --tls talks to our Test Client and greets openssl s_client", async (t) => {
  await using proc = new Running("servers/sequential.ts", [
    "--port",
    "0",
    ...SERVER_TLS,
  ]);
  const port = await proc.port();
  const client = await runScript("clients/client.ts", [
    "--port",
    String(port),
    "--tls",
    "--ca",
    `${TLS}/ca.pem`,
  ]);
  assert.equal(client.code, 0, client.stderr);
  assert.match(client.stdout, /got 'Test Server'\ngot 'Say Goodbye'/);
  await proc.waitFor(/^got 'Goodbye'$/);
  await t.step({
    name: "openssl s_client",
    ignore: !have("openssl"),
    async fn() {
      const text = await opensslEcho(port, "Test Client", "Say Goodbye");
      assert.match(text, /Verify return code: 0 \(ok\)/);
      assert.match(text, /\nTest Server\n/);
    },
  });
  const out = await proc.stop("SIGTERM");
  assert.equal(out.code, 0, out.stderr);
});

Deno.test("servers --tls with an unreadable or mismatched certificate: one line, exit 1", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["--tls", "--cert", `${TLS}/missing.pem`, "--key", `${TLS}/server.key`],
      /^error: Cannot read --cert tests\/fixtures\/tls\/missing\.pem: .+\n$/,
    ],
    [
      ["--tls", "--cert", `${TLS}/server.pem`, "--key", `${TLS}/other.key`],
      /^error: Cannot listen on 127\.0\.0\.1:0: the key does not match the certificate\n$/,
    ],
    [
      ["--tls", "--cert", `${TLS}/server.key`, "--key", `${TLS}/server.key`],
      /^error: Cannot use --cert .*: it holds no PEM certificate\n$/,
    ],
  ];
  for (
    const script of [
      "servers/sequential.ts",
      "servers/select_echo.ts",
      "servers/completion_echo.ts",
    ]
  ) {
    for (const [args, expected] of cases) {
      const out = await runScript(script, ["--port", "0", ...args]);
      assert.equal(out.code, 1, `${script} ${args.join(" ")}: ${out.stderr}`);
      assert.match(out.stderr, expected, script);
      assert.equal(out.stdout, "");
    }
  }
});

/** Starts `script` on the Unix socket `name`; returns it and the path. */
async function unixServer(script: string, name: string, args: string[] = []) {
  const { path, perms } = unixSocket(name);
  const proc = new Running(script, ["--unix", path, ...args], { perms });
  assert.equal(await proc.nextLine(), `listening on ${path}`);
  return { proc, path, perms };
}

for (
  const script of ["servers/select_echo.ts", "servers/completion_echo.ts"]
) {
  Deno.test(`${script} --unix echoes to socat UNIX-CONNECT and nc -U, refuses a live socket, removes its file on stop`, async (t) => {
    const { proc, path, perms } = await unixServer(script, "echo");
    await using _ = proc;
    await t.step({
      name: "socat UNIX-CONNECT: 256 KiB of random bytes",
      ignore: !have("socat"),
      async fn() {
        const data = randomBytes(256 * 1024, pseudoRandom(7));
        const out = await peer("socat", [
          "-t",
          "10",
          "-",
          `UNIX-CONNECT:${path}`,
        ], data);
        assert.equal(out.code, 0, out.stderr);
        assert.equal(firstDifference(out.stdout, data), -1);
      },
    });
    await t.step({
      name: "nc -U (OpenBSD netcat)",
      ignore: !have("nc.openbsd"),
      async fn() {
        const out = await peer(
          "nc.openbsd",
          ["-N", "-U", path],
          new TextEncoder().encode("hello from nc\n"),
        );
        assert.equal(out.code, 0, out.stderr);
        assert.equal(new TextDecoder().decode(out.stdout), "hello from nc\n");
      },
    });
    // A second server on the same live socket is "address in use".
    const second = await runScript(script, ["--unix", path], { perms });
    assert.equal(second.code, 1);
    assert.equal(
      second.stderr,
      `error: Cannot listen on ${path}: address already in use (a server is listening there)\n`,
    );
    const out = await proc.stop("SIGTERM");
    assert.equal(out.code, 0, out.stderr);
    assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound);
  });
}

Deno.test("Test Server --unix replaces a stale socket file and greets socat", {
  ignore: !have("socat"),
}, async () => {
  const { path, perms } = unixSocket("sequential");
  // A process that bound the socket and died without closing it.
  await leaveStaleSocket(path);
  assert.ok(Deno.lstatSync(path).isSocket);
  await using proc = new Running(
    "servers/sequential.ts",
    ["--unix", path],
    { perms },
  );
  assert.equal(await proc.nextLine(), `listening on ${path}`);
  const out = await peer(
    "socat",
    ["-t", "10", "-", `UNIX-CONNECT:${path}`],
    new TextEncoder().encode("Test Client\nGoodbye\n"),
  );
  assert.equal(out.code, 0, out.stderr);
  assert.equal(
    new TextDecoder().decode(out.stdout),
    "Test Server\nSay Goodbye\n",
  );
  await proc.waitFor(/^got 'Goodbye'$/);
  assert.equal((await proc.stop("SIGTERM")).code, 0);
});

/** Connects to `hostname`:`port` and returns what the server sends first. */
async function firstBytes(hostname: string, port: number): Promise<string> {
  using conn = await Deno.connect({ hostname, port });
  // An echo server sends nothing first: ask for an echo.
  try {
    await conn.write(new TextEncoder().encode("ping\n"));
  } catch {
    return "(closed)";
  }
  try {
    return (await readLine(conn)) ?? "(closed)";
  } catch {
    return "(closed)"; // reset
  }
}

Deno.test("--allow and --deny refuse a peer at accept: closed before a byte, counted, logged once per burst", async (t) => {
  await t.step(
    "Test Server --allow 10.0.0.0/8: a 127.0.0.1 client gets no greeting",
    async () => {
      await using proc = new Running("servers/sequential.ts", [
        "--port",
        "0",
        "--allow",
        "10.0.0.0/8,192.0.2.0/24",
      ]);
      const port = await proc.port();
      for (let i = 0; i < 3; i++) {
        using conn = await Deno.connect({ hostname: "127.0.0.1", port });
        assert.equal(await readLine(conn), null);
      }
      const out = await proc.stop("SIGTERM");
      assert.equal(out.code, 0);
      assert.equal(
        out.stderr.match(/^access: denied /gm)?.length,
        1,
        out.stderr,
      );
      assert.match(
        out.stderr,
        /^access: denied 127\.0\.0\.1:\d+ \(--allow\/--deny\)/m,
      );
      assert.doesNotMatch(out.stdout, /accepted connection/);
    },
  );
  for (
    const script of ["servers/select_echo.ts", "servers/completion_echo.ts"]
  ) {
    await t.step(
      `${script} --deny 127.0.0.1 denies, --deny 127.0.0.2 does not`,
      async () => {
        {
          await using proc = new Running(script, [
            "--port",
            "0",
            "--deny",
            "127.0.0.1",
          ]);
          const port = await proc.port();
          for (let i = 0; i < 3; i++) {
            assert.equal(await firstBytes("127.0.0.1", port), "(closed)");
          }
          const out = await proc.stop("SIGTERM");
          assert.equal(out.code, 0, out.stderr);
          assert.match(out.stdout, /, 3 denied$/m);
          assert.match(out.stdout, /^stats: 0 connections served/m);
        }
        {
          await using proc = new Running(script, [
            "--port",
            "0",
            "--deny",
            "127.0.0.2/32",
          ]);
          const port = await proc.port();
          assert.equal(await firstBytes("127.0.0.1", port), "ping");
          const out = await proc.stop("SIGTERM");
          assert.match(out.stdout, /, 0 denied$/m);
        }
      },
    );
  }
  let v6 = true;
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
  } catch {
    v6 = false;
  }
  await t.step({
    name: "IPv6: on ::1, --allow ::1 admits, --deny ::/0 denies",
    ignore: !v6,
    async fn() {
      for (
        const [args, expected] of [[["--allow", "::1"], "ping"], [[
          "--deny",
          "::/0",
        ], "(closed)"]] as const
      ) {
        await using proc = new Running("servers/select_echo.ts", [
          "--hostname",
          "::1",
          "--port",
          "0",
          ...args,
        ]);
        const port = await proc.port();
        assert.equal(await firstBytes("::1", port), expected, args.join(" "));
        assert.equal((await proc.stop("SIGTERM")).code, 0);
      }
    },
  });
  await t.step({
    name:
      "IPv4-mapped: a dual-stack listener on :: matches a 127.0.0.1 peer to its IPv4 entry",
    ignore: !v6,
    async fn() {
      for (
        const [args, expected] of [[["--allow", "127.0.0.0/8"], "ping"], [[
          "--deny",
          "127.0.0.1",
        ], "(closed)"]] as const
      ) {
        await using proc = new Running("servers/select_echo.ts", [
          "--hostname",
          "::",
          "--port",
          "0",
          ...args,
        ], { perms: ["--allow-net=127.0.0.1,[::1],[::]"] });
        const port = await proc.port();
        let got: string;
        try {
          got = await firstBytes("127.0.0.1", port);
        } catch (error) {
          // No dual-stack sockets here (IPV6_V6ONLY): nothing to test.
          if (error instanceof Deno.errors.ConnectionRefused) return;
          throw error;
        }
        assert.equal(got, expected, args.join(" "));
        assert.equal((await proc.stop("SIGTERM")).code, 0);
      }
    },
  });
});

Deno.test("the echo servers drain over TLS as over TCP: a stop loses no echoed byte", async () => {
  await using proc = new Running("servers/select_echo.ts", [
    "--port",
    "0",
    ...SERVER_TLS,
  ]);
  const port = await proc.port();
  const conns: Deno.TlsConn[] = [];
  for (let i = 0; i < 5; i++) {
    conns.push(
      await Deno.connectTls({
        hostname: "localhost",
        port,
        caCerts: [Deno.readTextFileSync(`${TLS}/ca.pem`)],
      }).catch(() =>
        Deno.connectTls({
          hostname: "127.0.0.1",
          port,
          caCerts: [Deno.readTextFileSync(`${TLS}/ca.pem`)],
        })
      ),
    );
  }
  const sent = conns.map(() => 0);
  const echoed = conns.map(() => 0);
  const firstEchoes = conns.map(() => Promise.withResolvers<void>());
  const chunk = new Uint8Array(4096).fill(7);
  const running = conns.map(async (conn, i) => {
    let ended = false; // the server's FIN (close_notify) has come
    const reading = (async () => {
      const buf = new Uint8Array(65536);
      for (;;) {
        let n: number | null;
        try {
          n = await conn.read(buf);
        } catch {
          break;
        }
        if (n === null) break;
        echoed[i]! += n;
        firstEchoes[i]!.resolve();
      }
      ended = true;
      firstEchoes[i]!.resolve(); // or none came: the asserts below tell
    })();
    try {
      // As a client does that streams until the server says it is done;
      // one that sent on forever would be cut by --grace, rightly.
      // A TLS write can settle without I/O; yield to timers each time so
      // the test's own loop keeps turning.
      while (!ended) {
        sent[i]! += await conn.write(chunk);
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    } catch {
      // Reset after the server's FIN: writing stops.
    }
    await reading;
    conn.close();
  });
  // Every connection has had echo back: each is streaming when the stop comes.
  await Promise.all(firstEchoes.map((p) => p.promise));
  const out = await proc.stop("SIGTERM");
  await Promise.all(running);
  assert.equal(out.code, 0, out.stderr);
  const match = out.stdout.match(
    /(\d+) bytes read, (\d+) bytes echoed.* (\d+) cut by --grace/,
  );
  assert.ok(match, out.stdout);
  assert.equal(match[1], match[2], "every byte read was echoed");
  assert.equal(match[3], "0");
  assert.equal(echoed.reduce((a, b) => a + b), Number(match[2]));
});
