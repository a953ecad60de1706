import assert from "node:assert/strict";
import { ROOT, runScript } from "./_helpers.ts";

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

Deno.test("every script: a bad --port or --timeout value is one line, exit 2", async (t) => {
  for (const script of scripts()) {
    const help = (await runScript(script, ["--help"])).stdout;
    for (
      const [option, value] of [["--port", "70000"], ["--timeout", "soon"]]
    ) {
      if (!help.includes(`${option} `)) continue;
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
