/**
 * Baseline for `deno task bench`: the echo a Deno user writes by hand, one
 * `conn.read`/`conn.write` loop per connection with its own buffer. It is the
 * yardstick the bench's ratios are taken against.
 *
 * Usage: `deno run --allow-net=127.0.0.1 bench/_loop_echo.ts --port 0`;
 * prints `listening on HOST:PORT`, stops on SIGTERM or SIGINT.
 *
 * @module
 */

import { listenTcp, parsePort, printListening, runMain } from "../_cli.ts";

/** Read buffer per connection: FINDINGS measured 1 KiB as the RSS sweet spot. */
const BUFFER = 16 * 1024;

async function echo(conn: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(BUFFER);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
  } catch {
    // A reset peer ends only its own connection.
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** Serves until SIGTERM/SIGINT. */
export async function main(args: string[]): Promise<number> {
  const i = args.indexOf("--port");
  const port = i >= 0 ? parsePort(args[i + 1]) : 0;
  using listener = listenTcp({ hostname: "127.0.0.1", port });
  printListening(listener.addr);
  const stop = () => listener.close();
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  try {
    for await (const conn of listener) echo(conn);
  } catch {
    // The listener was closed by a signal.
  }
  return 0;
}

if (import.meta.main) runMain(main);
