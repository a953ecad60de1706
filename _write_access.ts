/**
 * Write access for a directory a user names (`--out DIR`), granted as
 * narrowly as a task grants its default: a task holds `--allow-write` of
 * its default directory alone, and for another one the script runs itself
 * again with `--allow-write=DIR` in its place, the rest of its task's flags
 * unchanged. Where it may not start Deno again, it says in one line the
 * exact command that would.
 *
 * Private to this package.
 *
 * @module
 */

import { CliError } from "./_cli.ts";

/** How a script runs itself again for another directory. */
export interface RunAgain {
  /** The script, from the project root (as its task names it). */
  script: string;
  /** Its task's flags but `--allow-write`, as `deno run` takes them. */
  flags: readonly string[];
  /** The directory its task may write. */
  granted: string;
  /** The option that named the directory, for messages (`--out`). */
  option: string;
  /** The script's arguments, passed on unchanged. */
  args: readonly string[];
}

/** Whether this process may write `dir` (and what is below it). */
export function mayWrite(dir: string): boolean {
  return Deno.permissions.querySync({ name: "write", path: dir }).state ===
    "granted";
}

/**
 * Makes sure the script may write `dir`: returns undefined if it may;
 * otherwise runs the script again with `--allow-write=DIR` (through `sh`,
 * which the bench may run; stdio shared, so its output is this run's) and
 * returns that run's exit code.
 *
 * @throws {CliError} If this process may not run `sh`: the message gives
 * the command to run instead.
 */
export async function withWriteAccess(
  dir: string,
  again: RunAgain,
): Promise<number | undefined> {
  if (mayWrite(dir)) return undefined;
  const argv = [
    "run",
    ...again.flags,
    `--allow-write=${dir}`,
    again.script,
    ...again.args,
  ];
  const may = Deno.permissions.querySync({ name: "run", command: "sh" });
  if (may.state !== "granted") {
    throw new CliError(
      `Cannot write to ${again.option} ${dir}: run deno ${argv.join(" ")}`,
    );
  }
  console.error(
    `note: ${again.option} ${dir}: running again with --allow-write=${dir} (the task grants ${again.granted})`,
  );
  const child = new Deno.Command("sh", {
    args: ["-c", 'exec "$@"', "sh", Deno.execPath(), ...argv],
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // A terminal's Ctrl-C reaches both processes; a SIGTERM or SIGHUP sent to
  // this one alone is passed on, so the run it started stops with it.
  const signals: Deno.Signal[] = ["SIGTERM", "SIGHUP"];
  const pass = (signal: Deno.Signal) => () => {
    try {
      child.kill(signal);
    } catch {
      // exited
    }
  };
  const handlers = signals.map((s) => [s, pass(s)] as const);
  const ignore = () => {};
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  Deno.addSignalListener("SIGINT", ignore);
  try {
    return (await child.status).code;
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    Deno.removeSignalListener("SIGINT", ignore);
  }
}
