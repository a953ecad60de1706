/**
 * What the bench asks of the machine and of the processes it starts: a
 * command on PATH, the open-files limits, a process's RSS and CPU time.
 * Deno lets only `--allow-all` read another process's /proc entry (or
 * /proc/self/limits), so `sh` reads them; the bench holds `--allow-run=sh`.
 *
 * Private to bench/bench.ts.
 *
 * @module
 */

import { runCommand } from "../_process.ts";

/** What a shell command did. */
export interface ShellResult {
  /** Whether it exited 0. */
  ok: boolean;
  /** Its output. */
  stdout: string;
  /** Its error output, trimmed (or why it could not start). */
  stderr: string;
}

/**
 * Runs `sh -c script sh args...` to completion (the arguments as `$1`...,
 * never parsed by the shell); never throws.
 */
export async function shell(
  script: string,
  ...args: string[]
): Promise<ShellResult> {
  try {
    const out = await runCommand(["sh", "-c", script, "sh", ...args]);
    return {
      ok: out.code === 0,
      stdout: out.stdout,
      stderr: out.stderr.trim(),
    };
  } catch (error) {
    return { ok: false, stdout: "", stderr: (error as Error).message };
  }
}

/** `shell`'s stdout, or undefined if it failed. */
async function sh(
  script: string,
  ...args: string[]
): Promise<string | undefined> {
  const out = await shell(script, ...args);
  return out.ok ? out.stdout : undefined;
}

/** Whether `cmd` is on PATH. */
export async function onPath(cmd: string): Promise<boolean> {
  return await sh('command -v "$1" >/dev/null', cmd) !== undefined;
}

/** The soft and hard open-files limits; undefined if unknown. */
export async function openFilesLimit(): Promise<
  { soft: number; hard: number } | undefined
> {
  const text = await sh("ulimit -Sn; ulimit -Hn");
  if (text === undefined) return undefined;
  const [soft, hard] = text.trim().split("\n");
  const n = (s?: string) => s === "unlimited" ? Infinity : Number(s);
  const limit = { soft: n(soft), hard: n(hard) };
  return Number.isNaN(limit.soft) || Number.isNaN(limit.hard)
    ? undefined
    : limit;
}

/** VmRSS of process `pid` in KB (Linux), or undefined. */
export async function rssKb(pid: number): Promise<number | undefined> {
  const text = await sh('exec cat "/proc/$1/status"', String(pid));
  const m = text?.match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) : undefined;
}

/**
 * CPU time process `pid` has used (user + system, all threads), in seconds,
 * from /proc/PID/stat; undefined where there is none.
 */
export async function cpuSeconds(pid: number): Promise<number | undefined> {
  const text = await sh('cat "/proc/$1/stat"; getconf CLK_TCK', String(pid));
  if (text === undefined) return undefined;
  const [stat, hz] = text.split("\n");
  // Fields after the command name, which is in parentheses and may hold
  // spaces: utime and stime are the 12th and 13th.
  const fields = stat!.slice(stat!.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks / (Number(hz) || 100) : undefined;
}
