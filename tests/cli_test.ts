import assert from "node:assert/strict";
import { ROOT, Running, runScript, writeAll } from "./_helpers.ts";

/** Every runnable script of the project: `*.ts` in servers/, clients/, tools/ not starting with `_`. */
function scripts(): string[] {
  const found: string[] = [];
  for (const dir of ["servers", "clients", "tools"]) {
    for (const entry of Deno.readDirSync(`${ROOT}${dir}`)) {
      if (entry.isFile && /^[^_].*\.ts$/.test(entry.name)) {
        found.push(`${dir}/${entry.name}`);
      }
    }
  }
  return found.sort();
}

Deno.test("every script: --help prints usage on stdout and exits 0", async (t) => {
  const all = scripts();
  assert.ok(all.length >= 4, `found only ${all}`);
  for (const script of all) {
    await t.step(script, async () => {
      const out = await runScript(script, ["--help"]);
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, new RegExp(`^Usage: ${script} `));
      assert.match(out.stdout, /-h, --help/);
      assert.equal(out.stderr, "");
    });
  }
});

Deno.test("every script: an unknown option is one line on stderr, exit 2", async (t) => {
  for (const script of scripts()) {
    await t.step(script, async () => {
      const out = await runScript(script, ["--no-such-option"]);
      assert.equal(out.code, 2, out.stderr);
      assert.equal(
        out.stderr,
        "error: Unknown option '--no-such-option' (see --help)\n",
      );
      assert.equal(out.stdout, "");
    });
  }
});

/** The scripts whose --help lists each shared option: a change is seen here. */
const TAKING: Record<string, string[]> = {
  "--port": [
    "clients/client.ts",
    "servers/completion_echo.ts",
    "servers/select_echo.ts",
    "servers/sequential.ts",
    "servers/udp_echo.ts",
    "tools/load.ts",
    "tools/netstat.ts",
    "tools/proxy.ts",
  ],
  "--timeout": [
    "clients/client.ts",
    "servers/sequential.ts",
    "tools/netstat.ts",
  ],
};

Deno.test("every script: a bad --port or --timeout value is one line, exit 2", async (t) => {
  const helps = new Map<string, string>();
  for (const script of scripts()) {
    helps.set(script, (await runScript(script, ["--help"])).stdout);
  }
  for (
    const [option, value] of [["--port", "70000"], ["--timeout", "soon"]]
  ) {
    // An option's own line in the help, not a mention in an example.
    const line = new RegExp(`^ +(?:-\\w, )?${option} [A-Z]`, "m");
    const taking = [...helps].filter(([, help]) => line.test(help))
      .map(([script]) => script);
    assert.deepEqual(taking, TAKING[option!], `scripts taking ${option}`);
    for (const script of taking) {
      await t.step(`${script} ${option} ${value}`, async () => {
        const out = await runScript(script, [option!, value!]);
        assert.equal(out.code, 2, out.stderr);
        assert.match(
          out.stderr,
          new RegExp(
            `^error: Cannot parse ${option} "${value}": expected .+\\n$`,
          ),
        );
        assert.equal(out.stdout, "");
      });
    }
  }
});

Deno.test("demo.ts --help prints its usage and runs nothing, exit 0", async () => {
  const out = await runScript("demo.ts", ["--help"], {
    perms: ["--allow-net=127.0.0.1"],
  });
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^Usage: demo\.ts \[options\]\n/);
  assert.doesNotMatch(out.stdout, /socket-notes demo|^== /m);
  assert.equal(out.stderr, "");
});

for (const script of ["servers/select_echo.ts", "servers/completion_echo.ts"]) {
  Deno.test(`${script}: a second SIGINT during the drain stops it at once, exit 130, with the stats so far`, async () => {
    await using server = new Running(script, ["--port", "0", "--grace", "60"]);
    const port = await server.port();
    // A client served once that stays open and never closes: the drain
    // sends it FIN and waits for its close, so it would wait the whole
    // --grace.
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(conn, new Uint8Array([7]));
    assert.equal(await conn.read(new Uint8Array(1)), 1);
    server.child.kill("SIGINT");
    await server.waitForStderr(/^stopped accepting: draining 1 connections /);
    const started = performance.now();
    const out = await server.stop("SIGINT");
    const ms = performance.now() - started;
    assert.equal(out.code, 130, out.stderr);
    assert.ok(ms < 5_000, `took ${ms} ms`);
    assert.match(out.stdout, /\nstats: 1 connections served, /);
    assert.match(
      out.stderr,
      /stopped by a second signal with 1 connections open\n$/,
    );
  });

  Deno.test(`${script}: SIGHUP stops it as SIGTERM does, stats and exit 0`, async () => {
    await using server = new Running(script, ["--port", "0"]);
    await server.port();
    const out = await server.stop("SIGHUP");
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /\nstats: 0 connections served, /);
  });
}

Deno.test("servers/sequential.ts: SIGHUP stops it as SIGTERM does, exit 0", async () => {
  await using server = new Running("servers/sequential.ts", ["--port", "0"]);
  await server.port();
  const out = await server.stop("SIGHUP");
  assert.equal(out.code, 0, out.stderr);
});

Deno.test("every server's --help says what SIGHUP and a second signal do", async (t) => {
  for (
    const script of [
      "servers/sequential.ts",
      "servers/select_echo.ts",
      "servers/completion_echo.ts",
    ]
  ) {
    await t.step(script, async () => {
      const out = await runScript(script, ["--help"]);
      assert.match(out.stdout, /SIGHUP counts as SIGTERM/);
      assert.match(out.stdout, /second signal .*\n?.*exit 130/);
    });
  }
});
