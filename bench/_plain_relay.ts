/**
 * The plain Deno relay of the proxy's bench cases (bench/_proxy_cases.ts):
 * the least a relay on `Deno.Conn` can do, a read/write loop per direction
 * with one 16 KiB buffer each, EOF passed on with `closeWrite`, nothing
 * else (no toxics, no counters, no access lists). tools/proxy.ts with no
 * toxics is measured against it.
 *
 * Usage: deno run --allow-net=127.0.0.1 bench/_plain_relay.ts PORT UPSTREAM_PORT
 * (PORT 0 picks one); prints "listening on 127.0.0.1:PORT", stops on
 * SIGTERM, SIGINT or SIGHUP.
 *
 * @module
 */

import { runMain, shutdownSignal, UsageError } from "../_cli.ts";
import { printListening } from "../_net.ts";

/** Copies `src` to `dst` till EOF, then half-closes `dst`. */
async function pump(src: Deno.Conn, dst: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(16 * 1024);
  for (;;) {
    const n = await src.read(buffer);
    if (n === null) break;
    let done = 0;
    while (done < n) done += await dst.write(buffer.subarray(done, n));
  }
  await dst.closeWrite();
}

async function relay(client: Deno.TcpConn, upstreamPort: number) {
  let server: Deno.TcpConn | undefined;
  try {
    server = await Deno.connect({ hostname: "127.0.0.1", port: upstreamPort });
    client.setNoDelay(true);
    server.setNoDelay(true);
    await Promise.all([pump(client, server), pump(server, client)]);
  } catch {
    // A reset or refusal ends this connection only.
  } finally {
    for (const conn of [client, server]) {
      try {
        conn?.close();
      } catch {
        // Closed already.
      }
    }
  }
}

/** Relays until SIGTERM, SIGINT or SIGHUP (the project's `shutdownSignal`). */
export async function main(args: string[]): Promise<number> {
  const [port, upstream] = args.map(Number);
  if (!Number.isInteger(port) || !Number.isInteger(upstream)) {
    throw new UsageError("usage: _plain_relay.ts PORT UPSTREAM_PORT");
  }
  using listener = Deno.listen({ hostname: "127.0.0.1", port: port! });
  // Signals first: a caller may send SIGTERM as soon as it reads the line.
  // Not disposed (runMain exits anyway): disposed before the exit, SIGTERM
  // ended a few runs with 143 instead of 0 here on a busy machine (Deno
  // restores the default action once the last listener is gone,
  // denoland/deno#22757).
  const shutdown = shutdownSignal();
  shutdown.signal.addEventListener("abort", () => listener.close());
  printListening(listener.addr);
  try {
    for await (const conn of listener) relay(conn, upstream!);
  } catch {
    // The listener was closed by a signal.
  }
  return 0;
}

if (import.meta.main) runMain(main);
