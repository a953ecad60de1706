/**
 * The load generator and the open-files limit: every connection (every UDP
 * flow) is a file descriptor. Deno raises its own soft limit to the hard one
 * as it starts (its `raise_fd_limit`), so what stops a large run is the hard
 * limit; this module says so in one line, with how to raise it, before the
 * run when it can read the limits (`/proc/self/limits`) and when a connect
 * fails with EMFILE otherwise, instead of `connect EMFILE`. Private to
 * `tools/load.ts`.
 *
 * @module
 */

import { CliError } from "../_cli.ts";
import { runCommand } from "../_process.ts";

/** Descriptors the runtime holds besides the connections (20 measured, stdio included). */
const RUNTIME_FILES = 32;

/** Where Linux tells a process its limits. */
const LIMITS = "/proc/self/limits";

/** This process's open-files limits. */
export interface OpenFilesLimit {
  /** The soft limit: what opening a descriptor is held to. */
  soft: number;
  /** The hard limit: the most the soft one may be raised to without root. */
  hard: number;
}

/** Descriptors a run of `sockets` connections (or flows) needs. */
export function filesNeeded(sockets: number): number {
  return sockets + RUNTIME_FILES;
}

/** A limit as Linux writes it. */
function limitValue(text: string): number {
  return text === "unlimited" ? Infinity : Number(text);
}

/** Whether `descriptor` is granted, without asking. */
function granted(descriptor: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

/**
 * This process's open-files limits, or undefined where they cannot be
 * read: from `/proc/self/limits` (Deno lets only `--allow-all` read it), or
 * from `prlimit --pid` given `--allow-run=prlimit`. Nothing is asked for, so
 * nothing prompts.
 */
export async function openFilesLimit(): Promise<OpenFilesLimit | undefined> {
  const pair = (m: RegExpMatchArray | null) =>
    m === null
      ? undefined
      : { soft: limitValue(m[1]!), hard: limitValue(m[2]!) };
  try {
    if (granted({ name: "read", path: LIMITS })) {
      const limit = pair(
        Deno.readTextFileSync(LIMITS).match(
          /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m,
        ),
      );
      if (limit !== undefined) return limit;
    }
  } catch {
    // Read access short of --allow-all: /proc/self needs all of it.
  }
  if (!granted({ name: "run", command: "prlimit" })) return undefined;
  try {
    const out = await runCommand([
      "prlimit",
      `--pid=${Deno.pid}`,
      "--nofile",
      "--raw",
      "--noheadings",
      "--output=SOFT,HARD",
    ]);
    return out.code === 0
      ? pair(out.stdout.match(/^\s*(\d+|unlimited)\s+(\d+|unlimited)/))
      : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `error` is a failure to open a descriptor past the limit. */
export function isTooManyOpenFiles(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | null;
  return e?.code === "EMFILE" ||
    /os error 24|Too many open files|EMFILE/.test(String(e?.message ?? ""));
}

/**
 * One line saying that `what` (as `-c 100 + --idle 100`) needs more open
 * files than the limit, and how to raise it.
 */
export function describeShortage(
  what: string,
  sockets: number,
  limit: OpenFilesLimit | undefined,
): string {
  const needed = filesNeeded(sockets);
  const hint = `raise the hard limit (as root: ulimit -Hn ${needed}; ` +
    `LimitNOFILE= for a systemd service, nofile in ` +
    `/etc/security/limits.conf for a login), or open fewer connections`;
  if (limit === undefined) {
    return `${what} need about ${needed} open files, above this process's ` +
      `limit (Deno raises its soft limit to the hard one itself): ${hint}`;
  }
  if (limit.hard < needed) {
    return `${what} need about ${needed} open files, above the hard limit of ${limit.hard}: ${hint}`;
  }
  return `${what} need about ${needed} open files, above the soft limit of ${limit.soft}: ` +
    `run ulimit -n ${Math.min(limit.hard, Math.max(needed, 1024))} first ` +
    `(the hard limit is ${limit.hard})`;
}

/**
 * Before a run: refuses one that the open-files limit cannot hold, where
 * the limits can be read; does nothing where they cannot (a connect that
 * fails with EMFILE then says the same).
 *
 * @throws {CliError} Saying what is needed and how to raise the limit.
 */
export async function checkOpenFiles(
  what: string,
  sockets: number,
): Promise<void> {
  const limit = await openFilesLimit();
  if (limit === undefined || limit.soft >= filesNeeded(sockets)) return;
  throw new CliError(describeShortage(what, sockets, limit));
}
