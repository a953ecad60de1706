/**
 * `deno task compile`: builds each script of socket-notes into a single
 * executable under `dist/`, with the permissions it needs baked in and no
 * more.
 *
 * `deno compile` joins the program to Deno's runtime binary (denort), which
 * it downloads from dl.deno.land unless `DENORT_BIN` names a local copy or a
 * copy is already cached in `DENO_DIR`. Where none of those can be had, this
 * task says so in one line and exits 1: it never writes a fake binary.
 *
 * Requires `--allow-read`, `--allow-env`, `--allow-run` (to run
 * `deno compile`) and `--allow-write=dist`; for another `--out DIR` it runs
 * itself again with `--allow-write=DIR` in place of that.
 *
 * @module
 */

import { join } from "node:path";
import {
  CliError,
  type CommandSpec,
  parseCommandLine,
  runMain,
  UsageError,
} from "../_cli.ts";
import { runCommand } from "../_process.ts";
import { ECHO_V8_FLAGS } from "../_runtime.ts";
import { withWriteAccess } from "../_write_access.ts";

/**
 * The flags of `deno task compile` but its `--allow-write=dist`: for another
 * `--out DIR` it runs itself again with these and `--allow-write=DIR`.
 */
export const COMPILE_FLAGS: readonly string[] = [
  "--allow-read",
  "--allow-env=DENORT_BIN,DENO_DIR,XDG_CACHE_HOME,HOME",
  "--allow-run",
];

/** A script to compile and the permissions its binary gets. */
export interface CompileTarget {
  /** Path of the script, from the project root. */
  script: string;
  /** Name of the executable in `dist/`. */
  name: string;
  /** Permission flags baked into the executable. */
  permissions: string[];
  /** Other runtime flags baked in: unstable APIs, V8 settings. */
  flags?: string[];
  /** Extra modules the script loads at run time (Worker modules). */
  include?: string[];
}

/** Every script of the project with its least permissions. */
export const TARGETS: CompileTarget[] = [
  {
    script: "servers/sequential.ts",
    name: "sequential",
    permissions: ["--allow-net"],
  },
  { script: "clients/client.ts", name: "client", permissions: ["--allow-net"] },
  {
    script: "tools/hostinfo.ts",
    name: "hostinfo",
    permissions: ["--allow-net", "--allow-sys=hostname,networkInterfaces"],
  },
  {
    script: "servers/select_echo.ts",
    name: "select_echo",
    permissions: ["--allow-net"],
    flags: ["--unstable-net", ECHO_V8_FLAGS],
  },
  {
    script: "servers/completion_echo.ts",
    name: "completion_echo",
    permissions: ["--allow-net"],
    flags: ["--unstable-net", ECHO_V8_FLAGS],
  },
  {
    script: "tools/netstat.ts",
    name: "netstat",
    permissions: ["--allow-net", "--allow-run=netstat"],
  },
  { script: "tools/load.ts", name: "load", permissions: ["--allow-net"] },
  {
    script: "servers/udp_echo.ts",
    name: "udp_echo",
    permissions: ["--allow-net"],
    flags: ["--unstable-net"],
  },
  { script: "tools/proxy.ts", name: "proxy", permissions: ["--allow-net"] },
];

/** Deno's target triple for this machine, as denort's file name uses it. */
function target(): string {
  return Deno.build.target;
}

/**
 * Finds a Deno runtime (denort) that `deno compile` can use without the
 * network: `DENORT_BIN`, or the copy `deno compile` caches in `DENO_DIR`.
 *
 * @returns Where it is, or `undefined` if `deno compile` must download it.
 */
export function findRuntime(): string | undefined {
  const bin = Deno.env.get("DENORT_BIN");
  if (bin) {
    try {
      if (Deno.statSync(bin).isFile) return `DENORT_BIN=${bin}`;
    } catch {
      throw new CliError(`DENORT_BIN "${bin}" is not a file`);
    }
  }
  const home = Deno.env.get("HOME") ?? "";
  const dirs = [
    Deno.env.get("DENO_DIR"),
    Deno.env.get("XDG_CACHE_HOME") &&
    join(Deno.env.get("XDG_CACHE_HOME")!, "deno"),
    home && join(home, ".cache", "deno"),
  ].filter((d): d is string => Boolean(d));
  const file = `denort-${target()}.zip`;
  for (const dir of dirs) {
    const cached = join(dir, "dl", "release", `v${Deno.version.deno}`, file);
    try {
      if (Deno.statSync(cached).isFile) return cached;
    } catch {
      // not cached there
    }
  }
  return undefined;
}

/**
 * Compiles `target` into `outDir`.
 *
 * @throws {CliError} With `deno compile`'s first error line.
 */
export async function compile(
  entry: CompileTarget,
  outDir: string,
): Promise<string> {
  const output = join(outDir, entry.name);
  const { code, stderr: text } = await runCommand([
    Deno.execPath(),
    "compile",
    "--quiet",
    ...entry.permissions,
    ...(entry.flags ?? []),
    ...(entry.include ?? []).flatMap((m) => ["--include", m]),
    "--output",
    output,
    entry.script,
  ]);
  if (code !== 0) {
    if (/base binary|dl\.deno\.land|error sending request/i.test(text)) {
      throw new CliError(
        `Cannot compile: deno compile needs Deno's runtime (denort-${target()}` +
          `.zip for ${Deno.version.deno}), which could not be downloaded ` +
          "from dl.deno.land and is neither cached nor named by DENORT_BIN",
      );
    }
    const first = text.split("\n").find((l) => l.includes("error")) ?? text;
    throw new CliError(
      `deno compile ${entry.script} failed: ${
        first.replace(/^.*error:\s*/, "")
      }`,
    );
  }
  return output;
}

const COMMAND: CommandSpec = {
  name: "tools/compile.ts",
  summary: "Builds each script into a single executable in dist/ with its " +
    "permissions baked in. Needs Deno's runtime (denort): DENORT_BIN, a " +
    "cached copy, or access to dl.deno.land.",
  positionals: "[NAME...]",
  options: {
    out: {
      type: "string",
      default: "dist",
      arg: "DIR",
      description:
        "Where the executables go; for a DIR other than dist it runs itself again with --allow-write=DIR.",
    },
  },
  epilog: `Names: ${TARGETS.map((t) => t.name).join(", ")} (default: all).`,
};

/** The command line: check for the runtime, then compile each target. */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(args, COMMAND);
  if (!parsed) return 0;
  const wanted = parsed.positionals.length > 0
    ? parsed.positionals.map((name) => {
      const found = TARGETS.find((t) => t.name === name);
      if (!found) throw new UsageError(`Unknown target "${name}" (see --help)`);
      return found;
    })
    : TARGETS;
  const outDir = String(parsed.values.out);
  const again = await withWriteAccess(outDir, {
    script: "tools/compile.ts",
    flags: COMPILE_FLAGS,
    granted: "dist",
    option: "--out",
    args,
  });
  if (again !== undefined) return again;
  await Deno.mkdir(outDir, { recursive: true });
  console.log(`runtime: ${findRuntime() ?? "download from dl.deno.land"}`);
  for (const entry of wanted) {
    const output = await compile(entry, outDir);
    const baked = [...entry.permissions, ...(entry.flags ?? [])];
    console.log(`${output}  (${baked.join(" ")})`);
  }
  return 0;
}

if (import.meta.main) runMain(main);
