/**
 * The clients over TLS and Unix sockets, against real peers nobody here
 * wrote: the Test Client and the load generator (both engines) against
 * `socat OPENSSL-LISTEN`, `ncat --ssl`, `openssl s_server` and
 * `socat UNIX-LISTEN`, every byte checked; every certificate failure of the
 * client as one line, exit 1. A peer that is not installed skips its tests
 * (`.ci/run` installs them) and says so.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { LoadReport } from "../tools/load.ts";
import { type Output, ROOT, runScript } from "./_helpers.ts";
import { Child } from "../_process.ts";

const TLS = "tests/fixtures/tls/";
const CLIENT = "clients/client.ts";
const LOAD = "tools/load.ts";

/** Whether `binary` runs here (its version option exits at all). */
async function installed(binary: string, versionArg: string): Promise<boolean> {
  try {
    await new Deno.Command(binary, {
      args: [versionArg],
      stdout: "null",
      stderr: "null",
    }).output();
    return true;
  } catch {
    return false;
  }
}

const HAVE = {
  socat: await installed("socat", "-V"),
  ncat: await installed("ncat", "--version"),
  openssl: await installed("openssl", "version"),
};
for (const [binary, here] of Object.entries(HAVE)) {
  if (!here) {
    console.log(`${binary} is not installed: its tests are skipped`);
  }
}

/** A port nothing listens on now: bound, then freed. */
function freePort(): number {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  return port;
}

/**
 * Starts a peer program that says on stderr when it listens (`socat -d -d`:
 * "listening on", `ncat -v`: "Listening on") and waits for that line, so
 * no probe connection reaches it first; killed and waited for when
 * disposed.
 */
async function listening(argv: string[]): Promise<Child> {
  const peer = new Child(argv, { cwd: ROOT });
  try {
    await peer.waitForStderr(/[Ll]istening on/);
  } catch (error) {
    await peer[Symbol.asyncDispose]();
    throw error;
  }
  return peer;
}

/** The Test Server's side of the notes' conversation, as a shell script. */
const TEST_SERVER_SH = 'echo Test Server; read a; echo "got $a"; read b';

/**
 * `socat OPENSSL-LISTEN` on a free port with certificate `cert` (a name in
 * tests/fixtures/tls), `fork`ing `target` for each connection; `verify`
 * asks for a client certificate from our CA; `extra` adds address options.
 */
async function socatTls(
  cert: string,
  target: string,
  verify = false,
  extra = "",
): Promise<{ port: number } & AsyncDisposable> {
  const port = freePort();
  const peer = await listening([
    "socat",
    "-d",
    "-d",
    `OPENSSL-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,` +
    `cert=${TLS}${cert}.pem,key=${TLS}${cert}.key,` +
    (verify ? `cafile=${TLS}ca.pem,verify=1` : "verify=0") + extra,
    target,
  ]);
  return { port, [Symbol.asyncDispose]: () => peer[Symbol.asyncDispose]() };
}

/**
 * Runs `command` and returns its stdout, trimmed. The directory of a Unix
 * socket is made and removed this way: the test task grants this process
 * `--allow-write=dist` only.
 */
async function sh(command: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(command, { args, stderr: "inherit" })
    .output();
  assert.equal(out.code, 0, `${command} ${args.join(" ")}`);
  return new TextDecoder().decode(out.stdout).trim();
}

/** `socat UNIX-LISTEN` at a fresh path, `fork`ing `target`. */
async function socatUnix(
  target: string,
): Promise<{ path: string; perms: string[] } & AsyncDisposable> {
  const dir = await sh("mktemp", "-d");
  const path = `${dir}/peer.sock`;
  const peer = await listening([
    "socat",
    "-d",
    "-d",
    `UNIX-LISTEN:${path},fork`,
    target,
  ]);
  return {
    path,
    // What Deno 2.9 asks of a Unix-socket client: all three.
    perms: [
      `--allow-net=unix:${path}`,
      `--allow-read=${path}`,
      `--allow-write=${path}`,
    ],
    async [Symbol.asyncDispose]() {
      await peer[Symbol.asyncDispose]();
      await sh("rm", "-r", dir);
    },
  };
}

/** Runs the Test Client with `args`; its permissions are SCRIPT_PERMISSIONS'. */
function client(args: string[], perms?: string[]): Promise<Output> {
  return runScript(CLIENT, args, perms ? { perms } : {});
}

/** Asserts a conversation that went through, the server's reply echoing ours. */
function assertConversation(out: Output, first: string): void {
  assert.equal(out.code, 0, out.stderr);
  assert.equal(
    out.stdout,
    `Client connecting to: ${first}\ngot 'Test Server'\ngot 'got Test Client'\n`,
  );
}

/** Asserts one error line matching `line`, exit 1, nothing on stdout past the first line. */
function assertFailure(out: Output, line: RegExp): void {
  assert.equal(out.code, 1, `exit ${out.code}: ${out.stderr}`);
  assert.match(out.stderr, /^error: [^\n]+\n$/, out.stderr);
  assert.match(out.stderr, line);
  assert.doesNotMatch(out.stderr, /^\s+at /m);
}

Deno.test({
  name:
    "Test Client over TLS to socat: verified by address, by name, and with --server-name",
  ignore: !HAVE.socat,
  async fn() {
    {
      await using peer = await socatTls("server", `SYSTEM:${TEST_SERVER_SH}`);
      const tls = [
        "--port",
        String(peer.port),
        "--tls",
        "--ca",
        `${TLS}ca.pem`,
      ];
      assertConversation(await client(tls), "127.0.0.1");
      assertConversation(
        await client(["--host", "localhost", ...tls]),
        "localhost",
      );
    }
    // A certificate for another name: verified against --server-name, the
    // connection still going to the address given.
    await using other = await socatTls("other", `SYSTEM:${TEST_SERVER_SH}`);
    assertConversation(
      await client([
        "--port",
        String(other.port),
        "--tls",
        "--ca",
        `${TLS}ca.pem`,
        "--server-name",
        "other.example",
      ]),
      "127.0.0.1",
    );
  },
});

Deno.test({
  name:
    "Test Client presents a client certificate to a socat that requires one; without it, one line",
  ignore: !HAVE.socat,
  async fn() {
    await using peer = await socatTls(
      "server",
      `SYSTEM:${TEST_SERVER_SH}`,
      true,
    );
    const tls = ["--port", String(peer.port), "--tls", "--ca", `${TLS}ca.pem`];
    const mine = ["--cert", `${TLS}client.pem`, "--key", `${TLS}client.key`];
    assertConversation(await client([...tls, ...mine]), "127.0.0.1");
    // By name: connectTls verifies the name and still sends the certificate.
    assertConversation(
      await client(["--host", "localhost", ...tls, ...mine]),
      "localhost",
    );
    assertFailure(
      await client(tls),
      /: the server refused the TLS session \(alert CertificateRequired\): it requires a client certificate \(--cert and --key\)$/m,
    );
    assertFailure(
      await client([
        ...tls,
        "--cert",
        `${TLS}rogue.pem`,
        "--key",
        `${TLS}rogue.key`,
      ]),
      /: the server refused the TLS session \(alert UnknownCA\): it does not trust the CA of our client certificate$/m,
    );
    // With TLS 1.2 the refusal ends the handshake: the server's alert is the
    // cause, not a fault of its certificate.
    await using tls12 = await socatTls(
      "server",
      "EXEC:cat",
      true,
      ",openssl-max-proto-version=TLS1.2",
    );
    const old = ["--port", String(tls12.port), "--tls", "--ca", `${TLS}ca.pem`];
    // Its alert, or (when our next write meets the reset first) its hang-up.
    assertFailure(
      await client(old),
      /^error: Cannot connect to 127\.0\.0\.1:\d+: (the server refused the TLS session \(alert HandshakeFailure\): it accepts nothing we offered \(it may require a client certificate: --cert and --key\)|the server closed the connection during the TLS handshake \(it may require a client certificate, --cert and --key, or not speak TLS\))$/m,
    );
    assertFailure(
      await client([
        ...old,
        "--cert",
        `${TLS}rogue.pem`,
        "--key",
        `${TLS}rogue.key`,
      ]),
      /^error: Cannot connect to 127\.0\.0\.1:\d+: the server (refused the TLS session \(alert UnknownCA\)|closed the connection during the TLS handshake)/m,
    );
  },
});

Deno.test({
  name:
    "Test Client: each certificate failure is one line naming its cause, exit 1",
  ignore: !HAVE.socat,
  async fn() {
    const cases: [string, string[], RegExp][] = [
      [
        "expired",
        [],
        /^error: Cannot connect to 127\.0\.0\.1:\d+: certificate expired \(not valid after 2020-01-02T00:00:00Z\)$/m,
      ],
      [
        "other",
        [],
        /^error: Cannot connect to 127\.0\.0\.1:\d+: certificate is not valid for "127\.0\.0\.1" \(it is for other\.example\); connect by a name it holds or give it with --server-name$/m,
      ],
      [
        "other",
        ["--host", "localhost"],
        /^error: Cannot connect to localhost:\d+: certificate is not valid for "localhost" \(it is for other\.example\)/m,
      ],
      [
        "rogue",
        [],
        /^error: Cannot connect to 127\.0\.0\.1:\d+: certificate signed by an unknown CA \(trust its CA with --ca FILE\)$/m,
      ],
      [
        "server",
        ["--cert", `${TLS}client.pem`, "--key", `${TLS}other.key`],
        /^error: Cannot connect to 127\.0\.0\.1:\d+: the key does not match the certificate$/m,
      ],
    ];
    for (const [cert, extra, line] of cases) {
      await using peer = await socatTls(cert, "EXEC:cat");
      const out = await client([
        "--port",
        String(peer.port),
        "--tls",
        "--ca",
        `${TLS}ca.pem`,
        ...extra,
      ]);
      assertFailure(out, line);
    }
    // Files that cannot be used fail before any connect.
    const port = String(freePort());
    assertFailure(
      await client(["--port", port, "--tls", "--ca", `${TLS}missing.pem`]),
      /^error: Cannot read --ca tests\/fixtures\/tls\/missing\.pem: .+$/m,
    );
    assertFailure(
      await client(["--port", port, "--tls", "--ca", `${TLS}server.key`]),
      /^error: Cannot use --ca tests\/fixtures\/tls\/server\.key: it holds no PEM certificate$/m,
    );
    // A file the permissions do not cover says which to grant.
    assertFailure(
      await client(["--port", port, "--tls", "--ca", `${TLS}ca.pem`], [
        "--allow-net",
      ]),
      /^error: Cannot read --ca tests\/fixtures\/tls\/ca\.pem: .+ \(grant --allow-read=tests\/fixtures\/tls\/ca\.pem\)$/m,
    );
  },
});

Deno.test({
  name:
    "Test Client --tls to a server that does not speak TLS: one line saying so",
  ignore: !HAVE.socat,
  async fn() {
    for (
      const [target, says] of [
        [`SYSTEM:${TEST_SERVER_SH}`, /: the server does not speak TLS/],
        ["EXEC:cat", /: the server sent our ClientHello back/],
      ] as const
    ) {
      const port = freePort();
      await using _peer = await listening([
        "socat",
        "-d",
        "-d",
        `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`,
        target,
      ]);
      const out = await client([
        "--port",
        String(port),
        "--tls",
        "--ca",
        `${TLS}ca.pem`,
      ]);
      assertFailure(out, says);
    }
  },
});

Deno.test({
  name:
    "Test Client --alpn offers protocols and prints the one openssl s_server agreed",
  ignore: !HAVE.openssl,
  async fn() {
    const port = freePort();
    await using peer = new Child([
      "openssl",
      "s_server",
      "-accept",
      `127.0.0.1:${port}`,
      "-cert",
      `${TLS}server.pem`,
      "-key",
      `${TLS}server.key`,
      "-alpn",
      "h2",
      "-naccept",
      "1",
    ], { cwd: ROOT, stdin: "piped" });
    // It says ACCEPT once it listens, and takes one connection: the client's.
    await peer.waitFor(/^ACCEPT$/);
    peer.drain();
    // s_server sends what it reads on stdin once a client is connected.
    const writer = peer.child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("Test Server\nSay Goodbye\n"));
    const out = await client([
      "--port",
      String(port),
      "--tls",
      "--ca",
      `${TLS}ca.pem`,
      "--alpn",
      "echo,h2",
    ]);
    await writer.close();
    assert.equal(out.code, 0, out.stderr);
    assert.equal(
      out.stdout,
      "Client connecting to: 127.0.0.1\nALPN: h2\ngot 'Test Server'\ngot 'Say Goodbye'\n",
    );
  },
});

Deno.test({
  name: "Test Client over a Unix socket to socat UNIX-LISTEN",
  ignore: !HAVE.socat,
  async fn() {
    await using peer = await socatUnix(`SYSTEM:${TEST_SERVER_SH}`);
    assertConversation(
      await client(["--unix", peer.path], peer.perms),
      peer.path,
    );
    // Without the three permissions: one line naming what to grant.
    const out = await client(["--unix", peer.path], [
      `--allow-net=unix:${peer.path}`,
    ]);
    assertFailure(
      out,
      /^error: Cannot connect to .*peer\.sock: Requires read access/m,
    );
  },
});

/** Runs the load generator with `--json` and returns its report. */
async function load(
  args: string[],
  perms?: string[],
): Promise<{ out: Output; report: LoadReport }> {
  const out = await runScript(
    LOAD,
    ["--json", "--quiet", "-d", "0.5", ...args],
    perms ? { perms } : {},
  );
  assert.equal(out.code, 0, `exit ${out.code}: ${out.stdout} ${out.stderr}`);
  return { out, report: JSON.parse(out.stdout) };
}

/** Asserts that every byte sent came back intact, on every connection. */
function assertEveryByte(report: LoadReport, connections: number): void {
  const what = JSON.stringify(report);
  assert.ok(report.ok, what);
  assert.equal(report.connected, connections, what);
  assert.equal(report.connect.samples, connections, what);
  assert.ok(report.bytesEchoed > 0, what);
  assert.equal(report.bytesEchoed, report.bytesSent, what);
  assert.equal(report.mismatchedBytes, 0, what);
  assert.equal(report.missingBytes, 0, what);
}

for (const engine of ["deno", "net"] as const) {
  Deno.test({
    name:
      `load.ts --engine ${engine} --tls checks every byte through socat OPENSSL-LISTEN fork EXEC:cat`,
    ignore: !HAVE.socat,
    async fn() {
      await using peer = await socatTls("server", "EXEC:cat");
      const tls = ["-p", String(peer.port), "--tls", "--ca", `${TLS}ca.pem`];
      for (
        const args of [
          ["-c", "4"],
          ["-c", "2", "--mode", "stream", "-s", "16384"],
          ["-c", "2", "--host", "localhost"],
        ]
      ) {
        const { report } = await load([...tls, "--engine", engine, ...args]);
        assert.equal(report.transport, "tls");
        assert.equal(report.engine, engine);
        assertEveryByte(report, Number(args[1]));
      }
    },
  });

  Deno.test({
    name:
      `load.ts --engine ${engine} --tls checks every byte through ncat --ssl -lk -e /bin/cat`,
    ignore: !HAVE.ncat,
    async fn() {
      const port = freePort();
      await using _peer = await listening([
        "ncat",
        "-v",
        "--ssl",
        "--ssl-cert",
        `${TLS}server.pem`,
        "--ssl-key",
        `${TLS}server.key`,
        "-lk",
        "127.0.0.1",
        String(port),
        "-e",
        "/bin/cat",
      ]);
      const { report } = await load([
        "-p",
        String(port),
        "--tls",
        "--ca",
        `${TLS}ca.pem`,
        "--engine",
        engine,
        "-c",
        "3",
      ]);
      assertEveryByte(report, 3);
    },
  });

  Deno.test({
    name:
      `load.ts --engine ${engine} --unix checks every byte through socat UNIX-LISTEN fork EXEC:cat`,
    ignore: !HAVE.socat,
    async fn() {
      await using peer = await socatUnix("EXEC:cat");
      for (
        const args of [["-c", "4"], [
          "-c",
          "2",
          "--mode",
          "stream",
          "-s",
          "16384",
        ]]
      ) {
        const { report } = await load(
          ["--unix", peer.path, "--engine", engine, ...args],
          peer.perms,
        );
        assert.equal(report.transport, "unix");
        assert.equal(report.target, peer.path);
        assertEveryByte(report, Number(args[1]));
      }
    },
  });
}

Deno.test({
  name:
    "load.ts over TLS: a refused certificate is one line and exit 1, with either engine",
  ignore: !HAVE.socat,
  async fn() {
    const cases: [string, "deno" | "net", RegExp][] = [
      [
        "expired",
        "deno",
        /: certificate expired \(not valid after 2020-01-02T00:00:00Z\)$/m,
      ],
      [
        "rogue",
        "deno",
        /: certificate signed by an unknown CA \(trust its CA with --ca FILE\)$/m,
      ],
      [
        "other",
        "deno",
        /: certificate is not valid for "127\.0\.0\.1" \(it is for other\.example\)/m,
      ],
      [
        "expired",
        "net",
        /: certificate not verified: expired, not valid yet, or from an unknown CA/m,
      ],
      [
        "other",
        "net",
        /: certificate is not valid for "127\.0\.0\.1"; connect by a name it holds or give it with --server-name$/m,
      ],
    ];
    for (const [cert, engine, line] of cases) {
      await using peer = await socatTls(cert, "EXEC:cat");
      const out = await runScript(LOAD, [
        "-p",
        String(peer.port),
        "--tls",
        "--ca",
        `${TLS}ca.pem`,
        "--engine",
        engine,
        "-c",
        "2",
        "-d",
        "0.5",
        "-q",
      ]);
      assert.match(out.stderr, /^error: cannot connect to 127\.0\.0\.1:\d+: /);
      assertFailure(out, line);
    }
  },
});
