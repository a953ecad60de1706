/**
 * Starting a server for one case: its command pinned to the server's core,
 * under the open-files limit, through the project's one process starter
 * (`_process.ts`, as the tests start scripts); then its `listening on`
 * line read for where it listens, and a stop that waits for its exit.
 *
 * Private to bench/bench.ts.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { parseListeningLine } from "../_net.ts";
import { Child } from "../_process.ts";

/** The project root, where every command runs. */
export const ROOT: string = fileURLToPath(new URL("../", import.meta.url));

/** Where a started server listens: a loopback port or a socket path. */
export type Target = { port: number } | { path: string };

/** A started server: where it listens, its PID, and how to stop it. */
export interface Started {
  /** Where it listens. */
  target: Target;
  /** Its process (the server's own: `sh` execs it). */
  pid: number;
  /** SIGTERM, then SIGKILL after 3 s; resolves at its exit. */
  stop(): Promise<void>;
}

/** How long a server may take to print its `listening on` line. */
const START_TIMEOUT_MS = 15_000;

/**
 * Starts `argv` on `cpu` (if pinned) with `nofile` open files allowed and
 * `env` beside NO_COLOR, and waits for its `listening on` line.
 */
export async function startServer(
  argv: string[],
  cpu: string | undefined,
  nofile: number,
  env: Readonly<Record<string, string>> = {},
): Promise<Started> {
  const child = new Child(argv, {
    cwd: ROOT,
    env,
    nofile,
    ...(cpu === undefined ? {} : { cpu }),
  });
  const timer = setTimeout(() => child.stop("SIGKILL"), START_TIMEOUT_MS);
  const first = await child.nextLine().finally(() => clearTimeout(timer));
  // Keep reading stdout so the server never blocks on a full pipe.
  child.drain();
  const stop = async () => {
    await child.stop("SIGTERM", 3_000);
  };
  const where = first === null ? undefined : parseListeningLine(first.trim());
  if (!where) {
    const { stderr } = await child.stop("SIGTERM", 3_000);
    throw new Error(
      `did not print "listening on": ${stderr.trim().split("\n")[0]}`,
    );
  }
  const target = "path" in where ? { path: where.path } : { port: where.port };
  return { target, pid: child.pid, stop };
}
