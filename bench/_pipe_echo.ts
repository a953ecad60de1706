/**
 * Baseline for `deno task bench`: the echo the Deno docs show,
 * `conn.readable.pipeTo(conn.writable)`. Short to write; the bench
 * measured it at 0.21x a read/write loop (docs/performance.md), and
 * `conn.readable` closes the whole connection at the peer's EOF
 * (denoland/deno#22258).
 *
 * Usage: `deno run --allow-net=127.0.0.1 bench/_pipe_echo.ts --port 0`;
 * prints `listening on HOST:PORT`, stops on SIGTERM, SIGINT or SIGHUP
 * (the project's `shutdownSignal`).
 *
 * @module
 */

import { parsePort, runMain, shutdownSignal } from "../_cli.ts";
import { listen, printListening } from "../_net.ts";

/** Serves until SIGTERM, SIGINT or SIGHUP. */
export async function main(args: string[]): Promise<number> {
  const i = args.indexOf("--port");
  const port = i >= 0 ? parsePort(args[i + 1]) : 0;
  using listener = await listen({
    transport: "tcp",
    hostname: "127.0.0.1",
    port,
  });
  // Signals first: a caller may send SIGTERM as soon as it reads the line.
  // Not disposed (runMain exits anyway): disposed before the exit, SIGTERM
  // ended a few runs with 143 instead of 0 here on a busy machine (Deno
  // restores the default action once the last listener is gone,
  // denoland/deno#22757).
  const shutdown = shutdownSignal();
  shutdown.signal.addEventListener("abort", () => listener.close());
  printListening(listener.addr as Deno.NetAddr);
  try {
    for await (const conn of listener) {
      // A reset peer rejects the pipe; it ends only that connection.
      conn.readable.pipeTo(conn.writable).catch(() => {});
    }
  } catch {
    // The listener was closed by a signal.
  }
  return 0;
}

if (import.meta.main) runMain(main);
