import assert from "node:assert/strict";
import { COMPILE_FLAGS, findRuntime, TARGETS } from "../tools/compile.ts";
import { ROOT, runDeno, runScript, SOCKET_DIR } from "./_helpers.ts";

const runtime = findRuntime();

/** Runs `fn` with a fresh directory under dist/, removed after. */
async function withDistDir(fn: (dir: string) => Promise<void>): Promise<void> {
  await Deno.mkdir(`${ROOT}dist`, { recursive: true });
  const dir = await Deno.makeTempDir({ dir: `${ROOT}dist`, prefix: "test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "compile task without a runtime fails with one clear line, no binary",
  ignore: runtime !== undefined,
  fn: () =>
    withDistDir(async (out) => {
      const result = await runScript(
        "tools/compile.ts",
        ["--out", out, "hostinfo"],
        { env: { DENO_DIR: out } },
      );
      assert.equal(result.code, 1);
      const errors = result.stderr.trim().split("\n");
      assert.equal(errors.length, 1, result.stderr);
      assert.match(
        errors[0]!,
        /^error: Cannot compile: deno compile needs Deno's runtime \(denort-/,
      );
      assert.deepEqual(
        [...Deno.readDirSync(out)].filter((e) => e.name === "hostinfo"),
        [],
      );
    }),
});

Deno.test({
  name: "compiled hostinfo runs with its baked permissions",
  // deno compile needs denort: set DENORT_BIN or have it cached to run this.
  ignore: runtime === undefined,
  fn: () =>
    withDistDir(async (out) => {
      const result = await runScript("tools/compile.ts", [
        "--out",
        out,
        "hostinfo",
      ]);
      assert.equal(result.code, 0, result.stderr);
      const run = await new Deno.Command(`${out}/hostinfo`, {
        args: ["--json", "localhost"],
        cwd: ROOT,
      }).output();
      assert.equal(run.code, 0);
      const info = JSON.parse(new TextDecoder().decode(run.stdout));
      assert.equal(info.query, "localhost");
    }),
});

Deno.test("every script's shebang runs it with the permissions and flags deno task compile bakes in", () => {
  for (const target of TARGETS) {
    const first = Deno.readTextFileSync(`${ROOT}${target.script}`)
      .split("\n")[0]!;
    const match = first.match(/^#!\/usr\/bin\/env -S deno run (.+)$/);
    assert.ok(match, `${target.script}: ${first}`);
    assert.deepEqual(
      match[1]!.split(" ").sort(),
      [...(target.flags ?? []), ...target.permissions].sort(),
      target.script,
    );
    const mode = Deno.statSync(`${ROOT}${target.script}`).mode ?? 0o755;
    assert.ok(mode & 0o100, `${target.script} is executable`);
  }
});

Deno.test({
  name:
    "deno task compile --out DIR writes to DIR, running again with write access to DIR alone",
  // Without a runtime the run ends at denort, after --out was taken.
  ignore: runtime !== undefined,
  async fn() {
    const dir = `${SOCKET_DIR}/compile-out-${Deno.pid}`;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    const empty = await Deno.makeTempDir({
      dir: SOCKET_DIR,
      prefix: "deno-dir-",
    });
    try {
      const out = await runDeno(
        ["task", "--quiet", "compile", "--out", dir, "hostinfo"],
        { DENO_DIR: empty },
      );
      assert.equal(out.code, 1, out.stderr);
      assert.doesNotMatch(out.stderr, /Requires write access/);
      const lines = out.stderr.trim().split("\n");
      assert.equal(
        lines[0],
        `note: --out ${dir}: running again with --allow-write=${dir} (the task grants dist)`,
      );
      assert.match(
        lines[1]!,
        /^error: Cannot compile: deno compile needs Deno's runtime/,
      );
      assert.equal(lines.length, 2, out.stderr);
      // The directory was made where it was asked for, and holds no binary.
      assert.deepEqual([...Deno.readDirSync(dir)], []);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      await Deno.remove(empty, { recursive: true });
    }
  },
});

Deno.test("deno task compile runs compile.ts with the flags it runs itself again with", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  assert.equal(
    config.tasks.compile,
    `deno run ${COMPILE_FLAGS.join(" ")} --allow-write=dist tools/compile.ts`,
  );
});
